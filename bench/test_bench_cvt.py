"""Benchmark: the fused CvT block (docs/design.md §2 step 4) and the whole model, backends
triton vs torch (folded BatchNorm + SDPA) vs eager (the official op structure), the Triton
block vs torch.compile of its own torch reference (the "torch" backend's FusedBlock), and the
q/k/v kernel alone vs its torch reference op.

Shapes: the preset's blocks (AEDFAST_BENCH_PRESETS, default avenue; shanghaitech has the
same ones). Encoder: width 256, 4 heads, 401 tokens (cls + the 20 x 20 shuffled grid of kept
tokens); decoder: width 128, 4 heads, 801 tokens (cls + the true 20 x 40 grid). Batch 1, 32,
256, float32 and bfloat16 (AEDFAST_BENCH_BATCHES / _DTYPES), and the whole avenue model
forward (mask 0.5, teacher + student). All paths are timed in the same run (CUDA events);
rows record ms, speed-ups over eager, tokens/s or frames/s, the fused block's achieved
TFLOP/s (matmul + attention flops) and its bytes (activations in and out, weights) as a
fraction of the measured copy bandwidth. Target on an H100: fused block >= 3x eager at batch
256 in bfloat16. Outputs are compared with eager before timing.

On the CPU there is no Triton (the interpreter is a test tool): the suite times eager vs the
"torch" backend only, float32 at batch 1 and 2, and says so in extra_info; the GPU check's
rehearsal (AEDFAST_BENCH_REHEARSE=1) runs the Triton rows under the interpreter, for the tiny
preset's encoder block only.
Run: AEDFAST_BENCH_OUT=bench/results python -m pytest bench/test_bench_cvt.py -s
"""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F

from aedfast import AEDMAE
from aedfast.kernels import cvt
from aedfast.kernels.cvt import FusedBlock
from aedfast.model import Block, encoder_grid, get_preset
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
DNAME = {torch.float32: "fp32", torch.bfloat16: "bf16"}
TOL = {torch.float32: 1e-4, torch.bfloat16: 3e-2}
PRESET = env_list("AEDFAST_BENCH_PRESETS", ["avenue"])[0]


def preset_blocks(preset: str) -> dict[str, tuple[int, int, int, int]]:
    """part: (width, heads, grid rows, grid cols) of the preset's blocks; T = 1 + rows * cols."""
    cfg = get_preset(preset)
    return {"encoder": (cfg.embed_dim, cfg.num_heads, *encoder_grid(cfg.grid, cfg.mask_ratio)),
            "decoder": (cfg.decoder_embed_dim, cfg.decoder_num_heads, *cfg.grid)}


BLOCKS = preset_blocks(PRESET)
if REHEARSE:  # the interpreter: one block is enough to rehearse the suite
    BLOCKS = dict(list(BLOCKS.items())[:1])
BATCHES = env_list("AEDFAST_BENCH_BATCHES", [1, 32, 256] if ON_GPU else [1, 2], int)
MODEL_BATCHES = env_list("AEDFAST_BENCH_BATCHES", [1, 32, 256] if ON_GPU else [1], int)
DTYPES = [{v: k for k, v in DNAME.items()}[d] for d in
          env_list("AEDFAST_BENCH_DTYPES", ["fp32", "bf16"] if ON_GPU else ["fp32"])]


@contextlib.contextmanager
def fp32_math():
    """Full float32 in eager/torch paths (no TF32 convolutions) for like-for-like timings."""
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        yield


def random_block(D: int, heads: int, dtype: torch.dtype) -> Block:
    g = torch.Generator().manual_seed(D)
    blk = Block(D, heads, 2.0)
    with torch.no_grad():
        for name, p in blk.named_parameters():
            if name.endswith(("norm1.weight", "norm2.weight", "bn.weight")):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel() if p.dim() > 1 else 1
                p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5)
        for name, b in blk.named_buffers():
            if name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
    return blk.eval().to(DEVICE, dtype)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


def block_flops(B: int, T: int, D: int) -> float:
    """q/k/v (3 D^2), output projection (D^2), MLP (4 D^2) per token, and attention."""
    return 2.0 * B * T * 8 * D * D + 4.0 * B * T * T * D


def block_bytes(x: torch.Tensor, blk: torch.nn.Module) -> int:
    """Ideal traffic of one fused block: the activations read and written once, the weights
    read once (q, k, v and the attention output stay on chip in the ideal)."""
    weights = sum(t.numel() * t.element_size() for t in blk.state_dict().values())
    return 2 * x.numel() * x.element_size() + weights


