"""Benchmark: one training step (aedfast.train): eager vs torch.compile, fp32 vs bf16 autocast.

A step is what the training loop runs per batch on the device: `prepare_batch` (uint8 frames
-> 9-channel input, 4-channel patchified target, motion token weights through the motion op),
the stage-1 objective (teacher loss + cls BCE), backward, gradient clipping and AdamW. Data
loading is not included (it runs in worker processes, overlapped).

On CUDA: the shanghaitech preset (docs/design.md §4 batch 100) and the tiny preset, each as
eager fp32 (the baseline), eager bf16 autocast and compiled bf16 autocast; frames/s and the
speed-up over the baseline are recorded, and the compile time of the compiled variant. This is what
decides the training default (compile on CUDA when it helps). On the CPU: the tiny preset,
eager fp32 only (compiling takes longer than a CPU benchmark should), said in extra_info.
Run: AEDFAST_BENCH_OUT=bench/results python -m pytest bench/test_bench_train.py
"""

from __future__ import annotations

import time

import pytest
import torch

from aedfast.model import AEDMAE, get_preset
from aedfast.training import objective as T
from aedfast.training import resolve_config
from bench.common import bench_device, device_info, record, sync, time_fn

DEVICE = bench_device()
ON_GPU = DEVICE.type == "cuda"
CASES = ([("shanghaitech", 100), ("tiny", 256)] if ON_GPU else [("tiny", 16)])
VARIANTS = (["eager-fp32", "eager-bf16", "compiled-bf16"] if ON_GPU else ["eager-fp32"])


def _batch(cfg, B: int) -> dict[str, torch.Tensor]:
    H, W = cfg.img_size
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (B, 5, H, W, 3), dtype=torch.uint8, generator=g)
    mask = (torch.rand(B, H, W, generator=g) > 0.97).to(torch.uint8)
    batch = {"frames": frames, "clean": frames[:, 2].clone(), "mask": mask,
             "label": mask.flatten(1).amax(1).float()}
    if ON_GPU:
        batch = {k: v.pin_memory() for k, v in batch.items()}
    return batch


def _step_fn(preset: str, B: int, variant: str):
    cfg = get_preset(preset)
    torch.manual_seed(0)
    model = AEDMAE(cfg).to(DEVICE)
    params = T.set_stage(model, 1)
    tcfg = resolve_config(preset=preset)
    opt = T.make_optimizer(params, tcfg)
    objective = T.Objective(model, 1, 1.0)
    run = torch.compile(objective) if variant.startswith("compiled") else objective
    amp = variant.endswith("bf16")
    batch = _batch(cfg, B)
    trainable = [p for _, p in params]

    def step():
        x, target, weights, label = T.prepare_batch(batch, cfg, DEVICE)
        noise = torch.rand(B, cfg.num_tokens, device=DEVICE)
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=amp):
            loss, _ = run(x, target, weights, label, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        return loss

    return step


@pytest.mark.parametrize("case", CASES, ids=[f"{p}-B{b}" for p, b in CASES])
def test_bench_train_step(benchmark, case) -> None:
    preset, B = case
    row = {"suite": "train", "preset": preset, "batch": B, **device_info(DEVICE)}
    times = {}
    for variant in VARIANTS:
        step = _step_fn(preset, B, variant)
        t0 = time.perf_counter()
        step()
        sync(DEVICE)
        first = time.perf_counter() - t0  # includes compilation for the compiled variant
        times[variant] = time_fn(step, DEVICE, warmup=3 if ON_GPU else 1,
                                 iters=20 if ON_GPU else 3)
        row[f"{variant}_ms"] = times[variant] * 1e3
        row[f"{variant}_frames_per_s"] = B / times[variant]
        row[f"{variant}_first_step_s"] = first
    base = times["eager-fp32"]
    for v in VARIANTS[1:]:
        row[f"{v}_speedup"] = base / times[v]
    if not ON_GPU:
        row["path"] = "eager fp32 only (CPU: compile and bf16 not benchmarked)"
    print("\ntrain " + preset + f" B={B}: " + ", ".join(
        f"{v} {B / t:.0f} frames/s" for v, t in times.items()))
    best = min(times, key=times.get)
    step = _step_fn(preset, B, best)
    step()

    def timed():
        step()
        sync(DEVICE)

    benchmark.pedantic(timed, rounds=5 if ON_GPU else 2, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(row)
    record("train", row)
