"""Progress bars of the library: on stderr, and off wherever the user says so.

A library call shows a bar only when its `progress` argument asks for one and the
environment variable ``AEDFAST_PROGRESS`` does not switch bars off (``0``, ``false``, ``no``
or ``off``). Bars are tqdm bars written to stderr, never stdout, so that a program's own
output (and the CLI's ``--json``) stays clean. What the library reports as text goes through
the standard `logging` module (loggers named ``aedfast.*``), not through bars or print.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["ENV_VAR", "progress_bar", "progress_enabled"]

ENV_VAR = "AEDFAST_PROGRESS"
_OFF = ("0", "false", "no", "off")


def progress_enabled(requested: bool = True) -> bool:
    """Whether a bar asked for with `requested` is shown: False when not requested or when
    ``AEDFAST_PROGRESS`` is 0 / false / no / off (any case)."""
    return bool(requested) and os.environ.get(ENV_VAR, "1").strip().lower() not in _OFF


def progress_bar(iterable: Iterable | None = None, *, enabled: bool = True, **kwargs: Any):
    """A tqdm bar on stderr (``tqdm.auto``: a notebook widget where there is one), disabled
    unless `progress_enabled(enabled)`. kwargs go to tqdm (total, desc, unit, leave, ...).
    A disabled bar accepts the same calls (update, set_postfix, close) and draws nothing."""
    from tqdm.auto import tqdm

    kwargs.setdefault("file", sys.stderr)
    return tqdm(iterable, disable=not progress_enabled(enabled), **kwargs)
