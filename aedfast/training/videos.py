"""The training videos: opened from what `train` was given and checked before any step.

A video is anything with `len(v)`, `v[i]` -> uint8 [H, W, 3] BGR and `v.frames(start, stop)`
(the `aedfast.data` readers); `name` is used in messages when it has one.
"""

from __future__ import annotations

import os

import numpy as np

from .errors import TrainingDataError

__all__ = ["open_videos", "probe_videos"]


def open_videos(data, dataset: str) -> list:
    """The training videos of `data`: a data set root (opened with
    `aedfast.data.open_dataset(data, dataset)`), an opened data set (its `.train`) or a list
    of videos. Raises `TrainingDataError` when there are none."""
    if isinstance(data, (str, os.PathLike)):
        from ..data import open_dataset

        videos = open_dataset(data, dataset).train
        where = str(data)
    elif hasattr(data, "train"):
        videos, where = data.train, str(getattr(data, "root", "data set"))
    else:
        videos, where = list(data), "the given videos"
    if not videos:
        raise TrainingDataError(f"{where}: no training videos")
    return list(videos)


def probe_videos(videos: list, allow_mixed: bool) -> tuple[list[int], list[tuple[int, int]]]:
    """(frame counts, (H, W) of each video's frame 0); raises `TrainingDataError` for an empty
    or unreadable video, a frame 0 that is not uint8 [H, W, 3], or videos of different sizes
    unless `allow_mixed`."""
    lengths, sizes = [], []
    for v in videos:
        name = getattr(v, "name", repr(v))
        n = len(v)
        if n < 1:
            raise TrainingDataError(f"training video {name!r} has no frames")
        try:
            f = v[0]
        except Exception as e:  # noqa: BLE001
            raise TrainingDataError(f"training video {name!r}: cannot read frame 0: {e}") from e
        if not isinstance(f, np.ndarray) or f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
            raise TrainingDataError(f"training video {name!r}: frame 0 is not uint8 [H, W, 3]")
        lengths.append(n)
        sizes.append(tuple(int(s) for s in f.shape[:2]))
    distinct = sorted(set(sizes))
    if len(distinct) > 1 and not allow_mixed:
        ex = {s: next(getattr(v, "name", "?") for v, z in zip(videos, sizes) if z == s)
              for s in distinct}
        raise TrainingDataError(
            "training videos have mixed resolutions: "
            + ", ".join(f"{w}x{h} (e.g. {ex[(h, w)]!r})" for h, w in distinct[:6])
            + "; every frame is resized to the model's input, which distorts some of them: "
            "pass allow_mixed_sizes=True (--allow-mixed-sizes) to train anyway")
    return lengths, sizes
