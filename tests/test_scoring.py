"""Tests of aedfast.scoring: the chunked filter, min-max normalisation, smoothing options."""

import math

import numpy as np
import pytest
import torch

from aedfast.kernels.smoothing import smooth_scores
from aedfast.scoring import (
    ChunkFilter,
    Smoothing,
    anomaly_maps,
    finish_scores,
    minmax_normalize,
    resolve_smoothing,
    subtract_floor,
)
from tests.test_smoothing import np_maps, np_smooth


@pytest.mark.parametrize("n", [17, 40, 64, 100])
@pytest.mark.parametrize("window", [(9, 9, 9), (3, 5, 5), (1, 3, 3), None])
def test_chunk_filter_equals_whole_volume(n, window):
    maps = torch.rand(n, 6, 10, generator=torch.Generator().manual_seed(n))
    sm = Smoothing(window=window)
    f = ChunkFilter(sm, "paper", min_chunk=5)
    rng = np.random.default_rng(n)
    i = 0
    while i < n:
        k = int(rng.integers(1, 12))
        f.push(maps[i:i + k])
        i += k
    got = f.finish()
    ref = smooth_scores(maps, window=window, sigma=None)
    assert got.shape == (n,)
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)


def test_minmax_normalize_numpy_and_torch_agree():
    x = np.array([3.0, 1.0, 2.0, 5.0])
    want = (x - 1.0) / 4.0  # by hand: (x - min) / (max - min)
    np.testing.assert_allclose(minmax_normalize(x), want)
    got = minmax_normalize(torch.tensor(x))
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), want)
    np.testing.assert_array_equal(minmax_normalize(np.full(4, 7.0)), np.zeros(4))
    assert float(minmax_normalize(torch.full((4,), 7.0)).abs().max()) == 0.0
    assert np.isnan(minmax_normalize(np.array([1.0, np.nan]))).all()
    assert minmax_normalize(np.zeros(0)).shape == (0,)


def test_resolve_smoothing():
    assert resolve_smoothing("default", "paper", "avenue") == Smoothing()
    off = resolve_smoothing("default", "official", "shanghaitech")
    assert (off.support, off.sigma, off.temporal, off.window) == (899, 282.0, "official", None)
    none = resolve_smoothing(None, "paper", "avenue")
    assert none.window is None and none.sigma is None
    assert resolve_smoothing({"window": 5}, "paper", "avenue").window == (5, 5, 5)
    with pytest.raises(ValueError, match="window"):
        resolve_smoothing({"window": (4, 4, 4)}, "paper", "avenue")
    with pytest.raises(ValueError, match="resolution"):
        resolve_smoothing({"resolution": "voxel"}, "paper", "avenue")
    with pytest.raises(TypeError, match="Smoothing"):
        resolve_smoothing(3, "paper", "avenue")
    assert resolve_smoothing({"floor": 200}, "paper", "avenue").floor == 200
    assert resolve_smoothing(None, "paper", "avenue").floor is None  # raw scores
    assert resolve_smoothing("default", "official", "avenue").floor is None
    for bad in (0.5, -3, float("inf"), float("nan"), "500", True):
        with pytest.raises(ValueError, match="floor"):
            resolve_smoothing({"floor": bad}, "paper", "avenue")


# ----------------------------------------------------------------------------- score floor


def floor_reference(s: list[float], tau: float) -> list[float]:
    """The floor as docs/design.md §6 words it, written out case by case: it starts at the
    first score, drops to any lower score at once, and otherwise moves 1/tau of the way up to
    the score; NaN scores pass through and do not move it."""
    out, b = [], None
    for x in s:
        if math.isnan(x):
            out.append(math.nan)
            continue
        if b is None or x <= b:
            b = x
        else:
            b = b + (x - b) / tau
        out.append(x - b)
    return out


@pytest.mark.parametrize("tau", [1.0, 2.5, 40.0, 1000.0])
def test_subtract_floor_vs_reference(tau):
    rng = np.random.default_rng(int(tau))
    s = np.cumsum(rng.normal(0, 1, 300)) + rng.normal(0, 0.5, 300)
    s[[17, 18, 200]] = np.nan
    got, last = subtract_floor(s, tau)
    want = floor_reference(s.tolist(), tau)
    assert got.dtype == np.float32 and got.shape == s.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, equal_nan=True)
    assert np.isnan(got[[17, 18, 200]]).all() and (got[~np.isnan(got)] >= 0).all()
    assert got[0] == 0.0 and isinstance(last, float)
    # torch in, torch out; the same values
    t, _ = subtract_floor(torch.from_numpy(s).float(), tau)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), want, rtol=1e-5, atol=1e-4, equal_nan=True)


def test_subtract_floor_slow_rise_is_running_minimum():
    # an (almost) never rising floor is the running minimum: numpy's own accumulate
    s = np.random.default_rng(3).normal(0, 1, 500).cumsum()
    got, _ = subtract_floor(s, 1e15)
    np.testing.assert_allclose(got, s - np.minimum.accumulate(s), rtol=1e-6, atol=1e-5)
    # tau = 1: the floor is the score itself, everything scores 0
    assert not subtract_floor(s, 1.0)[0].any()


