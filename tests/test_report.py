"""Report helpers: score plot PNG and heat-map overlay video, written atomically."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from aedfast.report import label_intervals, overlay, plot_scores, write_overlay_video


def test_label_intervals():
    assert label_intervals(np.array([0, 1, 1, 0, 0, 1])) == [(1, 3), (5, 6)]
    assert label_intervals(np.array([1, 1])) == [(0, 2)]
    assert label_intervals(np.zeros(4)) == []


def test_plot_scores(tmp_path):
    t = np.arange(200)
    labels = ((t > 60) & (t < 120)).astype(np.uint8)
    scores = 0.2 + 0.6 * labels + 0.05 * np.sin(t / 5)
    p = plot_scores(tmp_path / "plots/v01.png", scores, labels, "video 01", threshold=0.5)
    img = cv2.imread(str(p))
    assert img is not None and img.ndim == 3 and img.shape[0] >= 200
    plain = cv2.imread(str(plot_scores(tmp_path / "plain.png", scores)))
    assert plain.shape == img.shape
    # the shaded interval: reddish pixels appear only with labels
    def reddish(im):
        b, g, r = (im[..., k].astype(int) for k in range(3))
        return ((r - b > 25) & (r > 200)).sum()

    assert reddish(img) > 50 * reddish(plain) + 500
    assert sorted(q.name for q in tmp_path.rglob("*")) == ["plain.png", "plots", "v01.png"]
    with pytest.raises(ValueError, match="labels"):
        plot_scores(tmp_path / "bad.png", scores, labels[:10])
    assert not (tmp_path / "bad.png").exists()


def test_overlay_heat():
    frame = np.full((20, 30, 3), 100, np.uint8)
    amap = np.zeros((10, 15), np.float32)
    amap[5:, 7:] = 1.0  # hot bottom-right quarter, map at half resolution
    out = overlay(frame, amap, 0.0, 1.0, alpha=0.6)
    assert out.shape == frame.shape and out.dtype == np.uint8
    hot, cold = out[15, 25].astype(int), out[2, 2].astype(int)
    assert hot[2] > 110 and hot[0] < 60  # JET's top is (dark) red, BGR (0, 0, 128)
    np.testing.assert_array_equal(cold, 100)  # the cold end leaves the frame as it is
    with pytest.raises(TypeError):
        overlay(frame.astype(np.float32), amap, 0, 1)


def test_write_overlay_video(tmp_path):
    T, H, W = 12, 32, 48
    frames = [np.full((H, W, 3), 90, np.uint8) for _ in range(T)]
    maps = []
    for t in range(T):
        m = np.zeros((H // 2, W // 2), np.float32)
        m[4:10, t: t + 6] = 2.0 + t * 0.1
        maps.append(m)
    out = tmp_path / "ov.avi"
    n = write_overlay_video(out, iter(frames), iter(maps), fps=10)
    assert n == T
    cap = cv2.VideoCapture(str(out))
    got = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        got.append(f)
    assert len(got) == T and got[0].shape == (H, W, 3)
    hot = got[5][2 * 7, 2 * (5 + 3)].astype(int)  # inside the moving hot box of frame 5
    assert hot[2] - hot[0] > 35
    assert [p.name for p in tmp_path.iterdir()] == ["ov.avi"]  # temp file renamed away
    # fixed scale; fewer maps than frames stops early
    assert write_overlay_video(tmp_path / "b.avi", frames, maps[:4], vmin=0, vmax=5) == 4
    with pytest.raises(ValueError, match="no frames"):
        write_overlay_video(tmp_path / "c.avi", [], [])
    with pytest.raises(ValueError, match=".avi"):
        write_overlay_video(tmp_path / "c.mp4", frames, maps)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.avi", "ov.avi"]


def test_write_json_and_csv(tmp_path):
    import json

    import numpy as np

    from aedfast import report

    p = report.write_json(tmp_path / "r.json", {"auc": np.float32(0.5), "bad": float("nan"),
                                                "per": np.arange(2)})
    assert json.loads(p.read_text()) == {"auc": 0.5, "bad": None, "per": [0, 1]}
    c = report.write_scores_csv(tmp_path / "s.csv", np.array([0.25, 0.5]), np.array([1.0, 2.0]))
    assert c.read_text().splitlines() == ["frame,score,raw_score", "0,0.25,1", "1,0.5,2"]
    assert not list(tmp_path.glob(".*tmp*"))
