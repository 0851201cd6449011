"""The synthetic benchmark family: every named variant generates consistent trees, each knob has
the effect it claims (measured with numpy / OpenCV), the dev / held-out split is sound, and the
default generator output is byte-identical to before the family existed."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from aedfast.data import open_dataset
from aedfast.data.synthetic import (
    generate,
    load_manifest,
    make_scene,
    render_video,
    variant_scene,
    video_seed,
)
from aedfast.data.synthetic_variants import (
    DEV_VARIANTS,
    HELDOUT_VARIANTS,
    KNOBS,
    VARIANTS,
    Variant,
    get_variant,
    tilt_frames,
)

# Regression fixtures, computed (by the code of `_tree_hash` and of the test below) with the
# generator as committed before the benchmark family was added, not typed from any result: the
# sha256 of the decoded PNG test / validation frames and .npy labels and masks of
# generate(seed=3, n_train=1, n_test=1, n_val=1, frames=60, image_ext=".png"), and of the raw
# frames of training video 0 rendered at seed 3 (see `_tree_hash` and the test below).
DEFAULT_TREE_SHA256 = "4cf7103dc3f5500761dabd5760bc3f6d51d2fec92de2a075a3f1f57e8444b332"
DEFAULT_TRAIN_SHA256 = "91db170147e599fd2848554141bb6ac010babcd51b22ba662efc8a2f15f1bee9"
V2_PARAM_KEYS = {"generator", "version", "seed", "n_train", "n_test", "n_val", "frames", "size",
                 "fps", "image_ext", "kinds", "noise"}


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for sub in ("testing", "validation"):
        for f in sorted((root / sub).rglob("*")):
            if f.suffix == ".png":
                h.update(cv2.imread(str(f), cv2.IMREAD_COLOR).tobytes())
            elif f.suffix == ".npy":
                h.update(np.load(f).tobytes())
    return h.hexdigest()


def _render(v: Variant, T: int = 24, kinds: tuple[str, ...] = (), seed: int = 0,
            size: tuple[int, int] = (64, 128), split: str = "train", index: int = 0):
    scene = variant_scene(seed, v, *(v.size or size))
    rng = np.random.default_rng(video_seed(seed, split, index))
    noise = 2.5 if v.noise is None else v.noise
    return scene, *render_video(scene, rng, T, list(kinds), noise=noise, variant=v)


def test_default_output_unchanged(tmp_path):
    root = generate(tmp_path / "t", seed=3, n_train=1, n_test=1, n_val=1, frames=60,
                    image_ext=".png", progress=False)
    assert _tree_hash(root) == DEFAULT_TREE_SHA256
    f, m = render_video(make_scene(3, 64, 128), np.random.default_rng(video_seed(3, "train", 0)),
                        60, [])
    assert m is None and hashlib.sha256(f.tobytes()).hexdigest() == DEFAULT_TRAIN_SHA256
    # the same through an explicit default variant, and a version-2 manifest
    again = generate(tmp_path / "v", seed=3, n_train=1, n_test=1, n_val=1, frames=60,
                     image_ext=".png", variant=Variant("default"), progress=False)
    assert _tree_hash(again) == DEFAULT_TREE_SHA256
    man = load_manifest(root)
    assert set(man["params"]) == V2_PARAM_KEYS and man["params"]["version"] == 2
    assert man["variant"] == Variant().to_dict()
    # a version-2 tree written before the family (no top-level "variant") is reused as is
    del man["variant"]
    (root / "manifest.json").write_text(json.dumps(man))
    mtime = (root / "manifest.json").stat().st_mtime_ns
    generate(root, seed=3, n_train=1, n_test=1, n_val=1, frames=60, image_ext=".png",
             variant="default", progress=False)
    assert (root / "manifest.json").stat().st_mtime_ns == mtime


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    base = tmp_path_factory.mktemp("variants")
    return {name: generate(base / name, seed=1, n_train=1, n_test=1, n_val=0, frames=60,
                           variant=name, progress=False) for name in VARIANTS}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_generates(trees, name):
    v = VARIANTS[name]
    root = trees[name]
    H, W = v.size or (64, 128)
    ds = open_dataset(root, "shanghaitech")
    assert ds.train[0][0].shape == (H, W, 3) and len(ds.train[0]) == 60
    test = ds.test[0]
    assert test[0].shape == (H, W, 3)
    lab = test.labels
    np.testing.assert_array_equal(lab, [test.mask(t).any() for t in range(len(test))])
    assert test.mask(0).shape == (H, W) and 0.1 < lab.mean() < 0.8
    man = load_manifest(root)
    assert man["variant"] == v.to_dict() and man["variant"]["name"] == name
    assert ("variant" in man["params"]) == (not v.is_default())
    if not v.is_default():
        assert man["params"]["variant"] == v.to_dict() and set(man["params"]["variant"]) == \
            {"name", *KNOBS}
    assert set(man["test_videos"]["01_0001"]["kinds"]) <= set(v.kinds or man["params"]["kinds"])
    assert man["params"]["size"] == [H, W]


def test_variants_deterministic_and_different(trees):
    for name in ("plaza_high", "square_flicker"):
        v = VARIANTS[name]
        a, b = _render(v, kinds=("running",), split="test"), \
            _render(v, kinds=("running",), split="test")
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[2], b[2])
    firsts = {}
    for name, root in trees.items():
        img = cv2.imread(str(root / "testing/frames/01_0001/030.jpg"))
        firsts[name] = cv2.resize(img, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
    names = list(firsts)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(firsts[a] - firsts[b]).mean() > 2.0, (a, b)


def test_split_is_disjoint_and_covers_registry():
    assert set(DEV_VARIANTS).isdisjoint(HELDOUT_VARIANTS)
    assert set(DEV_VARIANTS) | set(HELDOUT_VARIANTS) == set(VARIANTS)
    assert "default" in DEV_VARIANTS and VARIANTS["default"].is_default()
    assert all(VARIANTS[n].name == n for n in VARIANTS)
    for h in HELDOUT_VARIANTS:
        for d in DEV_VARIANTS:
            kh, kd = VARIANTS[h].knobs(), VARIANTS[d].knobs()
            assert sum(kh[k] != kd[k] for k in KNOBS) >= 3, (h, d)


def test_lighting_drift_and_flicker():
    T = 120
    _, base, _ = _render(Variant(), T=T)
    _, drift, _ = _render(Variant(drift=-0.3), T=T)
    _, flick, _ = _render(Variant(flicker=0.05), T=T)
    m0 = base.reshape(T, -1).mean(1)
    ratio = drift.reshape(T, -1).mean(1) / m0
    slope, icpt = np.polyfit(np.arange(T), ratio, 1)
    assert abs(slope * (T - 1) - (-0.3)) < 0.01 and abs(icpt - 1) < 0.01
    r = flick.reshape(T, -1).mean(1) / m0
    assert abs(r.mean() - 1) < 0.02 and 0.035 < r.std() < 0.065


@pytest.mark.parametrize("sigma", [2.5, 8.0])
def test_sensor_noise_sigma(sigma):
    H = 96
    _, f, _ = _render(Variant(noise=sigma), T=60, size=(H, 128))
    sky = f[:, : int(0.07 * H) - 1].astype(np.float64)  # static: nothing moves in the sky
    d = np.diff(sky, axis=0)
    # diff of two frames: 2 (sigma^2 + 1/12), the 1/12 from truncation to uint8
    est = math.sqrt(max(d.var() / 2 - 1 / 12, 0))
    assert abs(est - sigma) < 0.1 * sigma, est


def test_compression_is_a_jpeg_roundtrip():
    _, raw, m_raw = _render(Variant(), T=24, kinds=("vehicle",), split="test")
    _, comp, m_comp = _render(Variant(jpeg=40), T=24, kinds=("vehicle",), split="test")
    np.testing.assert_array_equal(m_raw, m_comp)  # compression leaves the ground truth
    for t in range(24):
        ok, buf = cv2.imencode(".jpg", raw[t], [cv2.IMWRITE_JPEG_QUALITY, 40])
        np.testing.assert_array_equal(comp[t], cv2.imdecode(buf, cv2.IMREAD_COLOR))
    err = np.abs(comp.astype(np.float64) - raw).mean()
    mse = ((comp.astype(np.float64) - raw) ** 2).mean()
    # bounded (the fine grain and sensor noise of these small frames are what JPEG loses),
    # and more than at quality 95
    assert 0.3 < err < 15 and 10 * math.log10(255 ** 2 / mse) > 22
    _, hq, _ = _render(Variant(jpeg=95), T=24, kinds=("vehicle",), split="test")
    assert np.abs(hq.astype(np.float64) - raw).mean() < 0.7 * err


def _height_vs_row(vanish: float) -> tuple[float, float, float]:
    """Slope of the wrong-way walker's mask height against its bottom row, and its mean mask
    area with the feet in the upper and the lower part of the lawn / walkway."""
    v = Variant(vanish=vanish, density=0.0)
    scene, _, masks = _render(v, T=200, kinds=("wrong_way",), size=(96, 128), split="test")
    rows, heights, areas = [], [], []
    for m in masks:
        ys = np.nonzero(m.any(1))[0]
        if ys.size == 0 or ys[-1] >= m.shape[0] - 2 or ys[-1] - ys[0] < 2:
            continue
        rows.append(ys[-1])
        heights.append(ys[-1] - ys[0] + 1)
        areas.append(m.sum())
    rows_, areas_, heights_ = np.asarray(rows), np.asarray(areas), np.asarray(heights)
    H = masks.shape[1]
    low = rows_ >= 0.5 * H  # below every variant's vanishing row (sizes clamp above it)
    slope = np.polyfit(rows_[low], heights_[low], 1)[0] / scene.slope
    top = areas_[rows_ < 0.55 * H].mean()
    bottom = areas_[rows_ >= 0.8 * H].mean()
    return slope, top, bottom


def test_perspective_gradient():
    ratios = {}
    for vanish in (-0.6, 0.2, 0.4):
        slope, top, bottom = _height_vs_row(vanish)
        # the measured growth of the mask height per row is the scene's (x ~1.02: hair, feet)
        assert 0.8 < slope < 1.35, (vanish, slope)
        assert top < bottom, vanish  # agents smaller towards the top
        ratios[vanish] = bottom / top
    assert ratios[-0.6] < ratios[0.2] < ratios[0.4], ratios
    # the camera height keeps a person's size in the middle of the walkway
    for vanish in (-0.6, 0.4):
        s = make_scene(0, 64, 128, vanish=vanish)
        assert abs(s.height_at(0.76 * 64) - make_scene(0, 64, 128).height_at(0.76 * 64)) < 1e-9


def test_crowd_density():
    def occupancy(density: float) -> float:
        occ = []
        for i in range(3):
            scene, f, _ = _render(Variant(density=density), T=100, index=i)
            diff = np.abs(f.astype(np.int16) - scene.background).max(axis=3)
            occ.append((diff > 40).mean())
        return float(np.mean(occ))

    one, three, none = occupancy(1.0), occupancy(3.0), occupancy(0.0)
    assert none < 1e-4 and one > 0.005 and 1.8 < three / one < 4.5, (none, one, three)


def test_anomaly_size_scale():
    def area(scale: float) -> float:
        _, _, m = _render(Variant(anomaly_scale=scale, density=0.0), T=120,
                          kinds=("vehicle",), split="test")
        a = m.reshape(len(m), -1).sum(1)
        full = a[a > 0.5 * a.max()]  # the car fully in view
        return float(np.median(full))

    r = area(0.6) / area(1.0)
    assert 0.2 < r < 0.55, r  # areas scale with the square of the size
    assert area(1.3) / area(1.0) > 1.4


def test_tilt_rotates_frames_and_masks_without_empty_corners():
    H, W, deg = 64, 128, 5.0
    img = np.zeros((1, H, W, 3), np.uint8)
    img[0, H // 2 - 1: H // 2 + 1] = 255
    mask = (img[..., 0] > 0).astype(np.uint8)
    out, m = tilt_frames(img, mask, deg)
    ys, xs = np.nonzero(out[0, ..., 0] > 127)
    slope = np.polyfit(xs, ys, 1)[0]
    assert abs(slope + math.tan(math.radians(deg))) < 0.01, slope  # counter-clockwise
    inter = ((out[0, ..., 0] > 127) & (m[0] > 0)).sum()
    assert inter / max((out[0, ..., 0] > 127).sum(), m[0].sum()) > 0.6
    _, full = tilt_frames(img, np.ones((1, H, W), np.uint8), deg)
    assert full.all()  # zoomed enough: no corner outside the source
    # in a variant, frames and masks are rotated together (the same scene and people)
    _, f, mk = _render(Variant(tilt=3.0), T=60, kinds=("running",), split="test")
    _, f0, mk0 = _render(Variant(), T=60, kinds=("running",), split="test")
    f1, mk1 = tilt_frames(f0, mk0, 3.0)
    np.testing.assert_array_equal(f, f1)
    np.testing.assert_array_equal(mk, mk1)
    assert mk.any() and not np.array_equal(mk, mk0)


def test_scene_knobs():
    base = make_scene(0, 64, 128)
    for style in ("plaza", "autumn", "dusk", "overcast"):
        s = make_scene(0, 64, 128, style=style)
        assert np.abs(s.background.astype(np.float32) - base.background).mean() > 5, style
    assert make_scene(0, 64, 128, style="dusk").background.mean() < 0.7 * base.background.mean()
    # texture amplitude: the fine grain of the walkway (horizontal pixel differences)
    def grain(s):
        band = s.background[int(0.62 * 64): int(0.88 * 64), :, 1].astype(np.float32)
        return np.median(np.abs(np.diff(band, axis=1)))
    g2 = grain(make_scene(0, 64, 128, texture=2.0)) / grain(base)
    assert 1.5 < g2 < 2.5, g2
    s = make_scene(0, 64, 128, horizon=0.25, walkway=(0.55, 0.88))
    assert s.y_ground == 0.25 * 64 and 0.55 * 64 < s.walk_band[0] < s.walk_band[1] < 0.88 * 64
    v = VARIANTS["low_camera_crowd"]
    assert not np.array_equal(variant_scene(0, v, 64, 128).background,
                              variant_scene(0, dataclasses.replace(v, scene_seed=None), 64,
                                            128).background)


def test_argument_checks(tmp_path):
    with pytest.raises(ValueError, match="size"):
        generate(tmp_path / "x", size=(64, 128), variant="plaza_high", progress=False)
    with pytest.raises(ValueError, match="unknown variant 'nope'"):
        get_variant("nope")
    with pytest.raises(ValueError, match="'odd'.*style"):
        Variant("odd", style="neon")
    with pytest.raises(ValueError, match="kinds"):
        Variant("odd", kinds=("alien",))
    # the same values as the variant's are fine; another variant on the tree is refused
    args = {"seed": 2, "n_train": 1, "n_test": 1, "n_val": 0, "frames": 60, "progress": False}
    root = generate(tmp_path / "sq", size=(80, 80), variant="square_flicker", **args)
    assert generate(root, variant="square_flicker", **args) == root
    with pytest.raises(FileExistsError):
        generate(root, variant="night_compressed", **args)
