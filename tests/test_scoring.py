"""Tests of aedfast.scoring: the chunked filter, min-max normalisation, smoothing options."""

import numpy as np
import pytest
import torch

from aedfast.kernels.smoothing import smooth_scores
from aedfast.scoring import ChunkFilter, Smoothing, minmax_normalize, resolve_smoothing


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
