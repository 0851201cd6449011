"""Motion gradients and token weights (docs/design.md §3): Triton kernel, launcher, torch
reference, op.

Gradient of frame t = |median3x3(frame t+1) - median3x3(frame t-1)| per channel (border
replicated; the median is optional). Token weight = per-patch, per-channel max of the gradient,
mean over channels, normalised to sum 1 over the frame's tokens. With a synthetic anomaly map
m ([B, H, W] in [0, 1]) the gradient first gets m * max(128, max of the frame's gradient) added
to every channel, so pasted anomalies (little motion) still weigh.

Layouts: uint8 frames are [B, H, W, C] channels-last, as decoded (BGR); float frames are
[B, C, H, W]. Values are used as given (the 128 floor of the anomaly term assumes the 0..255
scale). Any strides work: `_motion_kernel` indexes through them, so slices of a clip need no
copy. uint8 frames with contiguous rows (as decoded; clip slices too) take `_motion_rows_kernel`
instead: one lane per byte, each row segment loaded once as one vector (the production path).

Public API (validating wrappers around the custom ops `aedfast::motion_token_weights` and
`aedfast::motion_gradient`; CPU = torch reference, CUDA = Triton launcher):
    motion_token_weights(prev, next, patch, *, median=True, anomaly_map=None, normalize=True)
        -> [B, L] float32, L = (H / patch) * (W / patch), tokens row by row (as `patchify`).
    motion_gradient(prev, next, *, median=True) -> float32 gradient in the input's layout
        ([B, H, W, C] for uint8, [B, C, H, W] for float); H, W need not be patch multiples.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._triton import autotune_configs, check_triton_device, tl, triton

__all__ = [
    "motion_token_weights", "motion_gradient", "motion_token_weights_reference",
    "motion_gradient_reference", "motion_token_weights_triton", "motion_gradient_triton",
]

# ----------------------------------------------------------------------------- Triton kernels


@triton.jit
def _sort3(a, b, c):
    """(min, median, max) of three tensors: 6 min/max."""
    lo, hi = tl.minimum(a, b), tl.maximum(a, b)
    t = tl.maximum(lo, c)
    return tl.minimum(lo, c), tl.minimum(t, hi), tl.maximum(t, hi)


@triton.jit
def _med3(a, b, c):
    return tl.maximum(tl.minimum(a, b), tl.minimum(tl.maximum(a, b), c))


@triton.jit
def _cvt(v, U8: tl.constexpr):
    if U8:
        # byte v -> the fp16 number 1024 + v: exact, by bits (no int->float conversion), and
        # fp16 min/max run two per instruction; median and difference are shift-invariant
        out = (v.to(tl.int16) | 0x6400).to(tl.float16, bitcast=True)
    else:
        out = v.to(tl.float32)
    return out


@triton.jit
def _row3(p_l, p_c, p_r, off, m):
    """Raw bytes/values of the row at element offset `off`, at x-1, x, x+1 (pointer tensors)."""
    return (tl.load(p_l + off, mask=m, other=0), tl.load(p_c + off, mask=m, other=0),
            tl.load(p_r + off, mask=m, other=0))


@triton.jit
def _sorted3(a, b, c, U8: tl.constexpr):
    return _sort3(_cvt(a, U8), _cvt(b, U8), _cvt(c, U8))


@triton.jit
def _median9(l0, m0, h0, l1, m1, h1, l2, m2, h2):
    # Rows already sorted; after also sorting columns, the median of the 3x3 is the median of
    # the anti-diagonal: (max of the mins, median of the medians, min of the maxes).
    lo = tl.maximum(tl.maximum(l0, l1), l2)
    hi = tl.minimum(tl.minimum(h0, h1), h2)
    return _med3(lo, _med3(m0, m1, m2), hi)


@triton.autotune(
    configs=autotune_configs([
        triton.Config({"BLOCK_PW": 4}, num_warps=4),
        triton.Config({"BLOCK_PW": 2}, num_warps=4),
        triton.Config({"BLOCK_PW": 8}, num_warps=4),
        triton.Config({"BLOCK_PW": 8}, num_warps=8),
        triton.Config({"BLOCK_PW": 16}, num_warps=8),
    ]),
    key=["H", "W", "C", "P", "U8", "MEDIAN", "ANOMALY", "WRITE_GRAD"],
)
@triton.jit
def _motion_kernel(
    prev,  # frames t-1: uint8 [B, H, W, C] channels-last (U8) or float [B, C, H, W]; any strides
    nxt,  # frames t+1: prev's shape, dtype and layout; any strides
    amap,  # anomaly map [B, H, W], float in [0, 1] (ANOMALY); else a dummy pointer (raw)
    scale,  # [B] float32: max(128, the frame's gradient max) (ANOMALY); else a dummy (raw)
    raw,  # out [B, L] float32 contiguous: per patch, mean over channels of the patch max
    pmax,  # out [B, L] float32 contiguous: per patch, max over channels of the patch max
    grad,  # out float32 gradient in prev's layout and shape (WRITE_GRAD); else a dummy (raw)
    H, W,  # frame rows, columns (need not be multiples of P: the partial patches are masked)
    n_pw,  # patches per patch row: cdiv(W, P)
    L,  # tokens per frame: cdiv(H, P) * n_pw, the row stride of raw and pmax
    spb, spc, sph, spw,  # prev's element strides (batch, channel, row, column), either layout
    snb, snc, snh, snw,  # nxt's element strides (batch, channel, row, column)
    smb, smh, smw,  # amap's element strides (batch, row, column); 0 without ANOMALY
    sgb, sgc, sgh, sgw,  # grad's element strides (batch, channel, row, column); 0 without grad
    C: tl.constexpr,  # channels
    CP: tl.constexpr,  # C padded to a power of 2 (the extra lanes are masked)
    P: tl.constexpr,  # patch size in pixels (16 for motion_gradient, whose tokens are unused)
    PP: tl.constexpr,  # P padded to a power of 2
    U8: tl.constexpr,  # uint8 channels-last frames: computed exactly in fp16 (1024 + v, _cvt)
    MEDIAN: tl.constexpr,  # 3x3 median per channel (border replicated) before the difference
    ANOMALY: tl.constexpr,  # add amap * scale to every channel (the anomaly term's 2nd pass)
    WRITE_GRAD: tl.constexpr,  # store the full-resolution gradient in grad (motion_gradient)
    BLOCK_PW: tl.constexpr,  # autotuned: patches per program, along one patch row
):
    """One program = BLOCK_PW patches of one patch row of one frame, as a [patch, x-in-patch,
    channel] register tile. It walks the patch's P rows top to bottom keeping the sorted
    (x-1, x, x+1) triples of the last two image rows, so every input row is loaded once per
    program (its 3 horizontal shifts hit L1; the 1-row halo of neighbouring bands hits L2):
    ~1 read of each input byte from DRAM, and only the [B, L] results are written."""
    # program (pid0, prow, b) -> patches pid0*BLOCK_PW .. +BLOCK_PW-1 of patch row prow, frame b
    b = tl.program_id(2).to(tl.int64)
    prow = tl.program_id(1)
    pw1 = tl.program_id(0) * BLOCK_PW + tl.arange(0, BLOCK_PW)  # patch columns
    pw = pw1[:, None, None]
    rx = tl.arange(0, PP)[None, :, None]
    ch = tl.arange(0, CP)[None, None, :]
    x = pw * P + rx
    m = (pw < n_pw) & (rx < P) & (ch < C) & (x < W)  # C, P padded to powers of 2
    xl, xr = tl.maximum(x - 1, 0), tl.minimum(x + 1, W - 1)  # replicated border
    # per-lane pointers at x-1, x, x+1 of row 0; the loop adds one scalar row offset
    p_row, n_row = prev + b * spb + ch * spc, nxt + b * snb + ch * snc
    p_l, p_c, p_r = p_row + xl * spw, p_row + x * spw, p_row + xr * spw
    n_l, n_c, n_r = n_row + xl * snw, n_row + x * snw, n_row + xr * snw
    y0 = prow * P
    if MEDIAN:  # prime the rolling window: image rows y0-1 and y0 sorted, row y0+1 in flight
        ym, y0p, y0n = tl.maximum(y0 - 1, 0), y0 * sph, y0 * snh
        pa, pb, pc = _row3(p_l, p_c, p_r, ym * sph, m)
        pl0, pm0, ph0 = _sorted3(pa, pb, pc, U8)
        pa, pb, pc = _row3(p_l, p_c, p_r, y0p, m)
        pl1, pm1, ph1 = _sorted3(pa, pb, pc, U8)
        na, nb, nc = _row3(n_l, n_c, n_r, ym * snh, m)
        nl0, nm0, nh0 = _sorted3(na, nb, nc, U8)
        na, nb, nc = _row3(n_l, n_c, n_r, y0n, m)
        nl1, nm1, nh1 = _sorted3(na, nb, nc, U8)
        pa, pb, pc = _row3(p_l, p_c, p_r, tl.minimum(y0 + 1, H - 1) * sph, m)
        na, nb, nc = _row3(n_l, n_c, n_r, tl.minimum(y0 + 1, H - 1) * snh, m)
    acc = tl.zeros([BLOCK_PW, PP, CP], dtype=tl.float32)
    if ANOMALY:
        a_scale = tl.load(scale + b)
    elif U8:
        acc = tl.zeros([BLOCK_PW, PP, CP], dtype=tl.float16)  # exact: gradients 0..255
    for r in range(P):  # a real loop: unrolling would hoist every row's loads, spilling
        y = y0 + r
        mr = m & (x * 0 + y < H)  # a tensor compare: triton 3.9's interpreter rejects a
        # mask built from a scalar comparison
        if MEDIAN:
            # software pipelining: issue the loads of row y+2 now, use them next iteration, so
            # their latency hides behind this row's median network
            ys = tl.minimum(y + 2, H - 1)
            pa2, pb2, pc2 = _row3(p_l, p_c, p_r, ys * sph, m)
            na2, nb2, nc2 = _row3(n_l, n_c, n_r, ys * snh, m)
            pl2, pm2, ph2 = _sorted3(pa, pb, pc, U8)
            nl2, nm2, nh2 = _sorted3(na, nb, nc, U8)
            g = tl.abs(_median9(nl0, nm0, nh0, nl1, nm1, nh1, nl2, nm2, nh2)
                       - _median9(pl0, pm0, ph0, pl1, pm1, ph1, pl2, pm2, ph2))
            pl0, pm0, ph0, pl1, pm1, ph1 = pl1, pm1, ph1, pl2, pm2, ph2
            nl0, nm0, nh0, nl1, nm1, nh1 = nl1, nm1, nh1, nl2, nm2, nh2
            pa, pb, pc, na, nb, nc = pa2, pb2, pc2, na2, nb2, nc2
        else:
            ys = tl.minimum(y, H - 1)
            g = tl.abs(_cvt(tl.load(n_c + ys * snh, mask=mr, other=0), U8)
                       - _cvt(tl.load(p_c + ys * sph, mask=mr, other=0), U8))
        if WRITE_GRAD:
            tl.store(grad + b * sgb + y * sgh + x * sgw + ch * sgc, g.to(tl.float32), mask=mr)
        if ANOMALY:
            mv = tl.load(amap + b * smb + y * smh + x * smw, mask=mr, other=0).to(tl.float32)
            g = g.to(tl.float32) + mv * a_scale
        acc = tl.maximum(acc, tl.where(mr, g, 0.0))  # gradients are >= 0: 0 is neutral
    cmax = tl.max(acc.to(tl.float32), axis=1)  # [BLOCK_PW, CP]: per-patch, per-channel max
    tok, ok = prow * n_pw + pw1, pw1 < n_pw
    tl.store(raw + b * L + tok, tl.sum(cmax, axis=1) / C, mask=ok)
    tl.store(pmax + b * L + tok, tl.max(cmax, axis=1), mask=ok)


_HALO_BYTES = 16  # loaded left of a row segment: >= C for the x-1 shift; 16 keeps loads aligned
_HALO = tl.constexpr(_HALO_BYTES)  # the kernel's copy (jit code reads constexpr globals only)
_ROWS_CONFIGS = [  # the first is the interpreter's (autotune_configs): avenue's 2 tiles per row
    triton.Config({"BLOCK_B": 1024, "STAGES": 2}, num_warps=4),  # 8-byte loads per thread
    triton.Config({"BLOCK_B": 1024, "STAGES": 2}, num_warps=2),  # 16-byte loads per thread
    triton.Config({"BLOCK_B": 2048, "STAGES": 2}, num_warps=4),
    triton.Config({"BLOCK_B": 2048, "STAGES": 3}, num_warps=8),
    triton.Config({"BLOCK_B": 512, "STAGES": 2}, num_warps=2),
    triton.Config({"BLOCK_B": 256, "STAGES": 3}, num_warps=2),
]


@triton.jit
def _shift_sorted(v, il, ir, first, last):
    """Sorted (x-1, x, x+1) of the raw row bytes v: the shifts by one pixel (C bytes) are
    register gathers within the row segment (no re-load); pixel 0 / W-1 replicate."""
    left = tl.where(first, v, tl.gather(v, il, 0))
    right = tl.where(last, v, tl.gather(v, ir, 0))
    return _sorted3(left, v, right, True)


@triton.autotune(configs=autotune_configs(_ROWS_CONFIGS),
                 key=["H", "W", "C", "P", "MEDIAN", "ANOMALY", "WRITE_GRAD"])
@triton.jit
def _motion_rows_kernel(
    prev,  # frames t-1: uint8 [B, H, W, C], each row contiguous (any batch and row strides)
    nxt,  # frames t+1: prev's shape, rows contiguous
    amap,  # anomaly map [B, H, W], float in [0, 1] (ANOMALY); else a dummy pointer (raw)
    scale,  # [B] float32: max(128, the frame's gradient max) (ANOMALY); else a dummy (raw)
    raw,  # out [B, L] float32 contiguous: per patch, mean over channels of the patch max
    pmax,  # out [B, L] float32 contiguous: per patch, max over channels of the patch max
    grad,  # out float32 [B, H, W, C] gradient, rows W*C apart (WRITE_GRAD); else a dummy (raw)
    H, W,  # frame rows, columns (need not be multiples of P: the partial patches are masked)
    n_pw,  # patches per patch row: cdiv(W, P)
    L,  # tokens per frame: cdiv(H, P) * n_pw, the row stride of raw and pmax
    sgb,  # grad's batch stride in elements; 0 without WRITE_GRAD
    spb, sph,  # prev's byte strides: batch, row
    snb, snh,  # nxt's byte strides: batch, row
    smb, smh, smw,  # amap's element strides (batch, row, column); 0 without ANOMALY
    C: tl.constexpr,  # channels: the horizontal neighbour of a byte is C bytes away
    P: tl.constexpr,  # patch size in pixels (16 for motion_gradient, whose tokens are unused)
    Q: tl.constexpr,  # gcd(P * C, _HALO): a power of 2; Q-byte chunks never straddle patches
    PCF: tl.constexpr,  # P * C rounded down to a power of 2: BLOCK_B // PCF >= patches per program
    MEDIAN: tl.constexpr,  # 3x3 median per channel (border replicated) before the difference
    ANOMALY: tl.constexpr,  # add amap * scale to every channel (the anomaly term's 2nd pass)
    WRITE_GRAD: tl.constexpr,  # store the full-resolution gradient in grad (motion_gradient)
    BLOCK_B: tl.constexpr,  # autotuned: bytes per row segment (lanes), halo included
    STAGES: tl.constexpr,  # autotuned: software-pipelining depth of the row loop
):
    """Contiguous channels-last uint8 frames: one lane per byte, no idle channel lane. A
    program owns NPW whole patches of one patch row, i.e. one contiguous row segment of
    NPW * P * C bytes, loaded (with a _HALO-byte left halo) as one aligned vector per image row;
    the x-1 / x+1 neighbours come from register gathers of that vector, and a rolling window
    keeps the sorted triples of the last two rows, so each row is loaded once per program."""
    # program (pid0, prow, b) -> patches pid0*NPW .. +NPW-1 of patch row prow of frame b
    NPW: tl.constexpr = (BLOCK_B - _HALO - C) // (P * C)
    b = tl.program_id(2).to(tl.int64)
    prow = tl.program_id(1)
    j = tl.arange(0, BLOCK_B)
    o = tl.program_id(0) * (NPW * P * C) - _HALO + j  # byte offset in the image row
    WC = W * C
    ld = (o >= 0) & (o < WC)  # bytes inside the row (the halo's too)
    own = (j >= _HALO) & (j < _HALO + NPW * P * C) & (o < WC)  # the program's patches' bytes
    il, ir = tl.maximum(j - C, 0), tl.minimum(j + C, BLOCK_B - 1)  # gather indices x-1, x+1
    first, last = o < C, o >= WC - C  # pixel 0 / W-1: the replicated border is the pixel itself
    p_row, n_row = prev + b * spb + o, nxt + b * snb + o  # row 0; the loop adds row offsets
    y0 = prow * P
    if MEDIAN:  # prime the rolling window: image rows y0-1 and y0 sorted, row y0+1 in flight
        ym, y1 = tl.maximum(y0 - 1, 0), tl.minimum(y0 + 1, H - 1)
        pl0, pm0, ph0 = _shift_sorted(tl.load(p_row + ym * sph, mask=ld, other=0),
                                      il, ir, first, last)
        pl1, pm1, ph1 = _shift_sorted(tl.load(p_row + y0 * sph, mask=ld, other=0),
                                      il, ir, first, last)
        nl0, nm0, nh0 = _shift_sorted(tl.load(n_row + ym * snh, mask=ld, other=0),
                                      il, ir, first, last)
        nl1, nm1, nh1 = _shift_sorted(tl.load(n_row + y0 * snh, mask=ld, other=0),
                                      il, ir, first, last)
        pa = tl.load(p_row + y1 * sph, mask=ld, other=0)
        na = tl.load(n_row + y1 * snh, mask=ld, other=0)
    if ANOMALY:
        a_scale = tl.load(scale + b)
        acc = tl.zeros([BLOCK_B], dtype=tl.float32)
        a_ptr = amap + b * smb + (tl.maximum(o, 0) // C) * smw  # the byte's pixel, row 0
    else:
        acc = tl.zeros([BLOCK_B], dtype=tl.float16)  # exact: gradients 0..255
    for r in tl.range(0, P, num_stages=STAGES):
        y = y0 + r
        mr = own & (j * 0 + y < H)  # a tensor compare (the interpreter rejects scalar masks)
        if MEDIAN:
            # issue row y+2's loads now, use them next iteration: latency behind this row's math
            ys = tl.minimum(y + 2, H - 1)
            pa2 = tl.load(p_row + ys * sph, mask=ld, other=0)
            na2 = tl.load(n_row + ys * snh, mask=ld, other=0)
            pl2, pm2, ph2 = _shift_sorted(pa, il, ir, first, last)
            nl2, nm2, nh2 = _shift_sorted(na, il, ir, first, last)
            g = tl.abs(_median9(nl0, nm0, nh0, nl1, nm1, nh1, nl2, nm2, nh2)
                       - _median9(pl0, pm0, ph0, pl1, pm1, ph1, pl2, pm2, ph2))
            pl0, pm0, ph0, pl1, pm1, ph1 = pl1, pm1, ph1, pl2, pm2, ph2
            nl0, nm0, nh0, nl1, nm1, nh1 = nl1, nm1, nh1, nl2, nm2, nh2
            pa, na = pa2, na2
        else:
            ys = tl.minimum(y, H - 1)
            g = tl.abs(_cvt(tl.load(n_row + ys * snh, mask=mr, other=0), True)
                       - _cvt(tl.load(p_row + ys * sph, mask=mr, other=0), True))
        if WRITE_GRAD:
            tl.store(grad + b * sgb + y * WC + o, g.to(tl.float32), mask=mr)
        if ANOMALY:
            g = g.to(tl.float32) + tl.load(a_ptr + y * smh, mask=mr, other=0).to(tl.float32) \
                * a_scale
        acc = tl.maximum(acc, tl.where(mr, g, 0.0))  # gradients are >= 0: 0 is neutral
    # per (patch, channel) max: Q-byte chunks (each inside one patch), then chunks -> patches
    ch = tl.reshape(o % C, [BLOCK_B // Q, Q])  # o % C: halo lanes' values are unused
    chunk = tl.arange(0, BLOCK_B // Q)
    kp = tl.arange(0, BLOCK_B // PCF)
    sel = (chunk[None, :] * Q - _HALO) // (P * C) == kp[:, None]  # chunk in patch kp
    sel = sel & (chunk[None, :] * Q >= _HALO)
    accq = tl.reshape(acc.to(tl.float32), [BLOCK_B // Q, Q])
    tot = tl.zeros([BLOCK_B // PCF], dtype=tl.float32)
    top = tl.zeros([BLOCK_B // PCF], dtype=tl.float32)
    for c in tl.static_range(C):
        cm = tl.max(tl.where(ch == c, accq, 0.0), axis=1)  # [chunks]: channel c's chunk max
        km = tl.max(tl.where(sel, cm[None, :], 0.0), axis=1)  # [patches]: its patch max
        tot, top = tot + km, tl.maximum(top, km)
    pw1 = tl.program_id(0) * NPW + kp
    tok, ok = prow * n_pw + pw1, (kp < NPW) & (pw1 < n_pw)
    tl.store(raw + b * L + tok, tot / C, mask=ok)
    tl.store(pmax + b * L + tok, top, mask=ok)


@triton.jit
def _normalize_kernel(raw, out, L, BLOCK_L: tl.constexpr):
    """One program per frame: weights / their sum; an all-static frame (sum 0) gets uniform
    weights instead of 0/0 = NaN."""
    b = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK_L)
    ok = offs < L
    w = tl.load(raw + b * L + offs, mask=ok, other=0.0)
    s = tl.sum(w, axis=0)
    w = tl.where(s > 0, tl.math.div_rn(w, tl.where(s > 0, s, 1.0)), 1.0 / L)  # IEEE, as torch
    tl.store(out + b * L + offs, w, mask=ok)


# ----------------------------------------------------------------------------- launchers


def _bchw_strides(x: torch.Tensor, channels_last: bool) -> tuple[int, int, int, int]:
    """(batch, channel, row, column) element strides of a frame tensor in its layout."""
    if channels_last:  # [B, H, W, C]
        return x.stride(0), x.stride(3), x.stride(1), x.stride(2)
    return x.stride(0), x.stride(1), x.stride(2), x.stride(3)


def _dims(x: torch.Tensor) -> tuple[int, int, int, int]:
    """(B, C, H, W) of a frame tensor in its layout."""
    if x.dtype == torch.uint8:
        B, H, W, C = x.shape
    else:
        B, C, H, W = x.shape
    return B, C, H, W


def _rows_patches(block_b: int, C: int, patch: int) -> int:
    """Patches per program of `_motion_rows_kernel` for a BLOCK_B-byte row segment."""
    return (block_b - _HALO_BYTES - C) // (patch * C)


def _rows_path(x: torch.Tensor, C: int, patch: int) -> bool:
    """uint8 [B, H, W, C] frames whose rows are contiguous (the decoded layout, clip slices
    included), and patches small enough for every BLOCK_B in `_ROWS_CONFIGS`."""
    return (x.dtype == torch.uint8 and x.stride(2) == C and (C == 1 or x.stride(3) == 1)
            and min(_rows_patches(c.kwargs["BLOCK_B"], C, patch) for c in _ROWS_CONFIGS) >= 1)


def launch_motion(prev, nxt, patch, median, anomaly_map=None, scale=None, grad=None, config=None):
    """Run the motion kernel once: `_motion_rows_kernel` for uint8 frames with contiguous rows,
    else the strided `_motion_kernel`. Returns (raw [B, L] patch channel-means, pmax [B, L]
    patch max over channels). H here is rounded up to whole patches (tail rows masked).
    config: the rows kernel's meta-parameters, bypassing the autotuner (tests)."""
    B, C, H, W = _dims(prev)
    n_ph, n_pw = triton.cdiv(H, patch), triton.cdiv(W, patch)
    raw = torch.empty((B, n_ph * n_pw), device=prev.device, dtype=torch.float32)
    pmax = torch.empty_like(raw)
    anomaly = anomaly_map is not None
    amap = anomaly_map if anomaly else raw  # dummy pointers where a feature is off
    out = grad if grad is not None else raw
    sm = amap.stride() if anomaly else (0, 0, 0)
    cl = prev.dtype == torch.uint8  # uint8 frames (and their gradient) are channels-last
    sg = _bchw_strides(grad, cl) if grad is not None else (0, 0, 0, 0)
    if _rows_path(prev, C, patch) and _rows_path(nxt, C, patch):
        def grid(meta):
            return (triton.cdiv(n_pw, _rows_patches(meta["BLOCK_B"], C, patch)), n_ph, B)

        kernel = _motion_rows_kernel if config is None else _motion_rows_kernel.fn
        kernel[grid](
            prev, nxt, amap, scale if anomaly else raw, raw, pmax, out, H, W, n_pw,
            n_ph * n_pw, sg[0], prev.stride(0), prev.stride(1), nxt.stride(0), nxt.stride(1), *sm,
            C=C, P=patch, Q=math.gcd(patch * C, _HALO_BYTES),
            PCF=1 << ((patch * C).bit_length() - 1),
            MEDIAN=median, ANOMALY=anomaly, WRITE_GRAD=grad is not None, **(config or {}))
        return raw, pmax
    grid = lambda meta: (triton.cdiv(n_pw, meta["BLOCK_PW"]), n_ph, B)  # noqa: E731
    _motion_kernel[grid](
        prev, nxt, amap, scale if anomaly else raw, raw, pmax, out, H, W, n_pw, n_ph * n_pw,
        *_bchw_strides(prev, cl), *_bchw_strides(nxt, cl), *sm, *sg,
        C=C, CP=triton.next_power_of_2(C), P=patch, PP=triton.next_power_of_2(patch), U8=cl,
        MEDIAN=median, ANOMALY=anomaly, WRITE_GRAD=grad is not None,
    )
    return raw, pmax


