"""Fused CvT block (docs/design.md §2 step 4): Triton kernels, torch reference, ops (the
BatchNorm folding lives in kernels/cvt_fold.py and is re-exported here).

The official block is a chain of ~25 small ops. At inference it reduces to:

    xn   = LN1(x)                                       (eps 1e-6)
    s_j  = [xn_cls ; dwconv3x3_j(grid(xn)) + c_j]       j = q, k, v  (BatchNorm folded into the
                                                        conv: weight * s, bias c = beta - mu * s)
    q,k,v = s_j @ W_j^T + b_j                           -> [3, B, T, D]
    a    = SDPA(q, k, v, scale = D^-0.5)                (the official scale: full width D)
    y    = x + merge_heads(a) @ Wp^T + bp
    z    = LN2(y)
    out  = y + [z_cls ; GELU(z @ W1^T + b1) @ W2^T + b2]   (the MLP returns the cls row as is)

which runs as two custom ops around torch's scaled_dot_product_attention (flash / efficient
backends):
- `aedfast::cvt_qkv`: LN1 + three depthwise 3x3 convs on the caller's h x w token grid (the
  encoder's shuffled grid or the decoder's true grid, docs/design.md §2 step 3) + cls
  pass-through + the three projections, all in one program per token tile (each gather and
  its LN1 done once for q, k and v), written as [3, B, T, D]; q/k/v are then free views
  [B, H, T, D/H] (the [B, T, H, d] memory order is flash attention's native layout).
- `aedfast::cvt_out_mlp`: reads the attention output in its [B, H, T, d] layout (heads merged
  by addressing), output projection + residual, LN2, the whole MLP (the hidden activations
  stay on chip) + residual + the cls-row rule.

Each op's CPU implementation is the torch reference (the "torch" backend: folded BatchNorm +
SDPA, the CPU fast path), or the Triton launcher under TRITON_INTERPRET=1 when called with
use_triton=True (that is how the kernels are tested on CPU); its CUDA implementation is the
Triton launcher when use_triton=True, else the reference. Both are opaque to torch.compile.

Dtypes: float32, bfloat16, float16 activations; accumulation, LayerNorm statistics and GELU in
float32. Float32 matmuls run as 3xTF32 (float32 accuracy) unless
torch.backends.cuda.matmul.allow_tf32 is set (then TF32).

Public API:
    fold_conv_bn(conv_weight, bn_weight, bn_bias, running_mean, running_var, eps=1e-5)
        -> (weight [D, 3, 3], bias [D])
    fold_block(block) -> dict of the folded, re-laid-out weights (names: WEIGHT_NAMES)
    cvt_qkv(x, weights, h, w, *, has_cls=True, use_triton=False) -> [3, B, T, D]
    cvt_out_mlp(x, attn, weights, *, has_cls=True, use_triton=False) -> [B, T, D]
    cvt_block(x, weights, h, w, num_heads, *, has_cls=True, use_triton=False) -> [B, T, D]
    FusedBlock.from_block(block, backend="torch" | "triton"): module(x, h, w) -> [B, T, D]
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._triton import HAS_TRITON, INTERPRET, autotune_configs, check_triton_device, tl, triton
from .cvt_fold import MLP_NAMES, QKV_NAMES, WEIGHT_NAMES, fold_block, fold_conv_bn

__all__ = [
    "FusedBlock", "WEIGHT_NAMES", "cvt_block", "cvt_out_mlp", "cvt_qkv", "fold_block",
    "fold_conv_bn", "out_mlp_reference", "out_mlp_triton", "qkv_reference", "qkv_triton",
]

LN_EPS = 1e-6  # every LayerNorm of the model (docs/design.md §2)

# ----------------------------------------------------------------------------- Triton kernels


@triton.jit
def _layernorm_rows(v, cmask, gamma, beta, D, EPS: tl.constexpr):
    """LayerNorm of each row of v [R, DP] float32 over its first D columns (the padded columns
    hold 0 and come out 0: gamma and beta are loaded as 0 there). Two-pass variance, as torch."""
    mean = tl.sum(v, axis=1) / D
    xc = tl.where(cmask[None, :], v - mean[:, None], 0.0)
    var = tl.sum(xc * xc, axis=1) / D
    rstd = 1.0 / tl.sqrt(var + EPS)
    return xc * rstd[:, None] * gamma[None, :] + beta[None, :]


@triton.jit
def _dot_operand(v, dtype: tl.constexpr, NATIVE: tl.constexpr):
    """Round v to the activation dtype (what a bf16/fp16 tensor-core matmul consumes). The
    interpreter keeps bf16 as raw uint16 that numpy cannot multiply, so there (NATIVE=False)
    the rounded values go back to float32: the same products, computed exactly."""
    v = v.to(dtype)
    if not NATIVE:
        v = v.to(tl.float32)
    return v


@triton.jit
def _project(s, w, bias, o, t, t_ok, ch, cm, D, dt: tl.constexpr, NATIVE_DOT: tl.constexpr,
             DOT_PREC: tl.constexpr, DP: tl.constexpr, BLOCK_N: tl.constexpr):
    """o[t, n] = s @ W^T + bias for one of q, k, v: s [BLOCK_T, DP] (dot operand, padded
    columns 0), W [D, D] in nn.Linear layout at w, bias [D] at bias, o = the [T, D] output
    plane (row stride D). Its BLOCK_N-column slices of W^T [DP, BLOCK_N] are read straight
    from W (no transposed copy); every load and store is masked to the D x D / T x D edges."""
    for n0 in tl.static_range(0, DP, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        nm = n < D
        wt = tl.load(w + n[None, :] * D + ch[:, None], mask=cm[:, None] & nm[None, :], other=0.0)
        res = tl.dot(s, _dot_operand(wt, dt, NATIVE_DOT), input_precision=DOT_PREC)
        res += tl.load(bias + n, mask=nm, other=0.0).to(tl.float32)[None, :]
        tl.store(o + t[:, None] * D + n[None, :], res.to(dt), mask=t_ok[:, None] & nm[None, :])


QKV_CONFIGS = [  # _qkv_kernel's autotune list, whole (tests pin each entry)
    # Registers. Live through the 9 taps: three fp32 [BLOCK_T, DP] conv accumulators (q, k,
    # v) + the gathered tile and its LayerNorm output, i.e. 5 fp32 tiles: per thread
    # 5 * BLOCK_T * DP / (32 * num_warps) registers = 160 at D = 256 for 32 tokens on 8 warps
    # or 16 on 4 (under the 255 limit, room left for addresses); then across the dots the
    # three s_j (half that in 16-bit) + a [BLOCK_T, BLOCK_N] fp32 result. 64 tokens on 8
    # warps (320) would spill at D = 256: it is there for the decoder's D = 128 (160).
    # BLOCK_T >= 16: tl.dot's smallest M. The interpreter runs the first entry only.
    triton.Config({"BLOCK_T": 32, "BLOCK_N": 64}, num_warps=8),
    triton.Config({"BLOCK_T": 16, "BLOCK_N": 64}, num_warps=4),
    triton.Config({"BLOCK_T": 32, "BLOCK_N": 128}, num_warps=8),
    triton.Config({"BLOCK_T": 64, "BLOCK_N": 64}, num_warps=8),
]


@triton.autotune(
    configs=autotune_configs(QKV_CONFIGS),
    key=["B", "T", "D", "HAS_CLS", "DOT_PREC"],
)
@triton.jit(do_not_specialize=["B", "T", "GH", "GW"])  # one compile per width, not per shape
def _qkv_kernel(
    x,  # [B, T, D] activations, fp32/bf16/fp16, unit channel stride (batch/token: sxb, sxt)
    ln_w, ln_b,  # LN1 gamma, beta: [D]
    conv_w, conv_b,  # BN-folded dwconvs: [D, 3, 9] (channel, q/k/v, tap dy*3+dx); bias [D, 3]
    qkv_w, qkv_b,  # W_q, W_k, W_v stacked: [3, D, D] = [3D, D] (nn.Linear [out, in]); [3, D]
    out,  # [3, B, T, D] contiguous, x's dtype: q, k, v (written here)
    B, T, D, GH, GW,  # images, tokens (HAS_CLS + GH*GW), width; token grid rows, cols (h, w)
    sxb, sxt,  # x's batch and token strides, in elements
    HAS_CLS: tl.constexpr,  # 1: token 0 is the cls row (LN1 only, no conv), 0: no cls row
    DP: tl.constexpr,  # D padded to a power of 2 >= 16 (the channel tile; masked to D)
    NATIVE_DOT: tl.constexpr,  # False under the interpreter (16-bit dots emulated in fp32)
    DOT_PREC: tl.constexpr,  # tl.dot input precision for fp32 operands: "tf32x3" or "tf32"
    BLOCK_T: tl.constexpr,  # autotuned: tokens per program (tl.dot M)
    BLOCK_N: tl.constexpr,  # autotuned: output columns per tl.dot (N), per projection
):
    """One program = BLOCK_T consecutive tokens of one image, all three of q, k, v.

    The 3x3 neighbours of the tile's tokens are gathered from x (nearby rows of the same
    image: after the first tap they come from L1/L2, so x is read ~once from DRAM) and
    LayerNorm-ed on the fly, once per tap for all three projections: each gathered row is
    whole in registers, so LN1 costs two row reductions per tap and no normalised copy of x is
    written and re-read. Each tap then feeds three depthwise-conv accumulators (q, k, v).
    Zero padding is applied after LN1, as the official conv pads the normalised grid. The cls
    row (token 0 when HAS_CLS) takes its own LN1 row unconvolved. The projection is the
    [BLOCK_T, 3D] x blockdiag(W_q^T, W_k^T, W_v^T) product, i.e. the stacked W^T [D, 3D] in
    BLOCK_N-column slices, slice by slice against the s_j its columns belong to, as
    tensor-core tl.dots stored straight into out[j] ([3, B, T, D])."""
    # program (pid_t, b) -> tokens pid_t*BLOCK_T .. +BLOCK_T-1 of image b, q, k and v
    pid_t = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    dt = x.dtype.element_ty
    t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    ch = tl.arange(0, DP)  # D padded to a power of 2
    cm = ch < D
    t_ok = t < T
    p = t - HAS_CLS  # position on the grid; -1 for the cls row
    on_grid = t_ok & (p >= 0)
    pc = tl.maximum(p, 0)  # keep the // and % below on non-negative numbers
    r, c = pc // GW, pc % GW
    gamma = tl.load(ln_w + ch, mask=cm, other=0.0).to(tl.float32)
    beta = tl.load(ln_b + ch, mask=cm, other=0.0).to(tl.float32)
    xb = x + b * sxb
    acc_q = tl.zeros([BLOCK_T, DP], dtype=tl.float32)
    acc_k = tl.zeros([BLOCK_T, DP], dtype=tl.float32)
    acc_v = tl.zeros([BLOCK_T, DP], dtype=tl.float32)
    for tap in tl.static_range(9):
        dy, dx = tap // 3 - 1, tap % 3 - 1
        rr, cc = r + dy, c + dx
        if tap == 4:
            ok, nt = t_ok, t  # the token itself (the cls row included)
        else:
            ok = on_grid & (rr >= 0) & (rr < GH) & (cc >= 0) & (cc < GW)
            nt = HAS_CLS + rr * GW + cc
        v = tl.load(xb + nt[:, None] * sxt + ch[None, :], mask=ok[:, None] & cm[None, :],
                    other=0.0).to(tl.float32)
        xn = tl.where(ok[:, None], _layernorm_rows(v, cm, gamma, beta, D, 1e-6), 0.0)
        wq = tl.load(conv_w + ch * 27 + tap, mask=cm, other=0.0).to(tl.float32)
        wk = tl.load(conv_w + ch * 27 + 9 + tap, mask=cm, other=0.0).to(tl.float32)
        wv = tl.load(conv_w + ch * 27 + 18 + tap, mask=cm, other=0.0).to(tl.float32)
        if tap == 4:  # the cls row (p < 0) takes its LN1 row as is: weight 1, no bias
            is_cls = (p < 0)[:, None]
            acc_q += xn * tl.where(is_cls, 1.0, wq[None, :])
            acc_k += xn * tl.where(is_cls, 1.0, wk[None, :])
            acc_v += xn * tl.where(is_cls, 1.0, wv[None, :])
        else:  # (no other tap reaches the cls row: `ok` is false there)
            acc_q += xn * wq[None, :]
            acc_k += xn * wk[None, :]
            acc_v += xn * wv[None, :]
    on = tl.where(p >= 0, 1.0, 0.0)[:, None]  # the conv bias: grid rows only, not the cls row
    cb = conv_b + ch * 3  # conv_b [D, 3]: channel ch's q, k, v biases
    s_q = acc_q + on * tl.load(cb, mask=cm, other=0.0).to(tl.float32)[None, :]
    s_k = acc_k + on * tl.load(cb + 1, mask=cm, other=0.0).to(tl.float32)[None, :]
    s_v = acc_v + on * tl.load(cb + 2, mask=cm, other=0.0).to(tl.float32)[None, :]
    # the activation dtype before the dots: in 16-bit, halves what stays live across them
    a_q = _dot_operand(s_q, dt, NATIVE_DOT)
    a_k = _dot_operand(s_k, dt, NATIVE_DOT)
    a_v = _dot_operand(s_v, dt, NATIVE_DOT)
    plane = T * D  # one [T, D] image of one projection in out; out[j, b] at (j*B + b)*plane
    _project(a_q, qkv_w, qkv_b, out + b * plane, t, t_ok, ch, cm, D, dt, NATIVE_DOT, DOT_PREC,
             DP, BLOCK_N)
    _project(a_k, qkv_w + D * D, qkv_b + D, out + (B + b) * plane, t, t_ok, ch, cm, D, dt,
             NATIVE_DOT, DOT_PREC, DP, BLOCK_N)
    _project(a_v, qkv_w + 2 * D * D, qkv_b + 2 * D, out + (2 * B + b) * plane, t, t_ok, ch, cm,
             D, dt, NATIVE_DOT, DOT_PREC, DP, BLOCK_N)


@triton.autotune(
    configs=autotune_configs([
        # live: y and LN2(y) [BLOCK_T, D] in the activation dtype, a [BLOCK_T, D] fp32
        # accumulator, and per stage one W1 and one W2 slice in shared memory; the last entry
        # (one stage, small slices) is the one that fits float32 at D = 256
        triton.Config({"BLOCK_T": 64, "BLOCK_K": 64, "BLOCK_H": 64}, num_warps=8, num_stages=2),
        triton.Config({"BLOCK_T": 32, "BLOCK_K": 64, "BLOCK_H": 64}, num_warps=4, num_stages=2),
        triton.Config({"BLOCK_T": 128, "BLOCK_K": 32, "BLOCK_H": 64}, num_warps=8, num_stages=2),
        triton.Config({"BLOCK_T": 64, "BLOCK_K": 32, "BLOCK_H": 32}, num_warps=4, num_stages=1),
    ]),
    key=["B", "T", "D", "HID", "HAS_CLS", "DOT_PREC"],
)
@triton.jit(do_not_specialize=["B", "T"])
def _out_mlp_kernel(
    x, a,  # x [B, T, D]: block input; a [B, H, T, DH]: SDPA output; x's dtype, unit last stride
    proj_w, proj_b, ln_w, ln_b,  # Wp [D, D] (nn.Linear [out, in]), bp [D]; LN2 gamma, beta [D]
    fc1_w, fc1_b, fc2_w, fc2_b, out,  # W1 [HID, D], b1 [HID], W2 [D, HID], b2 [D]; out [B, T, D]
    B, T, D, HID, DH,  # images, tokens per image, width, MLP hidden width, head dim D / H
    sxb, sxt, sab, sah, sat, sob, sot,  # element strides: x (b, t), a (b, h, t), out (b, t)
    HAS_CLS: tl.constexpr, DP: tl.constexpr,  # as _qkv_kernel; cls row: y + LN2(y), no MLP
    NATIVE_DOT: tl.constexpr, DOT_PREC: tl.constexpr,  # as _qkv_kernel (all three dots)
    BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_H: tl.constexpr,  # tokens, Wp K, W1 cols
):
    """One program = BLOCK_T tokens of one image, the whole rest of the block:

    y = x + merge_heads(a) @ Wp^T + bp   (K loop over BLOCK_K merged channels; channel k is
                                          head k // DH, dim k % DH of a [B, H, T, DH]: the
                                          heads are merged by addressing, no transpose copy)
    z = LN2(y)                           (y's rows are whole in registers)
    m = sum over BLOCK_H slices of GELU(z @ W1^T[:, s] + b1[s]) @ W2^T[s, :]
                                         (GELU in the first matmul's epilogue; the hidden
                                          [BLOCK_T, 2D] activations never leave the chip)
    out = y + m + b2, and y + z on the cls row (the official MLP returns it unchanged).

    y is rounded to the activation dtype before LN2, as the eager residual stream is."""
    # program (pid_t, b) -> tokens pid_t*BLOCK_T .. +BLOCK_T-1 of image b, all D channels
    pid_t = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    dt = x.dtype.element_ty
    t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    ch = tl.arange(0, DP)
    cm = ch < D
    t_ok = t < T
    rows = t_ok[:, None] & cm[None, :]

    # output projection: acc[t, n] = sum_k a[t, k] * Wp[n, k]
    acc = tl.zeros([BLOCK_T, DP], dtype=tl.float32)
    ab = a + b * sab
    for k0 in range(0, D, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        km = k < D
        av = tl.load(ab + (k // DH)[None, :] * sah + t[:, None] * sat + (k % DH)[None, :],
                     mask=t_ok[:, None] & km[None, :], other=0.0)
        wv = tl.load(proj_w + ch[None, :] * D + k[:, None], mask=km[:, None] & cm[None, :],
                     other=0.0)
        acc = tl.dot(_dot_operand(av, dt, NATIVE_DOT), _dot_operand(wv, dt, NATIVE_DOT), acc=acc,
                     input_precision=DOT_PREC)
    xv = tl.load(x + b * sxb + t[:, None] * sxt + ch[None, :], mask=rows, other=0.0)
    bp = tl.load(proj_b + ch, mask=cm, other=0.0).to(tl.float32)
    y = (xv.to(tl.float32) + acc + bp[None, :]).to(dt)  # padded columns stay 0

    gamma = tl.load(ln_w + ch, mask=cm, other=0.0).to(tl.float32)
    beta = tl.load(ln_b + ch, mask=cm, other=0.0).to(tl.float32)
    z = _layernorm_rows(y.to(tl.float32), cm, gamma, beta, D, 1e-6).to(dt)
    zd = _dot_operand(z, dt, NATIVE_DOT)

    acc = tl.zeros([BLOCK_T, DP], dtype=tl.float32)
    for h0 in range(0, HID, BLOCK_H):
        hh = h0 + tl.arange(0, BLOCK_H)
        hm = hh < HID
        w1 = tl.load(fc1_w + hh[None, :] * D + ch[:, None], mask=cm[:, None] & hm[None, :],
                     other=0.0)  # W1^T slice [DP, BLOCK_H]
        hid = tl.dot(zd, _dot_operand(w1, dt, NATIVE_DOT), input_precision=DOT_PREC)
        hid += tl.load(fc1_b + hh, mask=hm, other=0.0).to(tl.float32)[None, :]
        hid = 0.5 * hid * (1.0 + tl.math.erf(hid * 0.7071067811865476))  # exact GELU
        w2 = tl.load(fc2_w + ch[None, :] * HID + hh[:, None], mask=hm[:, None] & cm[None, :],
                     other=0.0)  # W2^T slice [BLOCK_H, DP]
        acc = tl.dot(_dot_operand(hid, dt, NATIVE_DOT), _dot_operand(w2, dt, NATIVE_DOT),
                     acc=acc, input_precision=DOT_PREC)
    b2 = tl.load(fc2_b + ch, mask=cm, other=0.0).to(tl.float32)
    m = acc + b2[None, :]
    if HAS_CLS:
        m = tl.where((t == 0)[:, None], z.to(tl.float32), m)
    res = y.to(tl.float32) + m
    tl.store(out + b * sob + t[:, None] * sot + ch[None, :], res.to(dt), mask=rows)


# ----------------------------------------------------------------------------- launchers


def _dot_precision(dtype: torch.dtype) -> str:
    """float32 matmuls as 3xTF32 on tensor cores (float32 accuracy to a few ulps of the sums,
    as torch's default full-fp32 matmul) unless the user allowed plain TF32 in torch. IEEE fp32
    dots would run on the CUDA cores, ~10x slower, and their fully unrolled FMA code takes
    minutes to compile at D = 256. 16-bit operands ignore the setting."""
    if dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32:
        return "tf32x3"
    return "tf32"


def _rowmajor(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def qkv_triton(x: torch.Tensor, ln1_w: torch.Tensor, ln1_b: torch.Tensor, conv_w: torch.Tensor,
               conv_b: torch.Tensor, qkv_w: torch.Tensor, qkv_b: torch.Tensor, h: int, w: int,
               has_cls: bool = True) -> torch.Tensor:
    """Triton launcher of `cvt_qkv` (inputs assumed validated): x [B, T, D] -> [3, B, T, D]."""
    check_triton_device(x)
    x = _rowmajor(x)
    B, T, D = x.shape
    ws = [t.contiguous() for t in (ln1_w, ln1_b, conv_w, conv_b, qkv_w, qkv_b)]
    out = torch.empty((3, B, T, D), device=x.device, dtype=x.dtype)
    grid = lambda meta: (triton.cdiv(T, meta["BLOCK_T"]), B)  # noqa: E731
    _qkv_kernel[grid](
        x, *ws, out, B, T, D, h, w, x.stride(0), x.stride(1),
        HAS_CLS=int(has_cls), DP=max(16, triton.next_power_of_2(D)), NATIVE_DOT=not INTERPRET,
        DOT_PREC=_dot_precision(x.dtype),
    )
    return out


def out_mlp_triton(x: torch.Tensor, attn: torch.Tensor, proj_w: torch.Tensor,
                   proj_b: torch.Tensor, ln2_w: torch.Tensor, ln2_b: torch.Tensor,
                   fc1_w: torch.Tensor, fc1_b: torch.Tensor, fc2_w: torch.Tensor,
                   fc2_b: torch.Tensor, has_cls: bool = True) -> torch.Tensor:
    """Triton launcher of `cvt_out_mlp` (inputs assumed validated): x [B, T, D], attn
    [B, H, T, D/H] (any strides with a unit last stride) -> [B, T, D]."""
    check_triton_device(x, attn)
    x, attn = _rowmajor(x), _rowmajor(attn)
    B, T, D = x.shape
    ws = [t.contiguous() for t in (proj_w, proj_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b)]
    out = torch.empty((B, T, D), device=x.device, dtype=x.dtype)
    grid = lambda meta: (triton.cdiv(T, meta["BLOCK_T"]), B)  # noqa: E731
    _out_mlp_kernel[grid](
        x, attn, *ws, out, B, T, D, fc1_w.shape[0], attn.shape[-1],
        x.stride(0), x.stride(1), attn.stride(0), attn.stride(1), attn.stride(2),
        out.stride(0), out.stride(1),
        HAS_CLS=int(has_cls), DP=max(16, triton.next_power_of_2(D)), NATIVE_DOT=not INTERPRET,
        DOT_PREC=_dot_precision(x.dtype),
    )
    return out


# ----------------------------------------------------------------------------- torch reference


def qkv_reference(x: torch.Tensor, ln1_w: torch.Tensor, ln1_b: torch.Tensor,
                  conv_w: torch.Tensor, conv_b: torch.Tensor, qkv_w: torch.Tensor,
                  qkv_b: torch.Tensor, h: int, w: int, has_cls: bool = True) -> torch.Tensor:
    """Folded PyTorch `cvt_qkv`: LN1, three depthwise 3x3 convs (q, k, v), cls pass-through,
    three 2-D matmuls. x [B, T, D] -> [3, B, T, D] contiguous.

    Written for the CPU fast path (inference only: in-place writes, no autograd): one
    depthwise conv per projection (oneDNN's depthwise kernel: several times faster on the CPU
    than one grouped conv with 3 outputs per channel), their outputs copied once into a
    preallocated [3, B, T, D] (no cat), and each projection one plain addmm on a contiguous
    [B*T, D] slice (faster there than a bias-broadcast baddbmm)."""
    B, T, D = x.shape
    dt = x.dtype
    xn = F.layer_norm(x, (D,), ln1_w.to(dt), ln1_b.to(dt), LN_EPS)
    c = int(has_cls)
    grid = xn[:, c:].transpose(1, 2).reshape(B, D, h, w)  # channels-last view of the tokens
    seq = x.new_empty(3, B, T, D)
    for j in range(3):
        conv = F.conv2d(grid, conv_w[:, j].to(dt).reshape(D, 1, 3, 3).contiguous(),
                        conv_b[:, j].to(dt).contiguous(), padding=1, groups=D)
        seq[j, :, c:] = conv.flatten(2).transpose(1, 2)
    if has_cls:
        seq[:, :, 0] = xn[:, 0]
    out = x.new_empty(3, B, T, D)
    for j in range(3):
        torch.addmm(qkv_b[j].to(dt), seq[j].view(B * T, D), qkv_w[j].to(dt).t(),
                    out=out[j].view(B * T, D))
    return out


def out_mlp_reference(x: torch.Tensor, attn: torch.Tensor, proj_w: torch.Tensor,
                      proj_b: torch.Tensor, ln2_w: torch.Tensor, ln2_b: torch.Tensor,
                      fc1_w: torch.Tensor, fc1_b: torch.Tensor, fc2_w: torch.Tensor,
                      fc2_b: torch.Tensor, has_cls: bool = True) -> torch.Tensor:
    """PyTorch `cvt_out_mlp`: x [B, T, D], attn [B, H, T, D/H] -> [B, T, D].

    The MLP runs on all T rows as 2-D matmuls (one row more than needed, 0.25% of the FLOPs,
    instead of a strided batched matmul and a cat); the cls row's MLP output is then
    overwritten with z_cls, the official rule. Inference only (in-place writes)."""
    B, T, D = x.shape
    dt = x.dtype
    y = torch.addmm(proj_b.to(dt), attn.transpose(1, 2).reshape(B * T, D), proj_w.to(dt).t())
    y = y.view(B, T, D).add_(x)
    z = F.layer_norm(y, (D,), ln2_w.to(dt), ln2_b.to(dt), LN_EPS)
    hidden = F.gelu(torch.addmm(fc1_b.to(dt), z.view(B * T, D), fc1_w.to(dt).t()))
    body = torch.addmm(fc2_b.to(dt), hidden, fc2_w.to(dt).t()).view(B, T, D)
    if has_cls:
        body[:, 0] = z[:, 0]
    return body.add_(y)


# ----------------------------------------------------------------------------- custom ops


def _run_triton(use_triton: bool) -> bool:
    """On CPU tensors the Triton path exists only under the interpreter."""
    return use_triton and HAS_TRITON and INTERPRET


@torch.library.custom_op("aedfast::cvt_qkv", mutates_args=())
def _qkv_op(x: torch.Tensor, ln1_w: torch.Tensor, ln1_b: torch.Tensor, conv_w: torch.Tensor,
            conv_b: torch.Tensor, qkv_w: torch.Tensor, qkv_b: torch.Tensor, h: int, w: int,
            has_cls: bool, use_triton: bool) -> torch.Tensor:
    args = (x, ln1_w, ln1_b, conv_w, conv_b, qkv_w, qkv_b, h, w, has_cls)
    return qkv_triton(*args) if _run_triton(use_triton) else qkv_reference(*args)


@_qkv_op.register_kernel("cuda")
def _qkv_op_cuda(x, ln1_w, ln1_b, conv_w, conv_b, qkv_w, qkv_b, h, w, has_cls, use_triton):
    args = (x, ln1_w, ln1_b, conv_w, conv_b, qkv_w, qkv_b, h, w, has_cls)
    return qkv_triton(*args) if use_triton else qkv_reference(*args)


@_qkv_op.register_fake
def _qkv_op_fake(x, ln1_w, ln1_b, conv_w, conv_b, qkv_w, qkv_b, h, w, has_cls, use_triton):
    return x.new_empty((3, *x.shape))


@torch.library.custom_op("aedfast::cvt_out_mlp", mutates_args=())
def _out_mlp_op(x: torch.Tensor, attn: torch.Tensor, proj_w: torch.Tensor, proj_b: torch.Tensor,
                ln2_w: torch.Tensor, ln2_b: torch.Tensor, fc1_w: torch.Tensor,
                fc1_b: torch.Tensor, fc2_w: torch.Tensor, fc2_b: torch.Tensor, has_cls: bool,
                use_triton: bool) -> torch.Tensor:
    args = (x, attn, proj_w, proj_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b, has_cls)
    return out_mlp_triton(*args) if _run_triton(use_triton) else out_mlp_reference(*args)


@_out_mlp_op.register_kernel("cuda")
def _out_mlp_op_cuda(x, attn, proj_w, proj_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b, has_cls,
                     use_triton):
    args = (x, attn, proj_w, proj_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b, has_cls)
    return out_mlp_triton(*args) if use_triton else out_mlp_reference(*args)


@_out_mlp_op.register_fake
def _out_mlp_op_fake(x, attn, proj_w, proj_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b, has_cls,
                     use_triton):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


# ----------------------------------------------------------------------------- public API


def _check_weights(weights: dict[str, torch.Tensor], names: tuple[str, ...], D: int,
                   x: torch.Tensor) -> None:
    missing = [n for n in names if n not in weights]
    if missing:
        raise ValueError(f"weights lack {missing}; build them with fold_block(block)")
    hid = weights["fc1_w"].shape[0] if "fc1_w" in weights else None
    shapes = {
        "ln1_w": (D,), "ln1_b": (D,), "conv_w": (D, 3, 9), "conv_b": (D, 3),
        "qkv_w": (3, D, D), "qkv_b": (3, D), "proj_w": (D, D), "proj_b": (D,),
        "ln2_w": (D,), "ln2_b": (D,), "fc1_w": (hid, D), "fc1_b": (hid,), "fc2_w": (D, hid),
        "fc2_b": (D,),
    }
    for n in names:
        t = weights[n]
        if not isinstance(t, torch.Tensor) or not t.dtype.is_floating_point:
            raise TypeError(f"weight {n} must be a float tensor")
        if tuple(t.shape) != shapes[n]:
            raise ValueError(f"weight {n} has shape {tuple(t.shape)}, expected {shapes[n]} "
                             f"for width {D}")
        if t.device != x.device:
            raise ValueError(f"weight {n} is on {t.device}, the input on {x.device}")


def _check_x(x: torch.Tensor) -> tuple[int, int, int]:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise TypeError(f"x must be float32, bfloat16 or float16, got {x.dtype}")
    if x.dim() != 3 or min(x.shape) < 1:
        raise ValueError(f"x must be [B, T, D] (non-empty), got shape {tuple(x.shape)}")
    return tuple(x.shape)


def cvt_qkv(x: torch.Tensor, weights: dict[str, torch.Tensor], h: int, w: int, *,
            has_cls: bool = True, use_triton: bool = False) -> torch.Tensor:
    """The attention's input side: q, k, v = proj_j([LN1(x)_cls ; BN_j(dwconv_j(grid))]).

    x: [B, T, D] float32/bfloat16/float16, T = has_cls + h*w; tokens after the cls row are laid
        row-major on the h x w grid the depthwise 3x3 convolutions (zero padding) run on.
    weights: from `fold_block` (QKV_NAMES are used).
    use_triton: the Triton kernel (CUDA tensors, or CPU under TRITON_INTERPRET=1) instead of
        the torch reference.
    Returns [3, B, T, D] in x's dtype: q, k, v in nn.Linear's output layout.
    """
    B, T, D = _check_x(x)
    for name, v in (("h", h), ("w", w)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"grid size {name} must be a positive int, got {v!r}")
    if T != int(has_cls) + h * w:
        raise ValueError(f"{T} tokens do not match a {h}x{w} grid"
                         + (" plus the cls row" if has_cls else ""))
    _check_weights(weights, QKV_NAMES, D, x)
    return torch.ops.aedfast.cvt_qkv(x, *(weights[n] for n in QKV_NAMES), h, w, bool(has_cls),
                                     bool(use_triton))


def cvt_out_mlp(x: torch.Tensor, attn: torch.Tensor, weights: dict[str, torch.Tensor], *,
                has_cls: bool = True, use_triton: bool = False) -> torch.Tensor:
    """The block's output side: y = x + proj(merge_heads(attn)); out = y + Mlp(LN2(y)), where
    the MLP returns the cls row unchanged (out_cls = y_cls + LN2(y)_cls).

    x: [B, T, D]; attn: [B, H, T, D/H] (scaled_dot_product_attention's output), x's dtype.
    Returns [B, T, D] in x's dtype.
    """
    B, T, D = _check_x(x)
    if not isinstance(attn, torch.Tensor) or attn.dim() != 4:
        raise ValueError("attn must be a 4-D tensor [B, H, T, D/H]")
    Bh, H, Th, dh = attn.shape
    if (Bh, Th, H * dh) != (B, T, D):
        raise ValueError(f"attn shape {tuple(attn.shape)} does not fit x {tuple(x.shape)}: "
                         "expected [B, H, T, D/H]")
    if attn.dtype != x.dtype or attn.device != x.device:
        raise ValueError(f"attn is {attn.dtype} on {attn.device}, x {x.dtype} on {x.device}")
    _check_weights(weights, MLP_NAMES, D, x)
    return torch.ops.aedfast.cvt_out_mlp(x, attn, *(weights[n] for n in MLP_NAMES),
                                         bool(has_cls), bool(use_triton))


def cvt_block(x: torch.Tensor, weights: dict[str, torch.Tensor], h: int, w: int, num_heads: int,
              *, has_cls: bool = True, use_triton: bool = False) -> torch.Tensor:
    """One whole CvT block (docs/design.md §2 step 4) with folded weights: x [B, T, D] -> [B, T, D].

    Attention is torch's scaled_dot_product_attention with the official scale D^-0.5 (D the
    block's full width), on q/k/v views of `cvt_qkv`'s output: no copies between the ops.
    """
    B, T, D = _check_x(x)
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1 \
            or D % num_heads:
        raise ValueError(f"num_heads must be a positive divisor of the width {D}, "
                         f"got {num_heads!r}")
    qkv = cvt_qkv(x, weights, h, w, has_cls=has_cls, use_triton=use_triton)
    q, k, v = qkv.view(3, B, T, num_heads, D // num_heads).transpose(2, 3).unbind(0)
    attn = F.scaled_dot_product_attention(q, k, v, scale=D**-0.5)
    return cvt_out_mlp(x, attn, weights, has_cls=has_cls, use_triton=use_triton)


class FusedBlock(nn.Module):
    """Inference form of a CvT block: folded weights (non-persistent buffers, so they follow
    .to() but stay out of state_dict) and `cvt_block`. forward(x, h, w) -> [B, T, D]."""

    def __init__(self, weights: dict[str, torch.Tensor], num_heads: int, backend: str = "torch",
                 has_cls: bool = True):
        super().__init__()
        if backend not in ("torch", "triton"):
            raise ValueError(f"unknown fused backend {backend!r}: 'torch' or 'triton'")
        missing = [n for n in WEIGHT_NAMES if n not in weights]
        if missing:
            raise ValueError(f"weights lack {missing}; build them with fold_block(block)")
        for n in WEIGHT_NAMES:
            self.register_buffer(n, weights[n], persistent=False)
        self.num_heads = int(num_heads)
        self.backend = backend
        self.has_cls = bool(has_cls)

    @classmethod
    def from_block(cls, block: nn.Module, backend: str = "torch") -> FusedBlock:
        """Fold an aedfast.model.Block (eval mode: BatchNorm running statistics) once."""
        return cls(fold_block(block), block.attn.num_heads, backend)

    def weights(self) -> dict[str, torch.Tensor]:
        return {n: getattr(self, n) for n in WEIGHT_NAMES}

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return cvt_block(x, self.weights(), h, w, self.num_heads, has_cls=self.has_cls,
                         use_triton=self.backend == "triton")

    def extra_repr(self) -> str:
        D = self.ln1_w.shape[0]
        return f"dim={D}, num_heads={self.num_heads}, backend={self.backend!r}"