def test_subtract_floor_chunks_and_streams_equal_whole_video():
    rng = np.random.default_rng(5)
    videos = [rng.normal(0, 1, n).cumsum() for n in (40, 13, 27)]
    whole = [subtract_floor(v, 7.0)[0] for v in videos]
    # one video in chunks, the floor carried over
    parts, b = [], None
    for a, e in ((0, 1), (1, 9), (9, 10), (10, 40)):
        o, b = subtract_floor(videos[0][a:e], 7.0, b)
        parts.append(o)
    np.testing.assert_allclose(np.concatenate(parts), whole[0], rtol=1e-6, atol=1e-6)
    # three streams side by side, NaN-padded to the longest, fed in two steps
    mat = np.full((3, 40), np.nan)
    for i, v in enumerate(videos):
        mat[i, :len(v)] = v
    o1, b = subtract_floor(mat[:, :20], 7.0)
    o2, b = subtract_floor(mat[:, 20:], 7.0, b)
    got = np.concatenate([o1, o2], axis=1)
    for i, v in enumerate(videos):
        np.testing.assert_allclose(got[i, :len(v)], whole[i], rtol=1e-6, atol=1e-6)
        assert np.isnan(got[i, len(v):]).all()
        assert b[i] == pytest.approx(subtract_floor(v, 7.0)[1])
    with pytest.raises(ValueError, match="floor"):
        subtract_floor(videos[0], 0.0)
    with pytest.raises(ValueError, match=r"\[T\]"):
        subtract_floor(np.zeros((2, 2, 2)), 5.0)


def test_finish_scores_applies_the_floor_last():
    s = torch.tensor([3.0, 1.0, 2.0, 5.0, 0.5, 4.0])
    plain = finish_scores(s, Smoothing(sigma=None, support=None, floor=None), "paper", "avenue")
    torch.testing.assert_close(plain, s)
    got = finish_scores(s, Smoothing(sigma=None, support=None, floor=2.0), "paper", "avenue")
    np.testing.assert_allclose(got.numpy(), floor_reference(s.tolist(), 2.0), atol=1e-6)
    sm = Smoothing(sigma=1.5, support=5, floor=10.0)
    smoothed = smooth_scores(s.reshape(-1, 1, 1), window=None, sigma=1.5, support=5)
    np.testing.assert_allclose(finish_scores(s, sm, "paper", "avenue").numpy(),
                               floor_reference(smoothed.tolist(), 10.0), atol=1e-6)


# ----------------------------------------------------------------------------- maps


@pytest.mark.parametrize("resolution", ["pixel", "token"])
@pytest.mark.parametrize("target_channels", [3, 4])
def test_anomaly_maps_vs_numpy(resolution, target_channels):
    g = torch.Generator().manual_seed(9)
    bsz, h, w, p = 2, 3, 4, 2
    target = torch.rand(bsz, h * w, p * p * target_channels, generator=g) * 2 - 1
    teacher = torch.rand(bsz, h * w, p * p * 4, generator=g) * 2.4 - 1.2  # y beyond [-1, 1]
    student = torch.rand(bsz, h * w, p * p * 4, generator=g) * 2 - 1
    got = anomaly_maps(target, teacher, student, grid=(h, w), patch=p, a=0.7, b=1.3, c=0.5,
                       resolution=resolution)
    want = np_maps(target.double().numpy(), teacher.double().numpy(),
                   student.double().numpy(), h, w, p, 0.7, 1.3, 0.5, resolution)
    assert got.dtype == torch.float32
    assert got.shape == ((bsz, h * p, w * p) if resolution == "pixel" else (bsz, h, w))
    np.testing.assert_allclose(got.double().numpy(), want, rtol=1e-5, atol=1e-6)


def test_anomaly_maps_rejects_bad_shapes():
    t = torch.zeros(1, 6, 16)
    with pytest.raises(ValueError):
        anomaly_maps(t, t, t, grid=(2, 2), patch=2)  # L = 6 != 4
    with pytest.raises(ValueError):
        anomaly_maps(t, t, t, grid=(2, 3), patch=3)  # 16 != 3*3*4
    with pytest.raises(ValueError):
        anomaly_maps(t, t, t, grid=(2, 3), patch=2, resolution="frame")


def test_maps_to_scores_pipeline():
    # the two stages together: token maps feed smooth_scores
    g = torch.Generator().manual_seed(10)
    tea = torch.rand(6, 8, 16, generator=g) * 2 - 1
    maps = anomaly_maps(tea[..., :12], tea, tea * 0.9, grid=(2, 4), patch=2,
                        resolution="token")
    scores = smooth_scores(maps, [4, 2], window=(3, 1, 3), support=3, sigma=1.0)
    want = np_smooth(maps.numpy(), [4, 2], (3, 1, 3), "box", 1.0, 3, "centered")
    np.testing.assert_allclose(scores.numpy(), want, rtol=1e-5, atol=1e-6)
    assert math.isfinite(float(scores.sum()))
