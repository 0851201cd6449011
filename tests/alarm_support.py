"""Shared pieces of the alarm and calibration tests: a direct reading of the event rule
(independent of aedfast.alarms: runs from np.diff, then merged, then filtered), a small random
model, synthetic normal videos, and one CPU thread while they run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aedfast.data.synthetic import make_scene, render_video, video_seed
from aedfast.model import AEDMAE, get_preset

SMALL = dict(img_size=(32, 64), patch_size=8, embed_dim=32, depth=1, num_heads=2,
             decoder_embed_dim=32, decoder_depth=2, decoder_num_heads=2)
# short smoothing: more independent excursions per frame, so more events per second of video
FAST_SMOOTHING = {"window": (3, 3, 3), "sigma": 2.0, "support": 7}


def direct_events(scores, threshold: float, min_length: int, merge_gap: int) -> list[tuple]:
    """(start, end, peak_frame, peak_score) of each event, read directly from the definition:
    maximal runs of scores > threshold; neighbouring runs at most merge_gap frames apart
    joined; kept when end - start + 1 >= min_length; the peak the first largest score."""
    s = np.asarray(scores, dtype=np.float64)
    above = np.concatenate(([0], (s > threshold).astype(np.int8), [0]))
    d = np.diff(above)
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1
    merged: list[list[int]] = []
    for a, b in zip(starts.tolist(), ends.tolist()):
        if merged and a - merged[-1][1] - 1 <= merge_gap:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    out = []
    for a, b in merged:
        if b - a + 1 >= min_length:
            k = a + int(np.argmax(s[a:b + 1]))
            out.append((a, b, k, float(s[k])))
    return out


def small_model(seed: int = 0) -> AEDMAE:
    torch.manual_seed(seed)
    return AEDMAE(get_preset("tiny", **SMALL)).eval()


def normal_videos(first: int, n: int, frames: int, seed: int = 0) -> list[np.ndarray]:
    """Normal videos of the synthetic benchmark's training split (no anomalies), rendered in
    memory at 32 x 64: seeds video_seed(seed, "train", first .. first + n - 1)."""
    scene = make_scene(seed, 32, 64)
    return [render_video(scene, np.random.default_rng(video_seed(seed, "train", i)), frames,
                         [])[0] for i in range(first, first + n)]


@pytest.fixture
def one_thread():
    """One torch thread for the test (two threads on a shared, loaded 2-core machine run the
    small models several times slower); restored afterwards."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
