"""Shared helpers for the benchmark suites: the device, timing, copy bandwidth, results.

Every suite compares a fast path against eager PyTorch in the same run and records
ratios; absolute numbers are only meaningful together with the device they came from,
which `device_info()` records next to them.

What the suites run can be narrowed from the environment (bench/gpu_check.py does, so that
a device run times exactly the rows it has time for):

- AEDFAST_BENCH_PRESETS: comma-separated presets (sizes come from the preset's config)
- AEDFAST_BENCH_BATCHES: comma-separated batch sizes
- AEDFAST_BENCH_DTYPES: comma-separated dtypes of the CvT suite (fp32, bf16)
- AEDFAST_BENCH_VIDEOS: videos per smoothing case
- AEDFAST_BENCH_REHEARSE=1: the CPU rehearsal of the GPU check (with TRITON_INTERPRET=1):
  the Triton paths run under the interpreter on CPU tensors at tiny sizes, timings are
  one call, torch.compile uses dynamo's "eager" backend (tracing, no code generation), and
  rows say "rehearsal": they are not measurements.
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

REHEARSE = os.environ.get("AEDFAST_BENCH_REHEARSE", "0") == "1"


def env_list(name: str, default: list, cast=str) -> list:
    """The comma-separated values of environment variable `name`, else `default`."""
    raw = os.environ.get(name, "").strip()
    return [cast(v.strip()) for v in raw.split(",") if v.strip()] if raw else list(default)


def bench_device() -> torch.device:
    """CUDA when there is a GPU, else the CPU (where suites run torch references only)."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def triton_path(device: torch.device) -> bool:
    """Whether the suites run the Triton kernels here: on CUDA, or in a rehearsal under the
    interpreter (TRITON_INTERPRET=1, CPU tensors). Elsewhere they time torch paths only."""
    return device.type == "cuda" or (REHEARSE and os.environ.get("TRITON_INTERPRET") == "1")


COMPILE_BACKEND = "eager" if REHEARSE else "inductor"


def compile_reference(fn: Callable, device: torch.device) -> tuple[Callable, float]:
    """torch.compile(fn) with static shapes, and the seconds its first call took (tracing and
    code generation): the compiled torch reference a kernel is also compared with. A
    rehearsal traces with dynamo's "eager" backend (inductor's CPU code generation would take
    minutes on its 2 cores; what it proves there is that the reference traces)."""
    compiled = torch.compile(fn, dynamic=False, backend=COMPILE_BACKEND)
    t0 = time.perf_counter()
    compiled()
    sync(device)
    return compiled, time.perf_counter() - t0


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Callable[[], object], device: torch.device, warmup: int = 3, iters: int = 10,
            max_seconds: float = 5.0) -> float:
    """Median seconds per call of `fn` (CUDA events on a GPU, wall clock on the CPU).

    Stops early once `max_seconds` of timed calls have run, so slow CPU baselines stay short.
    A rehearsal (AEDFAST_BENCH_REHEARSE=1) makes one timed call and no warm-up.
    """
    if REHEARSE:
        warmup, iters = 0, 1
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
        n = nbytes if device.type == "cuda" else (1 << 22 if REHEARSE else 1 << 26)
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


class PowerMeter:
    """Board power during a block, sampled by nvidia-ml-py (pynvml) every `interval` seconds in
    a background thread, plus the driver's energy counter where the GPU has one.

    with PowerMeter(device) as pm: ...  then pm.fields(frames) gives watts, joules and
    frames_per_joule, or {"power": "unavailable: <why>"} without CUDA or pynvml.
    """

    def __init__(self, device: torch.device, interval: float = 0.02):
        self.interval = interval
        self.samples: list[float] = []
        self.seconds = 0.0
        self.unavailable = ""
        self._nvml = self._handle = None
        self._energy0 = self._energy1 = None
        if device.type != "cuda":
            self.unavailable = "no CUDA device"
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
            pynvml.nvmlDeviceGetPowerUsage(self._handle)
        except Exception as e:  # no nvidia-ml-py, or no NVML on this machine
            self.unavailable = f"nvidia-ml-py: {type(e).__name__}: {e}"[:160]
            self._handle = None

    def _energy_mj(self) -> int | None:
        try:
            return int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except Exception:
            return None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0)
            except Exception:
                pass
            self._stop.wait(self.interval)

    def __enter__(self) -> PowerMeter:
        self._t0 = time.perf_counter()
        if self._handle is not None:
            self._energy0 = self._energy_mj()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._t0
        if self._handle is not None:
            self._stop.set()
            self._thread.join()
            self._energy1 = self._energy_mj()

    @property
    def watts(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None

    def fields(self, frames: int | None = None) -> dict:
        """Row fields: mean watts, joules (the energy counter where there is one, else mean
        power x time) and frames per joule; or why power is unavailable."""
        if self.watts is None:
            return {"power": "unavailable: " + (self.unavailable or "no power samples")}
        if self._energy0 is not None and self._energy1 is not None:
            joules, source = (self._energy1 - self._energy0) / 1000.0, "energy counter"
        else:
            joules, source = self.watts * self.seconds, "mean power x time"
        out = {"watts": round(self.watts, 1), "joules": round(joules, 3),
               "energy_source": source, "power_samples": len(self.samples)}
        if frames and joules > 0:
            out["frames_per_joule"] = round(frames / joules, 2)
        return out


def record(suite: str, row: dict) -> None:
    """Append one result row to $AEDFAST_BENCH_OUT/<suite>.jsonl when that is set (rows of a
    rehearsal say so)."""
    out = os.environ.get("AEDFAST_BENCH_OUT")
    if not out:
        return
    if REHEARSE:
        row = {**row, "rehearsal": True}
    path = Path(out) / f"{suite}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
