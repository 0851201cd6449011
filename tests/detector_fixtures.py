"""Shared fixtures of the detector, stream and frame tests: a tiny model with non-trivial
BatchNorm statistics, a short moving-square video, and Detectors pinned to the CPU (so that
on a GPU machine they do not silently move to CUDA; the CUDA tests build their own)."""

import numpy as np
import pytest
import torch

from aedfast.detector import Detector, VideoResult
from aedfast.model import AEDMAE

FRAME = (72, 136)  # source frames: not the tiny preset's 64 x 128, so every path resizes


def perturb_bn(model: AEDMAE, seed: int = 0) -> AEDMAE:
    """Non-trivial BatchNorm statistics, so that folding them is actually tested."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
    return model.eval()


def rel(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference relative to the largest magnitude of `b`."""
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def collect(acc: dict, out: dict) -> None:
    """Accumulate a stream step's {id: [(t, score), ...]} into `acc`."""
    for sid, items in out.items():
        acc.setdefault(sid, []).extend(items)


@pytest.fixture(scope="module")
def model() -> AEDMAE:
    torch.manual_seed(0)
    return perturb_bn(AEDMAE.from_preset("tiny"))


@pytest.fixture(scope="module")
def video() -> np.ndarray:
    """A moving square over noise: 23 BGR frames of FRAME size."""
    rng = np.random.default_rng(0)
    T = 23
    v = rng.integers(0, 60, (T, *FRAME, 3), dtype=np.uint8)
    for t in range(T):
        v[t, 20:40, 4 * t:4 * t + 20] = (200, 120, 30)
    return v


@pytest.fixture(scope="module")
def eager(model) -> Detector:
    """The baseline: eager backend, no compile, float32, on the CPU."""
    return Detector(model, device="cpu", backend="eager", compile=False, batch_size=8)


@pytest.fixture(scope="module")
def eager_result(eager, video) -> VideoResult:
    return eager.score_video(video, return_maps=True)


@pytest.fixture(scope="module")
def compiled(model) -> Detector:
    """The CPU fast path: "torch" backend compiled by inductor (compiled once per module)."""
    return Detector(model, device="cpu", compile=True, batch_size=8)