def _block_case(part: str, batch: int, dtype: torch.dtype):
    D, heads, h, w = BLOCKS[part]
    blk = random_block(D, heads, dtype)
    x = torch.randn(batch, 1 + h * w, D, device=DEVICE,
                    generator=torch.Generator(DEVICE).manual_seed(0)).to(dtype)
    return blk, x, h, w


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: DNAME[d])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("part", list(BLOCKS))
def test_bench_cvt_block(benchmark, part: str, batch: int, dtype: torch.dtype) -> None:
    blk, x, h, w = _block_case(part, batch, dtype)
    D, T = x.shape[2], x.shape[1]
    paths = {"eager": lambda: blk(x, h, w),
             "torch": FusedBlock.from_block(blk, backend="torch")}
    if FAST:
        paths["triton"] = FusedBlock.from_block(blk, backend="triton")
    fns = {k: (v if k == "eager" else (lambda m=v: m(x, h, w))) for k, v in paths.items()}
    row = {"suite": "cvt", "case": "block", "preset": PRESET, "part": part, "batch": batch,
           "dtype": DNAME[dtype], "D": D, "T": T, "grid": f"{h}x{w}", **device_info(DEVICE)}
    with torch.no_grad(), fp32_math():
        ref = fns["eager"]()
        for k in fns:
            err = rel_err(fns[k](), ref)
            row[f"{k}_rel_err"] = err
            assert err <= TOL[dtype], f"{k} differs from eager: {err}"
        iters = 30 if ON_GPU else 3
        ms = {k: time_fn(f, DEVICE, warmup=3 if ON_GPU else 1, iters=iters,
                         max_seconds=5.0 if ON_GPU else 1.0) * 1e3 for k, f in fns.items()}
        fast = "triton" if FAST else "torch"
        benchmark.pedantic(lambda: (fns[fast](), sync(DEVICE)), rounds=5 if ON_GPU else 2,
                           iterations=1, warmup_rounds=1)
    for k, v in ms.items():
        row[f"{k}_ms"] = v
        if k != "eager":
            row[f"{k}_speedup"] = ms["eager"] / v
    if FAST:  # the autotuner's picks for this shape
        for name in ("_qkv_kernel", "_out_mlp_kernel"):
            row[f"{name.strip('_')}_config"] = str(getattr(getattr(cvt, name), "best_config", ""))
    row["tokens_per_s"] = batch * T / (ms[fast] / 1e3)
    row["fused_tflops"] = block_flops(batch, T, D) / (ms[fast] / 1e3) / 1e12
    row["bw_fraction"] = block_bytes(x, blk) / (ms[fast] / 1e3) / 1e9 / copy_bandwidth(DEVICE)
    if not FAST:
        row["path"] = "eager vs torch only (CPU: no Triton fast path)"
    print(f"\ncvt block {part} B={batch} {DNAME[dtype]}: "
          + ", ".join(f"{k} {v:.3f} ms" for k, v in ms.items())
          + "; " + ", ".join(f"{k} x{row[f'{k}_speedup']:.2f}" for k in ms if k != "eager")
          + f"; {row['fused_tflops']:.3g} TFLOP/s")
    benchmark.extra_info.update(row)
    record("cvt", row)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: DNAME[d])
@pytest.mark.parametrize("batch", MODEL_BATCHES)
def test_bench_cvt_model(benchmark, batch: int, dtype: torch.dtype) -> None:
    model = AEDMAE.from_preset(PRESET).eval().to(DEVICE, dtype)
    g = torch.Generator(DEVICE).manual_seed(batch)
    H, W = model.config.img_size
    x = (torch.rand(batch, 9, H, W, device=DEVICE, generator=g) * 2 - 1).to(dtype)
    noise = torch.rand(batch, model.config.num_tokens, device=DEVICE, generator=g)
    backends = ["eager", "torch", "triton"] if FAST else ["eager", "torch"]
    row = {"suite": "cvt", "case": "model", "preset": PRESET, "batch": batch,
           "dtype": DNAME[dtype], **device_info(DEVICE)}
    ms = {}
    with torch.no_grad(), fp32_math():
        ref = model.set_backend("eager")(x, noise=noise).teacher
        for be in backends:
            model.set_backend(be)
            err = rel_err(model(x, noise=noise).teacher, ref)
            row[f"{be}_rel_err"] = err
            assert err <= TOL[dtype], f"model backend {be} differs from eager: {err}"
            ms[be] = time_fn(lambda: model(x, noise=noise), DEVICE, warmup=2 if ON_GPU else 0,
                             iters=20 if ON_GPU else 2, max_seconds=5.0 if ON_GPU else 1.0) * 1e3
        fast = backends[-1]
        model.set_backend(fast)
        benchmark.pedantic(lambda: (model(x, noise=noise), sync(DEVICE)),
                           rounds=3 if ON_GPU else 1, iterations=1, warmup_rounds=0)
    for k, v in ms.items():
        row[f"{k}_ms"] = v
        row[f"{k}_frames_per_s"] = batch / (v / 1e3)
        if k != "eager":
            row[f"{k}_speedup"] = ms["eager"] / v
    if not FAST:
        row["path"] = "eager vs torch only (CPU: no Triton fast path)"
    print(f"\ncvt model {PRESET} B={batch} {DNAME[dtype]}: "
          + ", ".join(f"{k} {v:.2f} ms ({batch / v * 1e3:.0f} fps)" for k, v in ms.items()))
    benchmark.extra_info.update(row)
    record("cvt", row)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: DNAME[d])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("part", list(BLOCKS))
