"""`aedfast.evaluate` in memory that does not grow with the data set (docs/design.md §5): the
localisation metrics are streamed video by video, so the peak memory of a test set four times
longer stays where the short one's is, and the streamed metrics agree with the all-in-memory
ones on the same maps."""

from __future__ import annotations

import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import aedfast
from aedfast import metrics
from aedfast.data import open_dataset
from aedfast.data.synthetic import generate
from aedfast.model import AEDMAE

SIZE = (64, 128)  # frames and masks at the tiny preset's size: maps need no resizing
FRAMES = 60  # the shortest synthetic video


@pytest.fixture(scope="module")
def four_videos(tmp_path_factory):
    """A synthetic test set of 4 labelled videos with masks, and a tiny Detector."""
    torch.manual_seed(0)
    ckpt = AEDMAE.from_preset("tiny").save(tmp_path_factory.mktemp("ck") / "tiny.safetensors")
    root = generate(tmp_path_factory.mktemp("data") / "synth", n_train=1, n_test=4,
                    frames=FRAMES, size=SIZE, progress=False)
    ds = open_dataset(root, "shanghaitech")
    assert len(ds.test) == 4 and all(v.masks is not None for v in ds.test)
    return ds, aedfast.Detector(ckpt, compile=False, batch_size=8)


def _first(ds, n: int) -> SimpleNamespace:
    """The data set cut to its first n test videos."""
    return SimpleNamespace(test=ds.test[:n], root=ds.root, kind=ds.kind)


def _traced_peak(det, dataset) -> tuple[dict, int]:
    """(result, peak bytes that Python and numpy allocated during `evaluate`)."""
    tracemalloc.start()
    try:
        res = aedfast.evaluate(det, dataset, progress=False)
        peak = tracemalloc.get_traced_memory()[1]
        print(f"{len(dataset.test)} videos: traced peak {peak / 2**20:.2f} MiB")
        return res, peak
    finally:
        tracemalloc.stop()


def test_evaluate_peak_memory_flat_and_streamed_metrics_exact(four_videos):
    ds, det = four_videos
    short, peak_short = _traced_peak(det, _first(ds, 1))
    long, peak_long = _traced_peak(det, _first(ds, 4))
    assert long["frames"] == 4 * short["frames"] == 4 * FRAMES
    # what holding the long set's maps and masks would add over the short set's (float32 maps
    # and bool masks of 3 more videos); the streamed evaluation grows only by histogram
    # blocks of PixelAUC for newly met exponents (64 KiB each, 32 MiB at most; how many the
    # later videos meet depends on the scoring weights: ~29 with the 2026-12-01 defaults)
    held = 3 * FRAMES * SIZE[0] * SIZE[1] * (4 + 1)
    margin = 2.5 * 2**20
    assert held > 2.5 * margin
    assert peak_long <= peak_short + margin, (peak_short, peak_long)
    for res in (short, long):
        assert 0 <= res["pixel_auc"] <= 1 and 0 <= res["mask_rbdc"] <= 1
        assert 0 <= res["mask_tbdc"] <= 1 and res["rbdc"] is None  # no box tracks given
        assert 0 < res["pixel_auc_error_bound"] <= 1e-3
    # the short set's maps again, through the all-in-memory functions
    v = ds.test[0]
    maps = det.score_video(v.frames(), return_maps=True).maps
    masks = np.stack(list(v.masks))
    exact = metrics.pixel_auc(maps, masks)
    assert abs(short["pixel_auc"] - exact) <= short["pixel_auc_error_bound"]
    # one video: the streamed default thresholds are default_thresholds of its maps
    thr = metrics.default_thresholds(maps, max_samples=65536)
    assert (short["mask_rbdc"], short["mask_tbdc"]) == metrics.mask_rbdc_tbdc(
        maps, masks, thresholds=thr)