def motion_token_weights_triton(prev: torch.Tensor, next: torch.Tensor, patch: int,
                                median: bool = True, anomaly_map: torch.Tensor | None = None,
                                normalize: bool = True) -> torch.Tensor:
    """Triton launcher of `motion_token_weights` (inputs assumed validated). -> [B, L] float32."""
    check_triton_device(prev, next, anomaly_map)
    raw, pmax = launch_motion(prev, next, patch, median)
    if anomaly_map is not None:
        # The anomaly term needs each frame's gradient max before any patch max: a reduction
        # across all programs of a frame. One program per frame would idle most SMs at small
        # batch, so this is two-phase: the pass above gives every patch's max (its max over the
        # frame is the frame's gradient max), and a second pass recomputes the gradient with the
        # term added. The re-read only costs on the training path that uses synthetic anomalies.
        scale = pmax.amax(dim=1).clamp_min(128.0).contiguous()
        raw, _ = launch_motion(prev, next, patch, median, anomaly_map, scale)
    if not normalize:
        return raw
    out = torch.empty_like(raw)
    _normalize_kernel[(raw.shape[0],)](raw, out, raw.shape[1],
                                       BLOCK_L=triton.next_power_of_2(raw.shape[1]))
    return out


def motion_gradient_triton(prev: torch.Tensor, next: torch.Tensor,
                           median: bool = True) -> torch.Tensor:
    """Triton launcher of `motion_gradient`: float32 gradient in the input's layout."""
    check_triton_device(prev, next)
    grad = torch.empty(prev.shape, device=prev.device, dtype=torch.float32)
    launch_motion(prev, next, 16, median, grad=grad)  # 16-pixel tiles; the token outputs are unused
    return grad


