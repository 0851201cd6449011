"""What a run shows and records: the progress bar, the per-window loss means, the JSONL log.

``train_log.jsonl`` holds one JSON object per logged step: step, stage, the losses, grad norm,
lr, frames/s and the wall-clock time. On a terminal the bar is a tqdm bar on stderr; elsewhere
(log files) the same information is a `logging` record (logger ``aedfast.training.progress``,
INFO) every few steps. AEDFAST_PROGRESS=0 switches both off (`aedfast.progress`).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from ..progress import progress_enabled
from .dist import Dist

__all__ = ["LOG_NAME", "LossWindow", "Progress", "TrainLog"]

LOG_NAME = "train_log.jsonl"

logger = logging.getLogger(__name__)


class Progress:
    """tqdm bar on stderr on a terminal; elsewhere (log files) one INFO log record every
    `every` steps. Off when not `enabled` or AEDFAST_PROGRESS=0."""

    def __init__(self, enabled: bool, total: int, initial: int, every: int):
        self.enabled = progress_enabled(enabled)
        self.total, self.every = total, max(1, every)
        self.bar = None
        self.tty = enabled and sys.stderr.isatty()
        self.t0, self.s0 = time.perf_counter(), initial
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                            file=sys.stderr)

    def update(self, step: int, stage: int, losses: dict, fps: float) -> None:
        """Show global step `step` of `stage` with its window's mean losses and frames/s."""
        if not self.enabled:
            return
        text = " ".join(f"{k} {v:.4f}" for k, v in losses.items())
        if self.bar is not None:
            self.bar.set_description(f"stage {stage}", refresh=False)
            self.bar.set_postfix_str(f"{text} {fps:.0f} frames/s", refresh=False)
            self.bar.update(step - self.bar.n)
        else:
            rate = (step - self.s0) / max(1e-9, time.perf_counter() - self.t0)
            eta = (self.total - step) / rate if rate > 0 else float("nan")
            logger.info("stage %d step %d/%d %s %.1f frames/s ETA %s", stage, step,
                        self.total, text, fps, _hms(eta))

    def message(self, text: str) -> None:
        """A line of text: on stderr above the bar on a terminal, else an INFO log record."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            logger.info("%s", text)

    def close(self) -> None:
        """Close the bar (a terminal line stays)."""
        if self.bar is not None:
            self.bar.close()


def _hms(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(s)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class TrainLog:
    """JSON-lines loss log; on resume, records past the resumed step are dropped."""

    def __init__(self, path: Path, active: bool, keep_until: int):
        self.path, self.active = path, active
        if not active:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if keep_until > 0 and path.exists():
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill
                if rec.get("step", 0) <= keep_until:
                    kept.append(line)
        path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        """Append one record (rank 0 only; other processes write nothing)."""
        if self.active:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")


class LossWindow:
    """The steps since the last log line: their loss parts, loss and gradient norm summed on
    the device (float32 [len(names) + 2], no sync per step) and the frames they trained."""

    def __init__(self, names: Sequence[str], device: torch.device):
        self.names = list(names)
        self.sums = torch.zeros(len(self.names) + 2, device=device)  # parts..., loss, grad norm
        self.reset()

    def add(self, parts: torch.Tensor, loss: torch.Tensor, grad_norm: torch.Tensor,
            frames: int) -> None:
        """One step: parts float [len(names)], loss and grad_norm float scalars."""
        self.sums += torch.cat([parts.float(), loss.detach().float()[None],
                                grad_norm.float()[None]])
        self.steps += 1
        self.frames += frames

    def means(self, d: Dist) -> tuple[list[float], float]:
        """([part means..., loss mean, grad norm mean] averaged over the processes, frames/s
        of this process's view of the window)."""
        vals = d.average_(self.sums / self.steps).tolist()
        fps = self.frames / max(time.perf_counter() - self.t0, 1e-9)
        return vals, fps

    def reset(self) -> None:
        """Start a new window."""
        self.sums.zero_()
        self.steps, self.frames, self.t0 = 0, 0, time.perf_counter()
