"""Shared helpers for the benchmark suites: the device, timing, copy bandwidth, results.

Every suite compares a fast path against eager PyTorch in the same run and records
ratios; absolute numbers are only meaningful together with the device they came from,
which `device_info()` records next to them.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch


def bench_device() -> torch.device:
    """CUDA when there is a GPU, else the CPU (where suites run torch references only)."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Callable[[], object], device: torch.device, warmup: int = 3, iters: int = 10,
            max_seconds: float = 5.0) -> float:
    """Median seconds per call of `fn` (CUDA events on a GPU, wall clock on the CPU).

    Stops early once `max_seconds` of timed calls have run, so slow CPU baselines stay short.
    """
    for _ in range(warmup):
        fn()
    sync(device)
    times: list[float] = []
    budget_start = time.perf_counter()
    for _ in range(iters):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        if time.perf_counter() - budget_start > max_seconds:
            break
    times.sort()
    return times[len(times) // 2]


_COPY_BW: dict[str, float] = {}


def copy_bandwidth(device: torch.device, nbytes: int = 1 << 30) -> float:
    """Measured device copy bandwidth in GB/s (bytes read + bytes written per second)."""
    key = str(device)
    if key not in _COPY_BW:
        n = nbytes if device.type == "cuda" else 1 << 26
        src = torch.empty(n, dtype=torch.uint8, device=device)
        dst = torch.empty_like(src)
        sec = time_fn(lambda: dst.copy_(src), device, warmup=3, iters=20)
        _COPY_BW[key] = 2 * n / sec / 1e9
    return _COPY_BW[key]


def device_info(device: torch.device) -> dict:
    """Device name, driver, torch/triton versions: the context every number needs."""
    info = {
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except Exception:
        info["triton"] = None
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        try:
            import pynvml

            pynvml.nvmlInit()
            info["driver"] = pynvml.nvmlSystemGetDriverVersion()
        except Exception:
            info["driver"] = None
    else:
        info["name"] = platform.processor() or platform.machine()
        info["threads"] = torch.get_num_threads()
    return info


def record(suite: str, row: dict) -> None:
    """Append one result row to $AEDFAST_BENCH_OUT/<suite>.jsonl when that is set."""
    out = os.environ.get("AEDFAST_BENCH_OUT")
    if not out:
        return
    path = Path(out) / f"{suite}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