# ----------------------------------------------------------------------------- torch reference


def _as_bchw_float(x: torch.Tensor) -> torch.Tensor:
    return (x.permute(0, 3, 1, 2) if x.dtype == torch.uint8 else x).float()


def _med3_torch(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return torch.maximum(torch.minimum(a, b), torch.minimum(torch.maximum(a, b), c))


def _median3x3(x: torch.Tensor) -> torch.Tensor:
    """3x3 median per channel of [B, C, H, W] float, border replicated.

    Exact median of 9 by min/max (no sort): with each window row's min, median and max,
    the median is med3(max of the mins, med3 of the medians, min of the maxes). About 14x
    faster on the CPU than stacking the 9 shifts and calling torch.median.
    """
    H, W = x.shape[-2:]
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    lo, mid, hi = [], [], []
    for i in range(3):
        a, b, c = (xp[..., i:i + H, j:j + W] for j in range(3))
        lo.append(torch.minimum(torch.minimum(a, b), c))
        hi.append(torch.maximum(torch.maximum(a, b), c))
        mid.append(_med3_torch(a, b, c))
    return _med3_torch(torch.maximum(torch.maximum(lo[0], lo[1]), lo[2]), _med3_torch(*mid),
                 torch.minimum(torch.minimum(hi[0], hi[1]), hi[2]))


def _gradient_bchw(prev: torch.Tensor, next: torch.Tensor, median: bool) -> torch.Tensor:
    p, n = _as_bchw_float(prev), _as_bchw_float(next)
    if median:
        p, n = _median3x3(p), _median3x3(n)
    return (n - p).abs()


def motion_gradient_reference(prev: torch.Tensor, next: torch.Tensor,
                              median: bool = True) -> torch.Tensor:
    """Eager PyTorch `motion_gradient`: float32 gradient in the input's layout."""
    g = _gradient_bchw(prev, next, median)
    return g.permute(0, 2, 3, 1).contiguous() if prev.dtype == torch.uint8 else g


def motion_token_weights_reference(prev: torch.Tensor, next: torch.Tensor, patch: int,
                                   median: bool = True, anomaly_map: torch.Tensor | None = None,
                                   normalize: bool = True) -> torch.Tensor:
    """Eager PyTorch `motion_token_weights` (docs/design.md §3), the definition the kernel must
    match."""
    g = _gradient_bchw(prev, next, median)
    if anomaly_map is not None:
        scale = g.amax(dim=(1, 2, 3)).clamp_min(128.0)
        g = g + anomaly_map.float()[:, None] * scale[:, None, None, None]
    w = F.max_pool2d(g, patch).mean(dim=1).flatten(1)
    if not normalize:
        return w
    s = w.sum(dim=1, keepdim=True)
    return torch.where(s > 0, w / torch.where(s > 0, s, 1.0), 1.0 / w.shape[1])


# ----------------------------------------------------------------------------- custom ops


@torch.library.custom_op("aedfast::motion_token_weights", mutates_args=())
def _weights_op(prev: torch.Tensor, next: torch.Tensor, patch: int, median: bool,
                anomaly_map: torch.Tensor | None, normalize: bool) -> torch.Tensor:
    return motion_token_weights_reference(prev, next, patch, median, anomaly_map, normalize)


@_weights_op.register_kernel("cuda")
def _weights_op_cuda(prev, next, patch, median, anomaly_map, normalize):
    return motion_token_weights_triton(prev, next, patch, median, anomaly_map, normalize)


@_weights_op.register_fake
def _weights_op_fake(prev, next, patch, median, anomaly_map, normalize):
    B, _, H, W = _dims(prev)
    return prev.new_empty((B, (H // patch) * (W // patch)), dtype=torch.float32)


@torch.library.custom_op("aedfast::motion_gradient", mutates_args=())
def _gradient_op(prev: torch.Tensor, next: torch.Tensor, median: bool) -> torch.Tensor:
    return motion_gradient_reference(prev, next, median)


@_gradient_op.register_kernel("cuda")
def _gradient_op_cuda(prev, next, median):
    return motion_gradient_triton(prev, next, median)


@_gradient_op.register_fake
def _gradient_op_fake(prev, next, median):
    return prev.new_empty(prev.shape, dtype=torch.float32)


# ----------------------------------------------------------------------------- public API


def _check_frames(prev: torch.Tensor, next: torch.Tensor) -> tuple[int, int, int, int]:
    for name, t in (("prev", prev), ("next", next)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype != torch.uint8 and not t.dtype.is_floating_point:
            raise TypeError(f"{name} must be uint8 [B, H, W, C] or float [B, C, H, W], "
                            f"got dtype {t.dtype}")
        if t.dim() != 4:
            raise ValueError(f"{name} must be 4-D ([B, H, W, C] uint8 or [B, C, H, W] float), "
                             f"got shape {tuple(t.shape)}")
    if prev.shape != next.shape or prev.dtype != next.dtype or prev.device != next.device:
        raise ValueError(f"prev and next differ: {tuple(prev.shape)} {prev.dtype} {prev.device}"
                         f" vs {tuple(next.shape)} {next.dtype} {next.device}")
    dims = _dims(prev)
    if min(dims) < 1:
        raise ValueError(f"empty frames: shape {tuple(prev.shape)}")
    return dims


def motion_token_weights(prev: torch.Tensor, next: torch.Tensor, patch: int, *,
                         median: bool = True, anomaly_map: torch.Tensor | None = None,
                         normalize: bool = True) -> torch.Tensor:
    """Motion token weights of docs/design.md §3 for a batch of independent frames.

    prev, next: frames t-1 and t+1, uint8 [B, H, W, C] (channels-last, as decoded) or float
        [B, C, H, W]; any strides. H and W must be multiples of `patch`.
    median: 3x3 median per channel (border replicated) on each frame first.
    anomaly_map: optional [B, H, W] float in [0, 1]; adds m * max(128, frame gradient max) to
        every channel of the gradient before the patch max.
    normalize: divide by the sum over the frame's tokens (uniform for all-static frames).
    Returns [B, L] float32, L = (H / patch) * (W / patch), tokens row by row.
    """
    B, C, H, W = _check_frames(prev, next)
    if isinstance(patch, bool) or not isinstance(patch, int) or patch < 1:
        raise ValueError(f"patch must be a positive int, got {patch!r}")
    if H % patch or W % patch:
        raise ValueError(f"frame size {H}x{W} is not a multiple of the patch size {patch}")
    if anomaly_map is not None:
        if not isinstance(anomaly_map, torch.Tensor) or not anomaly_map.dtype.is_floating_point:
            raise TypeError("anomaly_map must be a float tensor [B, H, W] with values in [0, 1]")
        if tuple(anomaly_map.shape) != (B, H, W) or anomaly_map.device != prev.device:
            raise ValueError(f"anomaly_map must be [B, H, W] = {(B, H, W)} on {prev.device}, "
                             f"got {tuple(anomaly_map.shape)} on {anomaly_map.device}")
    return torch.ops.aedfast.motion_token_weights(prev, next, patch, bool(median), anomaly_map,
                                                  bool(normalize))


def motion_gradient(prev: torch.Tensor, next: torch.Tensor, *, median: bool = True
                    ) -> torch.Tensor:
    """Full-resolution motion gradient |median3x3(next) - median3x3(prev)| per channel.

    prev, next: uint8 [B, H, W, C] or float [B, C, H, W] (any strides, any H, W).
    Returns float32 in the input's layout: [B, H, W, C] for uint8, [B, C, H, W] for float.
    The token weights are the per-patch max of this map (mean over channels, normalised).
    """
    _check_frames(prev, next)
    return torch.ops.aedfast.motion_gradient(prev, next, bool(median))
