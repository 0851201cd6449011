"""Measure the device's two ceilings (METHOD: copy bandwidth, bf16 matmul rate) and record
them with the device's name, driver and versions. Usage: python -m bench.ceilings
(writes a row to $AEDFAST_BENCH_OUT/ceilings.jsonl when that is set)."""

from __future__ import annotations

import json

import torch

from bench.common import bench_device, copy_bandwidth, device_info, record, time_fn


def matmul_tflops(device: torch.device, n: int = 8192) -> float:
    """bf16 (fp32 on the CPU) n x n x n matrix product rate on random data, TFLOP/s."""
    if device.type != "cuda":
        n = 1024
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sec = time_fn(lambda: a @ b, device, warmup=3, iters=10)
    return 2 * n**3 / sec / 1e12


def main() -> None:
    device = bench_device()
    row = {"suite": "ceilings", **device_info(device),
           "copy_GBps": round(copy_bandwidth(device), 1),
           "matmul_TFLOPs": round(matmul_tflops(device), 1)}
    record("ceilings", row)
    print(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
