"""Score smoothing: the fused Triton 3D filter + frame max + temporal Gaussian against eager
PyTorch (replicate pad + conv3d or avg_pool3d + amax + conv1d, per video) and against
torch.compile of its own torch reference, with achieved GB/s of the maps read and its fraction
of the measured copy bandwidth.

CUDA: 32 videos x 1,000 frames (AEDFAST_BENCH_VIDEOS videos) of each preset's token maps
(20x40) and pixel maps (avenue 320x640; AEDFAST_BENCH_PRESETS, default avenue) (target on an
H100: >= 5x eager and >= 50% of copy bandwidth on the pixel maps). CPU: reduced sizes and the
torch reference only (the Triton kernels need a GPU to be timed meaningfully); the GPU
check's rehearsal (AEDFAST_BENCH_REHEARSE=1) runs the Triton rows under the interpreter at
tiny sizes.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from aedfast.kernels import smooth_scores
from aedfast.kernels.smoothing import filter_frame_max_reference, filter_frame_max_triton
from aedfast.kernels.temporal import temporal_gaussian_reference
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
    time_fn,
    triton_path,
)

WINDOW = (9, 9, 9)
SIGMA, SUPPORT = 11.0, 37
DEVICE = bench_device()
FAST = triton_path(DEVICE)
PRESETS = env_list("AEDFAST_BENCH_PRESETS", ["avenue"])


def _cases() -> dict[str, tuple[int, int, int, int]]:
    """name: (videos, frames per video, h, w): each preset's token and pixel maps."""
    if DEVICE.type == "cuda":
        videos, frames = 32, 1000
    else:  # the CPU: the torch reference only; the rehearsal: the interpreter
        videos, frames = (2, 12) if REHEARSE else (2, 100)
    videos = env_list("AEDFAST_BENCH_VIDEOS", [videos], int)[0]
    cases = {}
    for preset in PRESETS:
        cfg = get_preset(preset)
        for kind, (h, w) in (("tokens", cfg.grid), ("pixels", cfg.img_size)):
            if kind == "pixels" and not FAST:  # reduced: the CPU reference is slow
                cases.setdefault(f"{kind}_{h // 4}x{w // 4}", (1, 12, h // 4, w // 4))
            else:
                cases.setdefault(f"{kind}_{h}x{w}", (videos, frames, h, w))
    return cases


CASES = _cases()
PIXELS = next((c for c in CASES if c.startswith("pixels")), next(iter(CASES)))


def _data(case: str, device: torch.device):
    v, n, h, w = CASES[case]
    g = torch.Generator(device=device).manual_seed(0)
    maps = torch.rand(v * n, h, w, device=device, generator=g)
    lengths = torch.full((v,), n, dtype=torch.int64, device=device)
    return maps, lengths, (v, n, h, w)


def _eager_conv(maps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    s = filter_frame_max_reference(maps, lengths, WINDOW, "box")
    return temporal_gaussian_reference(s, lengths, SUPPORT, SIGMA, "centered")


def _eager_pool(maps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Box filter as avg_pool3d on the replicate-padded video (the other obvious eager way)."""
    r = [k // 2 for k in WINDOW]
    outs = []
    for v in torch.split(maps, lengths.tolist()):
        x = F.pad(v[None, None], (r[2], r[2], r[1], r[1], r[0], r[0]), mode="replicate")
        outs.append(F.avg_pool3d(x, WINDOW, stride=1)[0, 0].amax(dim=(1, 2)))
    return temporal_gaussian_reference(torch.cat(outs), lengths, SUPPORT, SIGMA, "centered")


def _fast(maps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return smooth_scores(maps, lengths, window=WINDOW, sigma=SIGMA, support=SUPPORT)


@pytest.mark.parametrize("case", list(CASES))
def test_bench_smoothing(benchmark, case):
    device = DEVICE
    maps, lengths, (v, n, h, w) = _data(case, device)
    nbytes = maps.numel() * maps.element_size()
    row = {"suite": "smoothing", "case": case, "shape": f"{v}x{n}x{h}x{w}",
           "window": list(WINDOW), "sigma": SIGMA, "support": SUPPORT, **device_info(device)}
    if not FAST:
        # CPU: the torch reference only, at reduced sizes.
        benchmark.pedantic(lambda: _eager_conv(maps, lengths), rounds=3, iterations=1)
        row["note"] = "CPU: torch reference only, reduced sizes"
        benchmark.extra_info.update(row)
        record("smoothing", row)
        return
    want = _eager_conv(maps, lengths)
    got = _fast(maps, lengths)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    t_fast = time_fn(lambda: _fast(maps, lengths), device, warmup=3, iters=10)
    t_conv = time_fn(lambda: _eager_conv(maps, lengths), device, warmup=1, iters=3)
    t_pool = time_fn(lambda: _eager_pool(maps, lengths), device, warmup=1, iters=3)
    t_eager = min(t_conv, t_pool)
    copy = copy_bandwidth(device)
    gbps = nbytes / t_fast / 1e9
    row.update({
        "triton_ms": round(t_fast * 1e3, 3), "eager_conv3d_ms": round(t_conv * 1e3, 3),
        "eager_avgpool3d_ms": round(t_pool * 1e3, 3), "speedup": round(t_eager / t_fast, 2),
        "GBps": round(gbps, 1), "copy_GBps": round(copy, 1),
        "copy_fraction": round(gbps / copy, 3),
    })
    benchmark.pedantic(lambda: _fast(maps, lengths), rounds=3, iterations=1)
    benchmark.extra_info.update(row)
    record("smoothing", row)
    print(row)


@pytest.mark.parametrize("case", list(CASES))
def test_bench_smoothing_compiled(case):
    """The Triton kernels against torch.compile of their torch references (3D filter + frame
    max, then the temporal Gaussian), same maps, same run."""
    if not FAST:
        pytest.skip("the Triton kernels are timed on a GPU (or in the GPU check's rehearsal)")
    maps, lengths, (v, n, h, w) = _data(case, DEVICE)
    compiled, compile_s = compile_reference(lambda: _eager_conv(maps, lengths), DEVICE)
    torch.testing.assert_close(_fast(maps, lengths), compiled(), rtol=1e-4, atol=1e-5)
    t_fast = time_fn(lambda: _fast(maps, lengths), DEVICE, warmup=2, iters=10)
    t_comp = time_fn(compiled, DEVICE, warmup=1, iters=5)
    copy = copy_bandwidth(DEVICE)
    nbytes = maps.numel() * maps.element_size()
    row = {"suite": "smoothing", "case": f"{case} vs compiled", "shape": f"{v}x{n}x{h}x{w}",
           "triton_ms": round(t_fast * 1e3, 3), "compiled_ms": round(t_comp * 1e3, 3),
           "compile_s": round(compile_s, 1),
           "compile_backend": COMPILE_BACKEND, "speedup_vs_compiled": round(t_comp / t_fast, 2),
           "copy_fraction": round(nbytes / t_fast / 1e9 / copy, 3),
           "compiled_copy_fraction": round(nbytes / t_comp / 1e9 / copy, 3),
           "copy_GBps": round(copy, 1), **device_info(DEVICE)}
    record("smoothing", row)
    print(row)


@pytest.mark.parametrize("tiles", [None, (16, 64), (32, 64), (64, 64), (32, 128), (64, 128)],
                         ids=lambda t: "autotuned" if t is None else f"{t[0]}x{t[1]}")
def test_bench_smoothing_filter_variants(tiles):
    """CUDA only: the fused filter autotuned, and pinned to each block of its autotune list
    (BRH x BCH, halo included; pinned: 16 values per thread, 2 stages), on the pixel
    maps, against the float32 eager reference (error recorded too)."""
    device = bench_device()
    if device.type != "cuda":
        pytest.skip("tile variants are timed on a GPU only")
    maps, lengths, (v, n, h, w) = _data(PIXELS, device)
    sub = maps[: 4 * n]  # 4 videos suffice for the comparison
    sub_len = lengths[:4]
    ref = filter_frame_max_reference(sub, sub_len, WINDOW, "box")

    def fn():
        return filter_frame_max_triton(sub, sub_len, WINDOW, "box", tiles=tiles)

    err = (fn() - ref).abs().max().item()
    t = time_fn(fn, device, warmup=2, iters=10)
    gbps = sub.numel() * 4 / t / 1e9
    row = {"suite": "smoothing_variants",
           "case": "autotuned" if tiles is None else f"tiles={tiles[0]}x{tiles[1]}",
           "shape": f"4x{n}x{h}x{w}", "ms": round(t * 1e3, 3), "GBps": round(gbps, 1),
           "copy_fraction": round(gbps / copy_bandwidth(device), 3), "max_abs_err": err,
           **device_info(device)}
    record("smoothing_variants", row)
    print(row)


@pytest.mark.parametrize("resolution", ["tokens_20x40", "pixels_320x640"])
def test_bench_streaming_smoother(benchmark, resolution):
    """StreamingSmoother.step for many live streams (one map each per step): step time and
    the state it holds (the ring of maps). CUDA: 1,000 streams; CPU: 128."""
    from aedfast.stream import StreamingSmoother

    device = bench_device()
    cuda = device.type == "cuda"
    n = 1000 if cuda else 128
    h, w = {"tokens_20x40": (20, 40), "pixels_320x640": (320, 640)}[resolution]
    sm = StreamingSmoother(h, w, window=WINDOW, sigma=SIGMA, support=SUPPORT, device=device)
    ids = list(range(n))
    for i in ids:
        sm.add_stream(i)
    g = torch.Generator(device=device).manual_seed(0)
    maps = torch.rand(n, h, w, device=device, generator=g)
    for _ in range(sm.delay + 1):  # fill the windows: every later step emits one score each
        sm.step(maps, ids=ids)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device) if cuda else 0
    sec = time_fn(lambda: sm.step(maps, ids=ids), device, warmup=1, iters=10)
    row = {"suite": "smoothing", "case": f"stream_{resolution}", "streams": n,
           "window": list(WINDOW), "support": SUPPORT, "step_ms": round(sec * 1e3, 2),
           "frames_per_s": round(n / sec, 1),
           "ring_MiB": round(sm._ring.numel() * 4 / 2**20, 1), **device_info(device)}
    if cuda:
        row["step_peak_extra_MiB"] = round(
            (torch.cuda.max_memory_allocated(device) - base) / 2**20, 1)
    record("smoothing", row)
    print(row)
    benchmark.extra_info.update(row)
    benchmark.pedantic(lambda: sm.step(maps, ids=ids), rounds=1, iterations=1)