def test_bench_cvt_block_compiled(part: str, batch: int, dtype: torch.dtype) -> None:
    """The Triton block against torch.compile of its torch reference (cvt.qkv_reference, SDPA,
    cvt.out_mlp_reference on the folded weights: the "torch" backend's ops, called directly
    because torch.compile treats the custom ops as opaque), same inputs, same run."""
    if not FAST:
        pytest.skip("the Triton kernels are timed on a GPU (or in the GPU check's rehearsal)")
    blk, x, h, w = _block_case(part, batch, dtype)
    triton_block = FusedBlock.from_block(blk, backend="triton")
    wts = cvt.fold_block(blk)
    heads = blk.attn.num_heads

    def reference():
        B, T, D = x.shape
        qkv = cvt.qkv_reference(x, *(wts[n] for n in cvt.QKV_NAMES), h, w, True)
        q, k, v = qkv.view(3, B, T, heads, D // heads).transpose(2, 3).unbind(0)
        attn = F.scaled_dot_product_attention(q, k, v, scale=D**-0.5)
        return cvt.out_mlp_reference(x, attn, *(wts[n] for n in cvt.MLP_NAMES), True)

    with torch.no_grad(), fp32_math():
        compiled, compile_s = compile_reference(reference, DEVICE)
        err = rel_err(triton_block(x, h, w), compiled())
        assert err <= TOL[dtype], f"triton differs from the compiled reference: {err}"
        t_fast = time_fn(lambda: triton_block(x, h, w), DEVICE, warmup=3, iters=30)
        t_comp = time_fn(compiled, DEVICE, warmup=2, iters=30)
    T, D = x.shape[1], x.shape[2]
    copy_bw = copy_bandwidth(DEVICE)
    nbytes = block_bytes(x, blk)
    row = {"suite": "cvt", "case": "block vs compiled", "preset": PRESET, "part": part,
           "batch": batch, "dtype": DNAME[dtype], "D": D, "T": T, "grid": f"{h}x{w}",
           "triton_ms": t_fast * 1e3, "compiled_ms": t_comp * 1e3,
           "compile_s": round(compile_s, 1),
           "compile_backend": COMPILE_BACKEND, "speedup_vs_compiled": t_comp / t_fast,
           "rel_err_vs_compiled": err, "fused_tflops": block_flops(batch, T, D) / t_fast / 1e12,
           "bw_fraction": nbytes / t_fast / 1e9 / copy_bw,
           "compiled_bw_fraction": nbytes / t_comp / 1e9 / copy_bw, "copy_gbps": copy_bw,
           **device_info(DEVICE)}
    record("cvt", row)
    print(row)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: DNAME[d])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("part", list(BLOCKS))
def test_bench_cvt_qkv(part: str, batch: int, dtype: torch.dtype) -> None:
    """The q/k/v kernel alone (one program per token tile computes all three: each 3x3 gather
    and its LN1 once) against the torch reference op on the same device, and its ideal
    traffic (x read once, q/k/v written once, the weights read once) as a fraction of the
    measured copy bandwidth."""
    if not FAST:
        pytest.skip("the Triton kernels are timed on a GPU (or in the GPU check's rehearsal)")
    blk, x, h, w = _block_case(part, batch, dtype)
    wts = [cvt.fold_block(blk)[n] for n in cvt.QKV_NAMES]
    fns = {"triton": lambda: cvt.qkv_triton(x, *wts, h, w, True),
           "torch": lambda: cvt.qkv_reference(x, *wts, h, w, True)}
    with torch.no_grad(), fp32_math():
        err = rel_err(fns["triton"](), fns["torch"]())
        assert err <= TOL[dtype], f"qkv kernel differs from its reference: {err}"
        ms = {k: time_fn(f, DEVICE, warmup=3, iters=30) * 1e3 for k, f in fns.items()}
    T, D = x.shape[1], x.shape[2]
    nbytes = 4 * x.numel() * x.element_size() + sum(t.numel() * t.element_size() for t in wts)
    row = {"suite": "cvt", "case": "qkv", "preset": PRESET, "part": part, "batch": batch,
           "dtype": DNAME[dtype], "D": D, "T": T, "grid": f"{h}x{w}",
           "triton_ms": ms["triton"], "torch_ms": ms["torch"],
           "speedup_vs_torch": ms["torch"] / ms["triton"], "rel_err_vs_torch": err,
           "qkv_kernel_config": str(getattr(cvt._qkv_kernel, "best_config", "")),
           "tflops": 2.0 * batch * T * 3 * D * D / (ms["triton"] / 1e3) / 1e12,
           "bw_fraction": nbytes / (ms["triton"] / 1e3) / 1e9 / copy_bandwidth(DEVICE),
           **device_info(DEVICE)}
    record("cvt", row)
    print(row)
