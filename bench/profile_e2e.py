"""Profile the Detector's step (issue: GPU end-to-end tuning): a torch.profiler trace of
scoring uint8 frames already on the device, summarised as the top kernels by device time
and the share of the step the device sat idle (launch gaps). bench/gpu_check.py profiles one
step (--frames equal to --batch).

Usage: python -m bench.profile_e2e [--preset avenue] [--batch 256] [--frames 2048]
       [--no-compile]
Writes $AEDFAST_BENCH_OUT/profile.jsonl (one row) when that is set, and prints the table.
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from aedfast import AEDMAE, Detector
from bench.common import bench_device, device_info, record


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="avenue")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--frames", type=int, default=2048)
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                    help="torch.compile the step (--no-compile: the GPU check's CPU rehearsal)")
    args = ap.parse_args()
    device = bench_device()
    if device.type != "cuda":
        args.frames, args.batch = min(args.frames, 32), min(args.batch, 8)
    torch.manual_seed(0)
    det = Detector(AEDMAE.from_preset(args.preset).eval(), device=device, batch_size=args.batch,
                   compile=args.compile)
    H, W = det.config.img_size
    frames = torch.randint(0, 256, (args.frames, H, W, 3), dtype=torch.uint8, device=device)
    det.score_video(frames)  # warm-up: compile, autotune, graph capture
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        res = det.score_video(frames)
    attr = "device_time_total" if device.type == "cuda" else "cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, attr, 0) > 0]
    events.sort(key=lambda e: getattr(e, attr), reverse=True)
    total_us = res.seconds * 1e6
    busy_us = sum(getattr(e, attr) for e in events if device.type != "cuda" or e.device_type
                  == torch.autograd.DeviceType.CUDA) if device.type == "cuda" else total_us
    top = [{"name": e.key[:80], "us": round(getattr(e, attr), 1), "calls": e.count}
           for e in events[:15]]
    row = {"suite": "profile", "preset": args.preset, "batch": args.batch,
           "frames": args.frames, "fps": round(res.fps, 1), "wall_ms": round(total_us / 1e3, 2),
           "device_busy_fraction": round(min(1.0, busy_us / total_us), 3),
           **device_info(device), "top": top}
    record("profile", row)
    print(f"{args.preset} batch {args.batch}: {res.fps:,.0f} frames/s, device busy "
          f"{row['device_busy_fraction']:.0%} of the wall time")
    for t in top:
        print(f"{t['us']:>12,.0f} us  {t['calls']:>6}  {t['name']}")


if __name__ == "__main__":
    main()
