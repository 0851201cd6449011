"""bench/choose_defaults.py: the search's shortcut (filter each term once, sum, frame max,
temporal Gaussian) gives the scores a Detector with those settings computes; its box filter is
scipy's uniform filter; the weight grid has one setting per class of proportional ones."""

import itertools

import numpy as np
import pytest
import scipy.ndimage
import torch

from aedfast.detector import Detector
from aedfast.kernels.smoothing import smooth_scores
from aedfast.scoring import Smoothing
from bench import choose_defaults as cd
from tests.detector_fixtures import rel


@pytest.mark.parametrize("window", [(9, 9, 9), (5, 9, 9), (3, 1, 5), (9, 15, 15)])
def test_box_is_scipys_uniform_filter(window):
    rng = np.random.default_rng(1)
    m = rng.random((13, 11, 17)).astype(np.float32)
    want = scipy.ndimage.uniform_filter(m.astype(np.float64), size=window, mode="nearest")
    got = cd.box(m, window).numpy()
    assert np.abs(got - want).max() < 1e-5
    assert (cd.box(m, None).numpy() == m).all()
    # and its frame max is the library's fused filter + frame max
    lib = smooth_scores(torch.from_numpy(m), window=window, sigma=None).numpy()
    assert np.abs(got.max(axis=(1, 2)) - lib).max() < 1e-5


def test_weight_grid_one_per_proportional_class():
    grid = cd.weight_grid()
    keys = [tuple(w[k] for k in cd.TERMS) for w in grid]
    assert all(max(k) > 0 for k in keys)
    for x, y in itertools.combinations(keys, 2):
        assert not np.allclose(np.array(x) / max(x), np.array(y) / max(y))
    n_all = np.prod([len(v) for v in cd.GRID.values()]) - 1
    assert len(grid) < n_all
    sm = Smoothing()
    assert (sm.a, sm.b, sm.c, sm.d) in keys  # the current default is searched


class _Video:
    def __init__(self, frames: np.ndarray, labels: np.ndarray):
        self._frames, self.labels = frames, labels

    def frames(self) -> np.ndarray:
        return self._frames


def test_search_sums_equal_detector_scores(model, video):
    """Two videos (lengths 23 and 17): for several settings, the search's scores equal a
    Detector's with those settings (within float32 rounding), and the current default is
    `default_setting()`."""
    videos = [_Video(video, np.r_[np.zeros(12), np.ones(11)].astype(np.uint8)),
              _Video(video[3:20][::-1].copy(), np.r_[np.ones(5), np.zeros(12)].astype(np.uint8))]
    maps, labels = cd.term_maps(model, videos)
    v = cd.Variant("toy", maps, labels)
    settings = [cd.default_setting(),
                {"a": 1.0, "b": 0.3, "c": 0.0, "d": 3.0, "window": (5, 9, 9), "sigma": 5.0,
                 "support": 21, "floor": None},
                {"a": 0.0, "b": 0.0, "c": 1.0, "d": 1.0, "window": None, "sigma": 21.0,
                 "support": 65, "floor": 4.0}]
    sm = Smoothing()
    assert (settings[0]["window"], settings[0]["sigma"], settings[0]["floor"]) \
        == (sm.window, sm.sigma, sm.floor)
    for s in settings:
        got = v.scores(v.frame_max(s, s["window"]), s["sigma"], s["support"])
        if s["floor"] is not None:
            got = v.post(got, "none", s["floor"])
        det = Detector(model, device="cpu", seed=0, compile=False, smoothing={
            **{k: s[k] for k in cd.TERMS}, "window": s["window"], "sigma": s["sigma"],
            "support": s["support"], "floor": s["floor"]})
        for g, vid in zip(got, videos):
            want = det.score_video(vid.frames()).scores.astype(np.float64)
            assert g.shape == want.shape and rel(g, want) < 1e-5, s
    mm = v.post(v.scores(v.frame_max(settings[1], (5, 9, 9)), 5.0, 21), "minmax")
    assert all(abs(x.min()) < 1e-12 and abs(x.max() - 1) < 1e-12 for x in mm)


def test_variant_compare_table(tmp_path):
    """bench/variant_compare.py: rows per variant in first-seen order, '-' where a run lacks
    the variant, and per-split means only where every run has every variant of the split."""
    import json

    from bench import variant_compare as vc

    def run(name, rows):
        d = tmp_path / name
        d.mkdir()
        (d / "results.json").write_text(json.dumps({"command": "x", "date": "d", "rows": [
            {"variant": v, "split": sp, "micro_auc": mi, "macro_auc": ma}
            for v, sp, mi, ma in rows]}))
        return f"{name}={d}"

    a = run("a", [("v1", "dev", 0.5, 0.6), ("v2", "dev", 0.7, 0.8)])
    b = run("b", [("v2", "dev", 0.9, 1.0), ("h1", "held-out", 0.25, 0.5)])
    lines = vc.table(vc.load_runs([a, b]))
    assert lines[2] == "| v1 | dev | 0.5000 / 0.6000 | - |"
    assert lines[3] == "| v2 | dev | 0.7000 / 0.8000 | 0.9000 / 1.0000 |"
    assert lines[4] == "| h1 | held-out | - | 0.2500 / 0.5000 |"
    assert lines[5] == "| mean (dev) | dev | 0.6000 / 0.7000 | - |"
    assert lines[6] == "| mean (held-out) | held-out | - | 0.2500 / 0.5000 |"
    with pytest.raises(SystemExit, match="LABEL=DIR"):
        vc.load_runs(["nolabel"])
    with pytest.raises(SystemExit, match="no results.json"):
        vc.load_runs([f"c={tmp_path / 'missing'}"])
