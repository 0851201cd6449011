"""The scoring loop does not synchronise with the host per batch (docs/design.md §7).

On a GPU every read of a device tensor by Python (`.item()`, `bool()`, `.cpu()`, ...) and
every blocking host-to-device copy (`.to(device)` without non_blocking, `torch.tensor(...,
device=...)`) makes the CPU wait for the GPU's queue, which serialises CUDA-graph replays
behind Python. These tests count such calls on the CPU with a TorchFunctionMode while a
Detector scores a video: the count must not grow with the number of batches (a fixed
number per video: the results coming back, one finite check) and stays within a small
budget. The GPU variant (`test_cuda_loop_syncs_once_per_video`) counts real synchronisations
with torch.cuda's sync debug mode.
"""

from __future__ import annotations

import collections
import traceback
import warnings

import numpy as np
import pytest
import torch

from aedfast.detector import Detector

# Tensor methods that read a tensor's value into Python (a device -> host sync on a GPU)
_READS = {"item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__"}


class HostSyncCounter:
    """Counts host reads of tensors and blocking host -> device copies, with where they came
    from (the innermost aedfast frame), while active. It wraps torch.Tensor's methods (and
    torch.tensor / torch.as_tensor) rather than using a TorchFunctionMode, which does not see
    inside custom ops."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.calls: collections.Counter = collections.Counter()
        self._mp = monkeypatch
        self.active = False

    def _where(self) -> str:
        for fr in reversed(traceback.extract_stack()[:-2]):
            if "/aedfast/" in fr.filename or "/kernels/" in fr.filename:
                return f"{fr.filename.split('/')[-1]}:{fr.lineno} {fr.name}"
        return "?"

    def _wrap(self, owner, name: str, is_sync) -> None:
        orig = getattr(owner, name)

        def counted(*args, **kwargs):
            if self.active and is_sync(args, kwargs):
                self.active = False  # not inside our own bookkeeping
                try:
                    self.calls[(name, self._where())] += 1
                finally:
                    self.active = True
            return orig(*args, **kwargs)

        self._mp.setattr(owner, name, counted)

    def __enter__(self) -> HostSyncCounter:
        always = lambda a, k: True  # noqa: E731
        for name in _READS:
            self._wrap(torch.Tensor, name, always)

        def blocking_to(a, k):  # .to(device[, dtype]) without non_blocking=True
            return not k.get("non_blocking", False) and (
                "device" in k or any(isinstance(x, (torch.device, str)) for x in a[1:]))

        self._wrap(torch.Tensor, "to", blocking_to)
        for name in ("tensor", "as_tensor"):
            self._wrap(torch, name, lambda a, k: k.get("device") is not None)
        self.active = True
        return self

    def __exit__(self, *exc) -> None:
        self.active = False
        self._mp.undo()

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def _video(T: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    v = rng.integers(0, 60, (T, 64, 128, 3), dtype=np.uint8)
    for t in range(T):
        v[t, 20:36, (3 * t) % 100:(3 * t) % 100 + 16] = 220
    return v


def _count(det: Detector, T: int) -> HostSyncCounter:
    video = _video(T)
    det.score_video(video[:9])  # warm: buckets, lazy set-up, backend choice
    with HostSyncCounter(pytest.MonkeyPatch()) as c:
        r = det.score_video(video)
    assert r.frames == T and np.isfinite(r.scores).all()
    return c


@pytest.mark.parametrize("protocol", ["paper", "official"])
def test_host_syncs_per_video_do_not_grow_with_batches(model, protocol):
    """4 frames a batch: 10 batches against 40 (and several 64-frame filter chunks)."""
    det = Detector(model, device="cpu", backend="torch", compile=False, batch_size=4,
                   protocol=protocol)
    short, long = _count(det, 40), _count(det, 160)
    assert long.calls == short.calls, (
        f"host syncs grow with the video: {dict(short.calls)} -> {dict(long.calls)}")
    assert long.total <= 6, f"too many host syncs per video: {dict(long.calls)}"


def test_counter_sees_a_per_batch_sync(model, monkeypatch):
    """The counter is not blind: a loop that reads each batch's maps is caught."""
    det = Detector(model, device="cpu", backend="torch", compile=False, batch_size=4)
    short = _count(det, 40)
    run = det.runner.run

    def reading_run(*a, **k):
        maps, raw = run(*a, **k)
        float(raw.max())  # what a per-batch finite check would do
        return maps, raw

    monkeypatch.setattr(det.runner, "run", reading_run)
    long = _count(det, 160)
    assert long.total > short.total


def test_non_finite_maps_raise_once_per_video(model, monkeypatch):
    """The finite check moved to the end of the video still names the problem."""
    det = Detector(model, device="cpu", backend="torch", compile=False, batch_size=4)
    run = det.runner.run
    calls = {"n": 0}

    def nan_run(*a, **k):
        maps, raw = run(*a, **k)
        calls["n"] += 1
        if calls["n"] == 3:
            maps = maps.clone()
            maps[0, 5, 5] = float("nan")
        return maps, raw

    monkeypatch.setattr(det.runner, "run", nan_run)
    with pytest.raises(ValueError, match="NaN or inf"):
        det.score_video(_video(40))


@pytest.mark.gpu
def test_cuda_loop_syncs_once_per_video(model):
    """On CUDA: torch's sync debug mode warns on every synchronising call; the number of
    warnings for a 4x longer video is the same."""
    dev = torch.device("cuda")
    det = Detector(model, device=dev, batch_size=8)

    def syncs(T: int) -> int:
        video = torch.from_numpy(_video(T)).to(dev)
        det.score_video(video[:9])
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                det.score_video(video)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(x.message) for x in w)

    short, long = syncs(64), syncs(256)
    assert long == short, f"CUDA syncs grow with the video: {short} -> {long}"
