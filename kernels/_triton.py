"""Triton import shim shared by the kernel files.

Where triton is not installed (macOS, Windows, minimal CPU installs) the kernel
definitions must still import, because the torch references live beside them. `triton`
and `tl` then become stand-ins whose decorators return the function unchanged; launching
a kernel goes through `require_triton()`, which raises a clear error.

TRITON_INTERPRET=1 (set before triton is imported) runs kernels on CPU tensors; autotune
lists are cut to their first entry there, since the interpreter would time every entry.
"""

from __future__ import annotations

import os

try:
    import triton
    import triton.language as tl

    HAS_TRITON = True
except Exception:  # pragma: no cover - exercised only where triton is absent
    HAS_TRITON = False

    class _Missing:
        def __getattr__(self, name):
            return self

        def __call__(self, *args, **kwargs):
            if len(args) == 1 and callable(args[0]) and not kwargs:
                return args[0]
            return self

    triton = _Missing()
    tl = _Missing()

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


def autotune_configs(configs: list) -> list:
    """The autotune list to use: all of it on a GPU, its first entry under the interpreter."""
    return configs[:1] if INTERPRET else configs


def require_triton() -> None:
    """Raise a clear error when a Triton launcher is called without triton installed."""
    if not HAS_TRITON:
        raise RuntimeError(
            "triton is not installed: install it (pip install triton) or use the 'torch' backend"
        )


def check_triton_device(*tensors) -> None:
    """Triton launchers run on CUDA tensors, or on CPU tensors under TRITON_INTERPRET=1."""
    require_triton()
    for t in tensors:
        if t is None:
            continue
        if t.device.type == "cpu" and not INTERPRET:
            raise RuntimeError(
                "Triton kernels need CUDA tensors (or TRITON_INTERPRET=1 for CPU testing)"
            )
