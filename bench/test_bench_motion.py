"""Benchmark: motion token weights (docs/design.md §3), Triton kernel vs eager PyTorch (the
reference) and vs torch.compile of that reference.

Sizes: each preset's frames (avenue 320x640, patch 16; shanghaitech 160x320, patch 8), uint8
[B, H, W, 3] frames as decoded, median on, normalised. On CUDA, batch 1, 32 and 256: the
pytest-benchmark timing is the Triton launcher; the eager reference is timed in the same run
(CUDA events) and recorded with the speed-up, frames/s and achieved GB/s. GB/s counts the ideal
bytes, the two uint8 input frames read once (the [B, L] output is negligible), and is compared
with the device's measured copy bandwidth (bench.common.copy_bandwidth). Targets on an H100:
>= 10x eager at batch 256 and >= 50% of copy bandwidth. `test_bench_motion_compiled` adds
the reference compiled by torch.compile (static shapes; compile seconds recorded).

On the CPU there is no Triton (the interpreter is a test tool, not a fast path): the suite
times the torch reference only, at batch 1 and 8, and says so in extra_info; the rehearsal of
the GPU check (AEDFAST_BENCH_REHEARSE=1, bench.common) runs the Triton rows under the
interpreter instead, on 2 x 4 patches of the tiny preset's frames. Presets and batches:
AEDFAST_BENCH_PRESETS / _BATCHES.
Run: AEDFAST_BENCH_OUT=bench/results python -m pytest bench/test_bench_motion.py
"""

from __future__ import annotations

import pytest
import torch

from aedfast.kernels.motion import motion_token_weights_reference, motion_token_weights_triton
from aedfast.model import get_preset
from bench.common import (
    COMPILE_BACKEND,
    REHEARSE,
    bench_device,
    compile_reference,
    copy_bandwidth,
    device_info,
    env_list,
    record,
    sync,
    time_fn,
    triton_path,
)

DEVICE = bench_device()
ON_GPU = DEVICE.type == "cuda"
FAST = triton_path(DEVICE)
PRESETS = env_list("AEDFAST_BENCH_PRESETS", ["avenue", "shanghaitech"])
BATCHES = env_list("AEDFAST_BENCH_BATCHES", [1, 32, 256] if ON_GPU else [1, 8], int)


def _case(preset: str, batch: int):
    """(H, W, patch), the two frame batches and the ideal bytes (both frames read once)."""
    cfg = get_preset(preset)
    (H, W), patch = cfg.img_size, cfg.patch_size
    if REHEARSE:  # 2 x 4 patches: the interpreter takes ~0.25 s per program
        H, W = 2 * patch, 4 * patch
    g = torch.Generator(device=DEVICE).manual_seed(batch)
    prev, nxt = (torch.randint(0, 256, (batch, H, W, 3), dtype=torch.uint8, device=DEVICE,
                               generator=g) for _ in range(2))
    return (H, W, patch), prev, nxt, 2 * prev.numel()


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("preset", PRESETS)
def test_bench_motion(benchmark, preset: str, batch: int) -> None:
    (H, W, patch), prev, nxt, nbytes = _case(preset, batch)

    def eager():
        return motion_token_weights_reference(prev, nxt, patch)

    def fast():
        return motion_token_weights_triton(prev, nxt, patch)

    row = {"suite": "motion", "preset": preset, "batch": batch, "H": H, "W": W, "patch": patch,
           "input_bytes": nbytes, **device_info(DEVICE)}
    if FAST:
        torch.testing.assert_close(fast(), eager(), rtol=1e-5, atol=1e-7)  # same numbers first
        t_fast = time_fn(fast, DEVICE, warmup=5, iters=50)
        t_eager = time_fn(eager, DEVICE, warmup=2, iters=10)
        amap = torch.rand(batch, H, W, device=DEVICE)
        t_anom = time_fn(lambda: motion_token_weights_triton(prev, nxt, patch, anomaly_map=amap),
                         DEVICE, warmup=3, iters=20)
        copy_bw = copy_bandwidth(DEVICE)
        gbps = nbytes / t_fast / 1e9
        row.update(path="triton", triton_ms=t_fast * 1e3, eager_ms=t_eager * 1e3,
                   triton_anomaly_ms=t_anom * 1e3, speedup=t_eager / t_fast,
                   frames_per_s=batch / t_fast, eager_frames_per_s=batch / t_eager,
                   gbps=gbps, copy_gbps=copy_bw, bw_fraction=gbps / copy_bw)
        print(f"\nmotion {preset} B={batch}: triton {t_fast * 1e3:.3f} ms, eager "
              f"{t_eager * 1e3:.2f} ms, x{t_eager / t_fast:.1f}, {batch / t_fast:.0f} frames/s, "
              f"{gbps:.0f} GB/s = {gbps / copy_bw:.0%} of copy {copy_bw:.0f} GB/s")

        def timed():
            fast()
            sync(DEVICE)

        benchmark.pedantic(timed, rounds=20, iterations=1, warmup_rounds=2)
    else:
        t_eager = time_fn(eager, DEVICE, warmup=1, iters=3)
        row.update(path="reference-only (CPU: no Triton fast path)", eager_ms=t_eager * 1e3,
                   eager_frames_per_s=batch / t_eager, eager_gbps=nbytes / t_eager / 1e9)
        benchmark.pedantic(eager, rounds=2, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update(row)
    record("motion", row)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("preset", PRESETS)
def test_bench_motion_compiled(preset: str, batch: int) -> None:
    """The Triton kernel against torch.compile of its own reference (same inputs, same run)."""
    if not FAST:
        pytest.skip("the Triton kernel is timed on a GPU (or in the GPU check's rehearsal)")
    (H, W, patch), prev, nxt, nbytes = _case(preset, batch)
    compiled, compile_s = compile_reference(
        lambda: motion_token_weights_reference(prev, nxt, patch), DEVICE)
    want = motion_token_weights_triton(prev, nxt, patch)
    torch.testing.assert_close(compiled(), want, rtol=1e-5, atol=1e-7)
    t_fast = time_fn(lambda: motion_token_weights_triton(prev, nxt, patch), DEVICE, warmup=3,
                     iters=30)
    t_comp = time_fn(compiled, DEVICE, warmup=2, iters=20)
    copy_bw = copy_bandwidth(DEVICE)
    row = {"suite": "motion", "preset": preset, "batch": batch, "H": H, "W": W, "patch": patch,
           "path": "triton vs torch.compile(reference)", "triton_ms": t_fast * 1e3,
           "compiled_ms": t_comp * 1e3, "compile_s": round(compile_s, 1),
           "compile_backend": COMPILE_BACKEND,
           "speedup_vs_compiled": t_comp / t_fast,
           "bw_fraction": nbytes / t_fast / 1e9 / copy_bw,
           "compiled_bw_fraction": nbytes / t_comp / 1e9 / copy_bw, "copy_gbps": copy_bw,
           **device_info(DEVICE)}
    record("motion", row)
    print(row)
