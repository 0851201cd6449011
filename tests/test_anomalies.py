"""Synthetic anomaly sources and pasting (aedfast.anomalies)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from aedfast.anomalies import (
    SAMPLE_OFFSETS,
    AnomalyPaster,
    CutoutSource,
    SequenceSource,
    ShapeSource,
    Sprite,
    extract_cutouts,
    make_sources,
    paste_sprite,
    random_shape,
)


def _frames(T: int = 5, H: int = 96, W: int = 160, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    bg = rng.integers(60, 120, (H, W, 3), dtype=np.uint8)
    return np.stack([bg.copy() for _ in range(T)])


def test_paste_sprite_clips_and_marks():
    frame = np.zeros((10, 12, 3), np.uint8)
    mask = np.zeros((10, 12), bool)
    s = Sprite(np.full((4, 6, 3), 200, np.uint8), np.ones((4, 6), bool))
    n = paste_sprite(frame, mask, s, cx=0.0, cy=0.0)  # centred on the corner: a quarter shows
    assert n == 2 * 3 == mask.sum()
    assert (frame[mask] == 200).all() and (frame[~mask] == 0).all()
    assert paste_sprite(frame, mask, s, cx=100.0, cy=100.0) == 0  # fully outside: nothing


@pytest.mark.parametrize("seed", range(6))
def test_paste_mask_matches_changed_pixels_and_input_untouched(seed):
    frames = _frames()
    before = frames.copy()
    paster = AnomalyPaster(sources=[ShapeSource()], prob=1.0)
    res = paster.apply(frames, np.random.default_rng(seed))
    assert np.array_equal(frames, before), "the input frames (the clean target) must not change"
    assert res.frames.shape == frames.shape and res.masks.shape == frames.shape[:3]
    t0 = SAMPLE_OFFSETS.index(0)
    assert res.label and res.masks[t0].any()
    changed = (res.frames != frames).any(axis=-1)
    assert not changed[~res.masks].any(), "pixels outside the mask were modified"
    # inside the mask the object replaced the background (a texture may match a pixel or two)
    assert changed[res.masks].mean() > 0.9


def test_no_anomaly_returns_frames_as_given():
    frames = _frames()
    res = AnomalyPaster(sources=[ShapeSource()], prob=0.0).apply(frames, np.random.default_rng(0))
    assert res.frames is frames and not res.label and not res.masks.any()


def test_probability():
    paster = AnomalyPaster(sources=[ShapeSource(size=16)], prob=0.25)
    frames = _frames(H=48, W=64)
    hits = [paster.apply(frames, np.random.default_rng(s)).label for s in range(400)]
    assert 0.18 < np.mean(hits) < 0.32


def _centroid(m: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(m)
    return np.array([xs.mean(), ys.mean()])


def test_temporal_consistency_rigid_object():
    """A rigid object (no spin) keeps its shape over the sample's frames and moves on a
    straight line at constant speed: centroid(tau) = c0 + v * tau."""
    H, W = 120, 240
    frames = _frames(H=H, W=W)
    paster = AnomalyPaster(sources=[ShapeSource(max_spin=0.0)], prob=1.0, max_objects=1,
                           size=(0.2, 0.3), speed=(0.01, 0.03), still_prob=0.0)
    checked = 0
    for seed in range(40):
        res = paster.apply(frames, np.random.default_rng(seed))
        m = res.masks
        border = m[:, 0].any() or m[:, -1].any() or m[:, :, 0].any() or m[:, :, -1].any()
        if border:  # clipped by the frame edge at some offset: shapes differ legitimately
            continue
        areas = m.reshape(len(m), -1).sum(1)
        assert (areas == areas[0]).all(), areas
        c = np.stack([_centroid(x) for x in m])
        tau = np.asarray(SAMPLE_OFFSETS, float)
        A = np.stack([np.ones_like(tau), tau], 1)
        coef, *_ = np.linalg.lstsq(A, c, rcond=None)
        assert np.abs(A @ coef - c).max() <= 1.0  # integer placement: within a pixel
        assert np.hypot(*coef[1]) > 0.5  # it moves
        checked += 1
    assert checked >= 10


def test_still_object_stays_put():
    frames = _frames()
    paster = AnomalyPaster(sources=[ShapeSource(max_spin=0.0)], prob=1.0, max_objects=1,
                           still_prob=1.0)
    res = paster.apply(frames, np.random.default_rng(3))
    assert all(np.array_equal(res.masks[0], m) for m in res.masks)


def test_sequence_source_plays_its_frames_in_order():
    # sequence of 60 frames; frame k carries k in every pixel of channel 0
    n = 60
    f = np.zeros((n, 10, 8, 3), np.uint8)
    f[..., 0] = np.arange(n)[:, None, None]
    m = np.ones((n, 10, 8), bool)
    src = SequenceSource([(f, m)])
    for seed in range(20):
        sprites = src.track(np.random.default_rng(seed), SAMPLE_OFFSETS)
        ks = [int(s.image[0, :, 0].max()) for s in sprites]  # max: immune to a mirror flip
        # at most 3 sequence frames per video frame (bouncing at the ends), and it animates
        for a, b, ta, tb in zip(ks, ks[1:], SAMPLE_OFFSETS, SAMPLE_OFFSETS[1:]):
            assert abs(a - b) <= 3 * (tb - ta)
        assert len(set(ks)) > 1


def test_sequence_source_from_simple_folder(tmp_path):
    obj = tmp_path / "objects" / "ball"
    (obj / "frames").mkdir(parents=True)
    (obj / "masks").mkdir()
    for i in range(4):
        img = np.zeros((40, 50, 3), np.uint8)
        msk = np.zeros((40, 50), np.uint8)
        cv2.circle(img, (10 + 5 * i, 20), 8, (0, 0, 255), -1)
        cv2.circle(msk, (10 + 5 * i, 20), 8, 255, -1)
        cv2.imwrite(str(obj / "frames" / f"{i}.png"), img)
        cv2.imwrite(str(obj / "masks" / f"{i}.png"), msk)
    rgba = np.zeros((30, 30, 4), np.uint8)
    rgba[5:25, 5:25] = (0, 255, 0, 255)
    cv2.imwrite(str(tmp_path / "objects" / "still.png"), rgba)
    src = SequenceSource.from_folder(tmp_path / "objects")
    assert len(src) == 2
    sizes = sorted(f.shape[1:3] for f, _ in src.sequences)
    assert sizes == [(17, 32), (20, 20)]  # cropped to each object's bounding box over time
    sprites = src.track(np.random.default_rng(0), SAMPLE_OFFSETS)
    assert len(sprites) == len(SAMPLE_OFFSETS) and all(s.mask.any() for s in sprites)
    sources, cut = make_sources(str(tmp_path / "objects"))
    assert isinstance(sources[0], SequenceSource) and not cut


def test_sequence_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        SequenceSource.from_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no object sequences"):
        SequenceSource.from_folder(tmp_path / "empty")
    bad = tmp_path / "bad" / "obj"
    bad.mkdir(parents=True)
    cv2.imwrite(str(bad / "0.png"), np.zeros((8, 8, 3), np.uint8))  # no alpha channel
    with pytest.raises(ValueError, match="alpha"):
        SequenceSource.from_folder(tmp_path / "bad")


def test_extract_cutouts_finds_the_moving_object():
    n, H, W = 20, 60, 90
    rng = np.random.default_rng(0)
    bg = rng.integers(40, 80, (H, W, 3), dtype=np.uint8)
    clip = np.stack([bg.copy() for _ in range(n)])
    for i in range(n):
        clip[i, 20:32, 5 + 3 * i:15 + 3 * i] = 220  # a 12 x 10 block walking right
    cuts = extract_cutouts(clip, np.random.default_rng(1))
    assert cuts, "no cut-out found"
    for s in cuts:
        assert s.mask.shape == (12, 10) and s.mask.all()
        assert (s.image == 220).all()
    static = np.stack([bg] * n)
    assert extract_cutouts(static, np.random.default_rng(1)) == []
    src = CutoutSource.from_frames([clip], np.random.default_rng(2))
    assert len(src) >= 1
    assert len(src.track(np.random.default_rng(0), SAMPLE_OFFSETS)) == len(SAMPLE_OFFSETS)


def test_cutouts_used_when_given():
    frames = _frames()
    sprite = Sprite(np.full((20, 10, 3), 250, np.uint8), np.ones((20, 10), bool))
    paster = AnomalyPaster(sources=[], prob=1.0, max_objects=1)
    res = paster.apply(frames, np.random.default_rng(0), cutouts=CutoutSource([sprite], 0.0))
    assert res.label
    assert (res.frames[res.masks] >= 200).all()  # the white cut-out, resized
    # no source at all: nothing is pasted
    assert not paster.apply(frames, np.random.default_rng(0)).label


def test_random_shape_and_make_sources():
    for s in range(20):
        sp = random_shape(np.random.default_rng(s), 32)
        assert sp.mask.any() and sp.image.shape[:2] == sp.mask.shape
    srcs, cut = make_sources("procedural")
    assert [type(s) for s in srcs] == [ShapeSource] and cut
    assert make_sources("none") == ([], False)
    assert make_sources("shapes+cutouts")[1]
    with pytest.raises(ValueError, match="unknown anomaly source"):
        make_sources("sparkles")


def test_apply_validates():
    paster = AnomalyPaster(prob=1.0)
    with pytest.raises(ValueError, match="uint8"):
        paster.apply(np.zeros((5, 8, 8, 3), np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match="offsets"):
        paster.apply(np.zeros((3, 8, 8, 3), np.uint8), np.random.default_rng(0))
    with pytest.raises(ValueError, match="probability"):
        AnomalyPaster(prob=1.5)


def test_object_size_range():
    with pytest.raises(ValueError, match="size range"):
        AnomalyPaster(size=(0.0, 0.5))
    with pytest.raises(ValueError, match="size range"):
        AnomalyPaster(size=(0.4, 0.2))
    H = 96
    heights = {}
    for size in ((0.05, 0.08), (0.4, 0.5)):
        paster = AnomalyPaster(prob=1.0, max_objects=1, size=size, still_prob=1.0)
        hs = []
        for seed in range(30):
            res = paster.apply(_frames(H=H), np.random.default_rng(seed))
            rows = np.flatnonzero(res.masks[2].any(1))
            # objects whose box lies fully inside the frame show their whole height
            if len(rows) and 0 < rows[0] and rows[-1] < H - 1:
                hs.append(rows[-1] - rows[0] + 1)
        heights[size] = hs
        assert len(hs) >= 5
        # a drawn height in [lo, hi] * H; spinning shapes may end up a little shorter
        assert max(hs) <= size[1] * H + 2, (size, hs)
    assert max(heights[(0.05, 0.08)]) < min(heights[(0.4, 0.5)])
