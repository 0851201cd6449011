"""Measure the device's two ceilings (METHOD: copy bandwidth, bf16 matmul rate), plus the
attention rate at the avenue model's two shapes, and record them with the device's name,
driver and versions. Usage: python -m bench.ceilings (writes a row to
$AEDFAST_BENCH_OUT/ceilings.jsonl when that is set)."""

from __future__ import annotations

import json

import torch

from bench.common import REHEARSE, bench_device, copy_bandwidth, device_info, record, time_fn


def matmul_tflops(device: torch.device, n: int = 8192) -> float:
    """bf16 (fp32 on the CPU) n x n x n matrix product rate on random data, TFLOP/s."""
    if device.type != "cuda":
        n = 256 if REHEARSE else 1024
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sec = time_fn(lambda: a @ b, device, warmup=3, iters=10)
    return 2 * n**3 / sec / 1e12


def attention_tflops(device: torch.device, batch: int, tokens: int, dim: int,
                     heads: int = 4) -> float:
    """scaled_dot_product_attention rate at a CvT block's shape (bf16 on CUDA, fp32 on the
    CPU), TFLOP/s counting the two matrix products (4 * B * T^2 * dim)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    q, k, v = (torch.randn(batch, heads, tokens, dim // heads, device=device, dtype=dtype)
               for _ in range(3))
    sec = time_fn(lambda: torch.nn.functional.scaled_dot_product_attention(
        q, k, v, scale=dim**-0.5), device, warmup=2, iters=10)
    return 4 * batch * tokens**2 * dim / sec / 1e12


def main() -> None:
    device = bench_device()
    row = {"suite": "ceilings", **device_info(device),
           "copy_GBps": round(copy_bandwidth(device), 1),
           "matmul_TFLOPs": round(matmul_tflops(device), 3)}
    batch = 256 if device.type == "cuda" else (1 if REHEARSE else 8)
    # the avenue model's attention: encoder 401 tokens x 256 wide, decoder 801 x 128 (4 heads)
    row["attn_enc_TFLOPs"] = round(attention_tflops(device, batch, 401, 256), 3)
    row["attn_dec_TFLOPs"] = round(attention_tflops(device, batch, 801, 128), 3)
    record("ceilings", row)
    print(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
