"""Tests of aedfast.step: the masking noise, the frame indices, and the StepRunner's
buckets (on the CPU; the CUDA-graph path is tested in tests/test_detector.py on a GPU)."""

import numpy as np
import torch

from aedfast.model import AEDMAE
from aedfast.scoring import Smoothing
from aedfast.step import StepCore, StepRunner, bucket_sizes, frame_noise, stack_indices

# ----------------------------------------------------------------------------- noise


def test_frame_noise_properties():
    t = torch.tensor([0, 1, 2, 1000, 2**31 + 5])
    n = frame_noise(7, t, 800)
    assert n.shape == (5, 800) and n.dtype == torch.float64
    assert float(n.min()) >= 0.0 and float(n.max()) < 1.0
    for row in n:  # keys of one frame are all distinct: argsort is tie-free
        assert torch.unique(row).numel() == 800
    # a function of (seed, frame, token) only: batch composition does not matter
    assert torch.equal(frame_noise(7, t[2:4], 800), n[2:4])
    assert not torch.equal(frame_noise(8, t, 800), n)
    assert not torch.equal(n[0], n[1])
    # roughly uniform, and the kept half is a different set for different frames
    many = frame_noise(0, torch.arange(200), 128)
    assert abs(float(many.mean()) - 0.5) < 0.01
    keep = torch.argsort(many, dim=1)[:, :64]
    same = (torch.sort(keep[0]).values == torch.sort(keep[1]).values).all()
    assert not bool(same)


# ----------------------------------------------------------------------------- indices


def test_stack_indices_replaces_missing_neighbours_by_frame_t():
    t = np.arange(6)
    idx = stack_indices(t, 5, lambda f: f)
    np.testing.assert_array_equal(idx[:, 0], [0, 1, 2, 0, 1, 2])
    np.testing.assert_array_equal(idx[:, 1], t)
    np.testing.assert_array_equal(idx[:, 2], [3, 4, 5, 3, 4, 5])
    ring = stack_indices(np.array([9]), np.array([20]), lambda f: f % 7)  # a ring of 7 slots
    np.testing.assert_array_equal(ring, [[6, 2, 5]])


# ----------------------------------------------------------------------------- runner


def test_bucket_sizes():
    assert bucket_sizes(64, None) == (1, 8, 64)
    assert bucket_sizes(100, None) == (1, 8, 64, 100)
    assert bucket_sizes(5, (2, 4, 16)) == (2, 4, 5)


def test_runner_pads_to_buckets_and_equals_unpadded():
    """A compiled runner pads a partial batch to the next bucket; the first k outputs equal
    the plain module's on exactly k frames (same noise: a function of the frame index)."""
    torch.manual_seed(0)
    model = AEDMAE.from_preset("tiny").eval()
    core = StepCore(model, "paper", Smoothing(), "avenue", seed=0, dtype=torch.float32)
    plain = StepRunner(core, torch.device("cpu"), compile=False, cuda_graphs=True,
                       batch_size=8)
    assert not plain.cuda_graphs and plain.graphs_captured == 0  # CPU: no graphs
    store = torch.randint(0, 255, (12, 3, 64, 128), dtype=torch.uint8)
    t = np.arange(5)
    idx = stack_indices(t, 11, lambda f: f)
    maps, raw = plain.run(store, idx, t)
    assert maps.shape == (5, 64, 128) and raw.shape == (5,)
    fast = StepRunner(core, torch.device("cpu"), compile=True, cuda_graphs=False,
                      batch_size=8)
    assert fast.bucket(5) == 8 and fast.bucket(9) == 8
    m2, r2 = fast.run(store, idx, t)
    torch.testing.assert_close(r2, raw, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(m2, maps, rtol=1e-4, atol=1e-5)
    t11 = np.arange(11)  # more than the largest bucket: two steps
    m3, _ = fast.run(store, stack_indices(t11, 11, lambda f: f), t11)
    assert m3.shape[0] == 11
    torch.testing.assert_close(m3[:5], maps, rtol=1e-4, atol=1e-5)
