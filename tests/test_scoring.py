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
    minmax_normalize,
    resolve_smoothing,
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
