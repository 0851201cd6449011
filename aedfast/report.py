"""Report helpers: a PNG plot of frame scores against the ground truth, and an .avi of frames
with the anomaly map blended over them as a heat map. Both write atomically (a temporary file
beside the target, then a rename: `aedfast.checkpoint.atomic_path`)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from .checkpoint import atomic_path, atomic_write


def label_intervals(labels: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) frame intervals where `labels` (0/1 [T]) is 1."""
    lab = np.asarray(labels).reshape(-1) != 0
    d = np.diff(np.concatenate(([0], lab.astype(np.int8), [0])))
    return list(zip(np.nonzero(d == 1)[0].tolist(), np.nonzero(d == -1)[0].tolist()))


def plot_scores(path: str | os.PathLike, scores: np.ndarray, labels: np.ndarray | None = None,
                title: str = "", *, threshold: float | None = None, dpi: int = 100) -> Path:
    """Write a PNG of the frame-score curve (float [T]) with the ground-truth anomalous
    intervals of `labels` (0/1 [T], optional) shaded, and an optional horizontal `threshold`.
    Uses matplotlib's Agg canvas (no display needed). Returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    path = Path(path)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.size == 0:
        raise ValueError("no scores to plot")
    if labels is not None and np.asarray(labels).reshape(-1).shape[0] != s.size:
        raise ValueError(f"{s.size} scores but {np.asarray(labels).size} labels")
    fig = Figure(figsize=(max(6.0, min(16.0, s.size / 60)), 3.0), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    handles = []
    if labels is not None:
        for a, b in label_intervals(labels):
            ax.axvspan(a - 0.5, b - 0.5, color="tab:red", alpha=0.2, lw=0)
        handles.append(Patch(color="tab:red", alpha=0.2, label="ground-truth anomaly"))
    (line,) = ax.plot(np.arange(s.size), s, color="tab:blue", lw=1.2, label="score")
    handles.insert(0, line)
    if threshold is not None:
        handles.append(ax.axhline(threshold, color="k", ls="--", lw=0.8, label="threshold"))
    ax.set_xlim(-0.5, s.size - 0.5)
    ax.set_xlabel("frame")
    ax.set_ylabel("anomaly score")
    if title:
        ax.set_title(title)
    ax.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def overlay(frame: np.ndarray, amap: np.ndarray, vmin: float, vmax: float, *,
            alpha: float = 0.6, colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """uint8 [H, W, 3] BGR: `frame` (uint8 [H, W, 3] BGR or [H, W]) with the map (float [h, w],
    resized to the frame) as a heat map scaled from vmin to vmax, blended with weight
    alpha * (normalised map value): low values leave the frame as it is, the top of the scale
    is blended with weight `alpha`."""
    f = np.asarray(frame)
    if f.ndim == 2:
        f = cv2.cvtColor(f, cv2.COLOR_GRAY2BGR)
    if f.dtype != np.uint8:
        raise TypeError(f"frames must be uint8, got {f.dtype}")
    H, W = f.shape[:2]
    m = np.asarray(amap, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"anomaly maps must be 2-D [h, w], got shape {m.shape}")
    if m.shape != (H, W):
        m = cv2.resize(m, (W, H), interpolation=cv2.INTER_LINEAR)
    z = np.clip((np.nan_to_num(m) - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
    heat = cv2.applyColorMap((z * 255).astype(np.uint8), colormap).astype(np.float32)
    w = (alpha * z)[..., None]
    return np.clip(f.astype(np.float32) * (1 - w) + heat * w, 0, 255).astype(np.uint8)


def write_overlay_video(path: str | os.PathLike, frames_iter: Iterable[np.ndarray],
                        maps_iter: Iterable[np.ndarray], fps: float = 25.0, *,
                        alpha: float = 0.6, vmin: float | None = None,
                        vmax: float | None = None, colormap: int = cv2.COLORMAP_JET) -> int:
    """Write an MJPG .avi of the frames (uint8 [H, W, 3] BGR) with their anomaly maps (float
    [h, w], resized to the frame) blended over them as a heat map (cv2.applyColorMap).

    The colour scale runs from `vmin` to `vmax`; where not given they are streaming: the
    smallest / largest map value seen so far (so a quiet start is not blown up later, and
    nothing has to be held in memory). Stops at the shorter of the two iterables. Returns the
    number of frames written.
    """
    path = Path(path)
    if path.suffix.lower() != ".avi":
        raise ValueError(f"write_overlay_video writes MJPG .avi files; got {path.name!r}")
    with atomic_path(path) as tmp:
        return _write_overlay(tmp, frames_iter, maps_iter, fps, alpha, vmin, vmax, colormap)


def _write_overlay(tmp: Path, frames_iter: Iterable[np.ndarray], maps_iter: Iterable[np.ndarray],
                   fps: float, alpha: float, vmin: float | None, vmax: float | None,
                   colormap: int) -> int:
    writer = None
    n = 0
    lo, hi = np.inf, -np.inf
    try:
        for frame, amap in zip(frames_iter, maps_iter):
            m = np.asarray(amap, dtype=np.float32)
            finite = m[np.isfinite(m)]
            if finite.size:
                lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
            a = vmin if vmin is not None else (lo if np.isfinite(lo) else 0.0)
            b = vmax if vmax is not None else (hi if np.isfinite(hi) else 1.0)
            img = overlay(frame, m, a, b, alpha=alpha, colormap=colormap)
            if writer is None:
                H, W = img.shape[:2]
                fourcc = cv2.VideoWriter_fourcc(*"MJPG")
                writer = cv2.VideoWriter(str(tmp), fourcc, float(fps), (W, H))
                if not writer.isOpened():
                    raise RuntimeError(f"OpenCV cannot write an MJPG .avi at {tmp}")
                size = (H, W)
            elif img.shape[:2] != size:
                raise ValueError(f"frame {n} has size {img.shape[:2]}, earlier ones {size}")
            writer.write(img)
            n += 1
        if writer is None:
            raise ValueError("no frames to write")
        writer.release()
        writer = None
    finally:
        if writer is not None:
            writer.release()
    return n


__all__ = ["label_intervals", "overlay", "plot_scores", "write_overlay_video"]


def _write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | os.PathLike, obj: dict) -> Path:
    """Write `obj` as indented JSON, atomically (numpy scalars and NaN become numbers/null)."""
    import json
    import math

    def clean(v):
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, np.ndarray):
            return clean(v.tolist())
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    return _write_text(path, json.dumps(clean(obj), indent=2, default=str) + "\n")


def write_scores_csv(path: str | os.PathLike, scores: np.ndarray,
                     raw_scores: np.ndarray | None = None) -> Path:
    """Write `frame,score[,raw_score]` rows, one per frame, atomically."""
    scores = np.asarray(scores).reshape(-1)
    cols = [np.arange(len(scores)), scores]
    header = "frame,score"
    if raw_scores is not None:
        cols.append(np.asarray(raw_scores).reshape(-1))
        header += ",raw_score"
    lines = [header] + [",".join(f"{c[i]:.6g}" if j else str(int(c[i])) for j, c in enumerate(cols))
                        for i in range(len(scores))]
    return _write_text(path, "\n".join(lines) + "\n")
