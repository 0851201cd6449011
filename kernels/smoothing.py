"""Score smoothing kernels (docs/design.md §1 last bullet, §5): anomaly maps -> 3D filter ->
frame max
-> temporal Gaussian (Triton kernels, torch references, custom ops). The maps come from
`aedfast.scoring.anomaly_maps`; the streaming form is `aedfast.stream.StreamingSmoother`.

Pipeline, for the frames of one video (several videos are packed along N with `lengths`;
their frames never mix):

1. `aedfast::filter_frame_max`: a separable 3D filter (frames, rows, columns), "box" (mean) or
   "gaussian", borders replicated within each video (scipy.ndimage mode "nearest"), then the
   max over each filtered frame. The Triton kernel fuses all of it: the filtered volume is
   never written to memory.
2. `aedfast::temporal_gaussian` (kernels/temporal.py): the frame scores smoothed by a temporal
   Gaussian, either "centered" (normalised symmetric kernel, borders replicated) or "official"
   (docs/design.md §5: the un-normalised kernel one sample off centre, zero padding).

Gaussian window of size k along an axis: sigma = k / 6 and radius k // 2, i.e.
scipy.ndimage.gaussian_filter(x, sigma=k/6, mode="nearest", radius=k//2) (equivalently
truncate = (k // 2) / sigma); weights exp(-x^2 / (2 sigma^2)) normalised to sum 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ._triton import autotune_configs, check_triton_device, tl, triton
from .temporal import device_lengths, lengths_list, parse_temporal

__all__ = [
    "filter_frame_max_reference",
    "filter_frame_max_triton",
    "parse_window",
    "smooth_scores",
    "window_weights",
]


# ----------------------------------------------------------------------------------------
# Filter weights
# ----------------------------------------------------------------------------------------


def window_weights(size: int, kind: str) -> list[float]:
    """1-D weights of one axis of the 3D filter: box -> 1/size each; gaussian -> sigma =
    size/6, radius size//2, exp(-x^2 / (2 sigma^2)) normalised (scipy's gaussian kernel)."""
    if kind == "box":
        return [1.0 / size] * size
    r = size // 2
    sigma = size / 6.0
    g = [math.exp(-0.5 * (x / sigma) ** 2) for x in range(-r, r + 1)]
    s = sum(g)
    return [v / s for v in g]


_NON_FINITE = ("maps contain NaN or inf (or values so large that the filter overflows "
               "float32): clean them before smoothing")


def _finite_or_nan(out: torch.Tensor, finite: torch.Tensor, check: bool) -> torch.Tensor:
    """check: raise on a False `finite` (one host read); else no host read: every output of
    the call becomes NaN, for the caller to test once (docs/design.md §7)."""
    if check:
        if not bool(finite):
            raise ValueError(_NON_FINITE)
        return out
    return torch.where(finite, out, float("nan"))


# ----------------------------------------------------------------------------------------
# Torch reference
# ----------------------------------------------------------------------------------------


def _separable_filter(x: torch.Tensor, weights: Sequence[list[float]]) -> torch.Tensor:
    """x [B, 1, T, H, W] already replicate-padded by each axis' radius; valid correlation
    with the three 1-D kernels in turn (frames, rows, columns).

    Each pass is a weighted sum of shifted slices: memory-bound adds that vectorise well on
    the CPU (a 1-channel conv3d falls back to a slow direct convolution there)."""
    for axis, w in enumerate(weights):
        if len(w) == 1 and w[0] == 1.0:
            continue
        dim = 2 + axis
        n = x.shape[dim] - len(w) + 1
        out = x.narrow(dim, 0, n) * w[0]
        for i in range(1, len(w)):
            out.add_(x.narrow(dim, i, n), alpha=w[i])
        x = out
    return x


_BATCH_VALUES = 1 << 18  # values per batched pass of the reference filter: 1 MB, cache-sized


def filter_frame_max_reference(maps: torch.Tensor, lengths: Sequence[int] | torch.Tensor,
                               window: Sequence[int], kind: str = "box",
                               centre_only: bool = False, check: bool = True) -> torch.Tensor:
    """Eager torch: per video, replicate padding + separable conv3d, then amax per frame.

    maps [N, H, W] float, lengths [V] int (sum N). Returns float32 [N] (the max of every
    filtered frame) or, with centre_only, [V] (only frame lengths//2 of each video: the
    streaming path, which packs one window per video). NaN/inf in maps: ValueError, or with
    check=False all-NaN scores (no host read).

    Videos of equal length are filtered together, in batches of up to _BATCH_VALUES values
    (about a core's cache: bigger batches ran slower), so the streaming smoother's thousands
    of one-frame token maps become a few batched passes.
    """
    x_all = maps.float()
    finite = torch.isfinite(x_all).all()
    if check:
        _finite_or_nan(x_all, finite, True)
    kt, kh, kw = (int(k) for k in window)
    weights = [window_weights(k, kind) for k in (kt, kh, kw)]
    rt, ry, rx = kt // 2, kh // 2, kw // 2
    lens = lengths_list(lengths, x_all.shape[0])
    if not lens:
        return x_all.new_empty(0)
    H, W = x_all.shape[-2:]
    starts = [0]
    for n in lens[:-1]:
        starts.append(starts[-1] + n)
    out = x_all.new_empty(len(lens) if centre_only else x_all.shape[0])
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(lens):
        groups.setdefault(n, []).append(i)
    for n, members in groups.items():
        per = max(1, _BATCH_VALUES // max(1, n * H * W))
        for c in range(0, len(members), per):
            ids = members[c:c + per]
            first = starts[ids[0]]
            if starts[ids[-1]] - first == (len(ids) - 1) * n:  # consecutive videos: a view
                rows = torch.arange(first, first + len(ids) * n, device=x_all.device)
                v = x_all[first:first + len(ids) * n].reshape(len(ids), 1, n, H, W)
            else:
                idx = torch.tensor([starts[i] for i in ids], device=x_all.device)
                rows = (idx[:, None] + torch.arange(n, device=x_all.device)).reshape(-1)
                v = x_all.index_select(0, rows).view(len(ids), 1, n, H, W)
            if centre_only:
                # Only the middle frame: its temporal window, then the 2-D filter.
                t = (torch.arange(kt, device=v.device) + n // 2 - rt).clamp(0, n - 1)
                wt = torch.tensor(weights[0], dtype=v.dtype, device=v.device)
                v = (v[:, :, t] * wt[:, None, None]).sum(2, keepdim=True)
                filt = _separable_filter(F.pad(v, (rx, rx, ry, ry, 0, 0), mode="replicate"),
                                         [[1.0], weights[1], weights[2]])
            else:
                filt = _separable_filter(F.pad(v, (rx, rx, ry, ry, rt, rt), mode="replicate"),
                                         weights)
            peaks = filt[:, 0].amax(dim=(2, 3))  # [videos, frames filtered]
            if centre_only:
                out[torch.tensor(ids, device=out.device)] = peaks[:, 0]
            else:
                out[rows] = peaks.reshape(-1)
    return out if check else _finite_or_nan(out, finite, False)


# ----------------------------------------------------------------------------------------
# Triton: fused 3D filter + frame max
# ----------------------------------------------------------------------------------------

# Blocks BRH x BCH (halo included), frame-loop pipelining depth, warps: 8-16 values per thread
# (116-166 registers on sm_90, no spills). The first is the interpreter's (autotune_configs).
FILTER_CONFIGS = [
    triton.Config({"BRH": 32, "BCH": 64, "STAGES": 2}, num_warps=8),
    triton.Config({"BRH": 32, "BCH": 64, "STAGES": 3}, num_warps=4),
    triton.Config({"BRH": 64, "BCH": 64, "STAGES": 2}, num_warps=8),
    triton.Config({"BRH": 32, "BCH": 128, "STAGES": 2}, num_warps=8),
    triton.Config({"BRH": 64, "BCH": 128, "STAGES": 2}, num_warps=16),
    triton.Config({"BRH": 16, "BCH": 128, "STAGES": 3}, num_warps=8),
    triton.Config({"BRH": 16, "BCH": 64, "STAGES": 3}, num_warps=4),
]


def _fits(block: int, k: int) -> bool:
    """A block is used along an axis only when at least half of it is output (halo k - 1)."""
    return 2 * (k - 1) <= block


def prune_filter_configs(configs, named_args, **kwargs):
    """The entries whose blocks fit the window and are, per axis, no larger than the whole map
    plus halo needs (or the smallest that fits); else the first (the launcher avoids that)."""
    a, axes = {**named_args, **kwargs}, (("BRH", "H", "KH"), ("BCH", "W", "KW"))
    fit = [c for c in configs if all(_fits(c.kwargs[b], a[k]) for b, _, k in axes)]
    top = {b: max(min(c.kwargs[b] for c in fit), triton.next_power_of_2(a[n] + a[k] - 1))
           for b, n, k in axes} if fit else {}
    return [c for c in fit if all(c.kwargs[b] <= top[b] for b in top)] or fit or configs[:1]


@triton.jit
def _shift(x, D: tl.constexpr, AXIS: tl.constexpr, BR: tl.constexpr, BC: tl.constexpr):
    # y[.., i, ..] = x[.., min(i + D, B - 1), ..] (tl.gather); the clamped tail feeds no output
    if D == 0:
        y = x
    elif AXIS == 0:
        i = tl.minimum(tl.arange(0, BR) + D, BR - 1)
        y = tl.gather(x, tl.broadcast_to(i[:, None], (BR, BC)), 0)
    else:
        i = tl.minimum(tl.arange(0, BC) + D, BC - 1)
        y = tl.gather(x, tl.broadcast_to(i[None, :], (BR, BC)), 1)
    return y


@triton.jit
def _axis_pass(x, w_ptr, K: tl.constexpr, BOX: tl.constexpr, AXIS: tl.constexpr,
               BR: tl.constexpr, BC: tl.constexpr):
    # y[i] = sum_{d < K} w[d] x[i + d] along AXIS (exact where i + K - 1 < the block). Box (w = 1,
    # K odd): doubling p_2m[i] = p_m[i] + p_m[i + m], y adds p_2^b at the set bits b of K (4
    # shifted adds for K = 9, pairwise sums). Gaussian: K - 1 shifted weighted adds.
    y = x
    if BOX:
        p = x
        for b in tl.static_range(1, 16):  # windows up to 65535
            if (1 << b) <= K:
                p = p + _shift(p, 1 << (b - 1), AXIS, BR, BC)
                if (K >> b) & 1:
                    y = y + _shift(p, K & ((1 << b) - 1), AXIS, BR, BC)
    elif K > 1:
        y = x * tl.load(w_ptr)
        for d in tl.static_range(1, K):
            y += tl.load(w_ptr + d) * _shift(x, d, AXIS, BR, BC)
    return y


@triton.autotune(
    configs=autotune_configs(FILTER_CONFIGS),
    key=["H", "W", "KT", "KH", "KW", "BOX", "RUN"],
    prune_configs_by={"early_config_prune": prune_filter_configs},
    restore_value=["out_ptr"],  # the tuner's trial runs leave the atomic maxima as found
)
@triton.jit
def _filter_max_kernel(
    x_ptr,  # maps [N, H, W] float32 contiguous: the frames of all videos, packed along N
    out_ptr,  # out [N] float32, -inf on entry: atomic max over tiles of filtered frame * scale
    flag_ptr,  # [1] int32, 0 on entry: a program that met NaN/inf (or overflow) stores 1
    wt_ptr,  # [KT] float32 weights along frames (box: all 1; unused with RUN)
    wy_ptr,  # [KH] float32 weights along rows (gaussian only; the box's are 1)
    wx_ptr,  # [KW] float32 weights along columns (gaussian only)
    tab_ptr,  # [n_chunks, 4] int32 per chunk: its video's frames [vs, ve), its outputs [t0, t1)
    H,  # map rows
    W,  # map columns
    scale,  # float: 1 / (KT * KH * KW) for the box (its sums are unweighted), 1.0 for gaussian
    KT: tl.constexpr,  # window size along frames (odd; radius KT // 2)
    KH: tl.constexpr,  # window size along rows (odd)
    KW: tl.constexpr,  # window size along columns (odd)
    BOX: tl.constexpr,  # True: box (unit weights, doubling sums), False: gaussian weights
    RUN: tl.constexpr,  # True: temporal running sum (box, KT > 1), False: KT-tap weighted sum
    BRH: tl.constexpr,  # autotuned: block rows incl. the KH - 1 halo (power of 2)
    BCH: tl.constexpr,  # autotuned: block columns incl. the KW - 1 halo (power of 2)
    STAGES: tl.constexpr  # autotuned: software-pipelining depth of the frame loop
):
    # program pid -> (chunk, tile) = divmod(pid, n_tiles), tile -> (row, column) row-major: TR x
    # TC output pixels (a BRH x BCH block with the halo) for the chunk's frames [t0, t1). Per
    # frame: temporal pass (running sum: + entering - leaving frame; or KT weighted loads), rows
    # then columns as shifted adds in registers, one atomic max. Source frames/rows/columns are
    # clamped (replicate borders): loads are in bounds, unmasked; the max is masked to outputs.
    TR: tl.constexpr = BRH - KH + 1
    TC: tl.constexpr = BCH - KW + 1
    RT: tl.constexpr = KT // 2
    pid = tl.program_id(0)
    n_col = (W + TC - 1) // TC
    n_tiles = (H + TR - 1) // TR * n_col
    tile = pid % n_tiles
    chunk = pid // n_tiles
    y0 = tile // n_col * TR
    x0 = tile % n_col * TC
    vs = tl.load(tab_ptr + 4 * chunk)
    ve = tl.load(tab_ptr + 4 * chunk + 1)
    t0 = tl.load(tab_ptr + 4 * chunk + 2)
    t1 = tl.load(tab_ptr + 4 * chunk + 3)
    ri = tl.arange(0, BRH)
    ci = tl.arange(0, BCH)
    rows = tl.minimum(tl.maximum(y0 - KH // 2 + ri, 0), H - 1)
    cols = tl.minimum(tl.maximum(x0 - KW // 2 + ci, 0), W - 1)
    offs = rows[:, None] * W + cols[None, :]
    hw = H * W  # (H, W may arrive as constexpr 1: keep the int64 casts on tensors below)
    valid = ((ri < TR) & (y0 + ri < H))[:, None] & ((ci < TC) & (x0 + ci < W))[None, :]

    acc = tl.zeros((BRH, BCH), dtype=tl.float32)
    nonfinite = tl.zeros((BRH, BCH), dtype=tl.float32)  # += o * 0: NaN once o was NaN/inf
    if RUN:
        # the window of frame t0 - 1; the loop slides it before each output frame
        for k in tl.static_range(KT):
            s = tl.minimum(tl.maximum(t0 - 1 - RT + k, vs), ve - 1)
            acc += tl.load(x_ptr + s.to(tl.int64) * hw + offs)
    # pipelined: the running sum's two loads (the gaussian's KT loads are in flight anyway)
    for dt in tl.range(0, t1 - t0, num_stages=STAGES if RUN else 1, disable_licm=True):
        t = t0 + dt  # a tensor both compiled and interpreted (for .to(int64) below)
        if RUN:
            acc += (tl.load(x_ptr + tl.minimum(t + RT, ve - 1).to(tl.int64) * hw + offs)
                    - tl.load(x_ptr + tl.maximum(t - 1 - RT, vs).to(tl.int64) * hw + offs))
        else:
            acc = tl.zeros((BRH, BCH), dtype=tl.float32)
            for k in tl.static_range(KT):
                s = tl.minimum(tl.maximum(t + k - RT, vs), ve - 1)
                acc += tl.load(wt_ptr + k) * tl.load(x_ptr + s.to(tl.int64) * hw + offs)
        o = _axis_pass(_axis_pass(acc, wy_ptr, KH, BOX, 0, BRH, BCH), wx_ptr, KW, BOX, 1,
                       BRH, BCH)
        nonfinite += o * 0.0
        m = tl.max(tl.where(valid, o, float("-inf")), axis=None) * scale
        tl.atomic_max(out_ptr + t, m)
    # One flag per program, one reduction: NaN/inf anywhere in the input reaches some o
    # (every weight is > 0; tl.max alone may drop NaN), as does a float32 overflow.
    tl.store(flag_ptr, 1, mask=~(tl.sum(nonfinite, axis=None) == 0.0))


def _device_weights(k: int, kind: str, device: torch.device) -> torch.Tensor:
    """float32 [k] filter weights made on the device (no host -> device copy): ones for the
    box (its 1/k^3 is applied once, as `scale`), else `window_weights` in float64."""
    if kind == "box":
        return torch.ones(k, dtype=torch.float32, device=device)
    x = torch.arange(k, dtype=torch.float64, device=device) - k // 2
    g = torch.exp(-0.5 * (x / (k / 6.0)) ** 2)
    return (g / g.sum()).to(torch.float32)


def _chunks(lengths: torch.Tensor, chunk: int, centre_only: bool):
    """Per-chunk video start, video end, t0, t1 (int64, on lengths' device)."""
    ends = torch.cumsum(lengths, 0)
    starts = ends - lengths
    if centre_only:
        t0 = starts + lengths // 2
        return starts, ends, t0, t0 + 1
    n_ch = (lengths + chunk - 1) // chunk
    vid = torch.repeat_interleave(torch.arange(lengths.numel(), device=lengths.device), n_ch)
    first = torch.cumsum(n_ch, 0) - n_ch
    j = torch.arange(vid.numel(), device=lengths.device) - first[vid]
    t0 = starts[vid] + j * chunk
    return starts[vid], ends[vid], t0, torch.minimum(t0 + chunk, ends[vid])


def filter_frame_max_triton(maps: torch.Tensor, lengths: Sequence[int] | torch.Tensor,
                            window: Sequence[int], kind: str = "box", centre_only: bool = False,
                            check: bool = True, tiles: tuple[int, int] | None = None,
                            chunk: int | None = None) -> torch.Tensor:
    """Triton launcher of the fused 3D filter + frame max; same contract as
    `filter_frame_max_reference` (NaN/inf: the kernel's flag, read once with check, else
    folded into the scores on the device). `tiles` (BRH, BCH:
    blocks incl. the halo, powers of 2) and `chunk` (frames per program) override the
    autotuner and the heuristic."""
    check_triton_device(maps)
    x = maps.to(torch.float32).contiguous()
    n, h, w = x.shape
    kt, kh, kw = (int(k) for k in window)
    lens = lengths_list(lengths, n)
    if n == 0:
        return x.new_empty(len(lens) if centre_only else n)
    if chunk is None:
        # long chunks amortise the running sum's warm-up; short ones fill the GPU (few tiles)
        chunk = 64 if triton.cdiv(h, 56) * triton.cdiv(w, 56) >= 16 else 16
    tab = torch.stack(_chunks(device_lengths(lens, x.device), chunk, centre_only), 1)
    tab = tab.to(torch.int32).contiguous()
    box = kind == "box"
    wt, wy, wx = (_device_weights(k, kind, x.device) for k in (kt, kh, kw))
    out = torch.full((n,), float("-inf"), dtype=torch.float32, device=x.device)
    flag = torch.zeros(1, dtype=torch.int32, device=x.device)
    kernel, meta = _filter_max_kernel, {}
    if tiles is not None or not any(_fits(c.kwargs["BRH"], kh) and _fits(c.kwargs["BCH"], kw)
                                    for c in _filter_max_kernel.configs):
        # pinned blocks: the caller's, or (windows too wide for every entry) twice the halo
        brh, bch = tiles or tuple(max(16, triton.next_power_of_2(2 * k)) for k in (kh, kw))
        if brh < kh or bch < kw:
            raise ValueError(f"tiles {brh}x{bch} smaller than the window {kh}x{kw}")
        nw = min(16, max(1, brh * bch // 512))  # 16 values per thread, as in the list
        kernel, meta = _filter_max_kernel.fn, {"BRH": brh, "BCH": bch, "STAGES": 2,
                                               "num_warps": nw}
    grid = lambda m: (tab.shape[0] * triton.cdiv(h, m["BRH"] - kh + 1)  # noqa: E731
                      * triton.cdiv(w, m["BCH"] - kw + 1),)
    kernel[grid](x, out, flag, wt, wy, wx, tab, h, w,
                 1.0 / (kt * kh * kw) if box else 1.0, KT=kt, KH=kh, KW=kw, BOX=box,
                 RUN=box and kt > 1 and not centre_only, **meta)
    out = _finite_or_nan(out, flag[0] == 0, check)
    return out[tab[:, 2].long()] if centre_only else out


# ----------------------------------------------------------------------------------------
# Custom ops: CPU = torch reference, CUDA = Triton launcher
# ----------------------------------------------------------------------------------------


# lengths travel as int[] (host metadata), so that no call reads the device; the impls
# check them (lengths_list). check=False: NaN/inf give NaN scores instead of a host read
# (docs/design.md §7).
@torch.library.custom_op("aedfast::filter_frame_max", mutates_args=())
def _filter_frame_max_op(maps: torch.Tensor, lengths: list[int], window: list[int],
                         kind: str, centre_only: bool, check: bool) -> torch.Tensor:
    return filter_frame_max_reference(maps, lengths, window, kind, centre_only, check)


@_filter_frame_max_op.register_kernel("cuda")
def _(maps, lengths, window, kind, centre_only, check):
    return filter_frame_max_triton(maps, lengths, window, kind, centre_only, check)


@_filter_frame_max_op.register_fake
def _(maps, lengths, window, kind, centre_only, check):
    return maps.new_empty((len(lengths) if centre_only else maps.shape[0],),
                          dtype=torch.float32)


# ----------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------


def parse_window(window, window_kind: str) -> tuple[int, int, int]:
    if window_kind not in ("box", "gaussian"):
        raise ValueError(f"window_kind must be 'box' or 'gaussian', got {window_kind!r}")
    if window is None:
        return (1, 1, 1)
    if isinstance(window, int):
        window = (window, window, window)
    if (not isinstance(window, (tuple, list)) or len(window) != 3
            or not all(isinstance(k, int) and k >= 1 and k % 2 == 1 for k in window)):
        raise ValueError(f"window must be None or 3 positive odd ints (frames, rows, columns), "
                         f"got {window!r}")
    return (int(window[0]), int(window[1]), int(window[2]))


def smooth_scores(maps: torch.Tensor, lengths: Sequence[int] | torch.Tensor | None = None, *,
                  window: tuple[int, int, int] | int | None = (9, 9, 9),
                  window_kind: str = "box", sigma: float | None = 11.0,
                  support: int | None = 37, protocol: str = "centered",
                  check: bool = True) -> torch.Tensor:
    """Frame scores from anomaly maps: 3D filter, max per frame, temporal Gaussian.

    Args:
        maps: [N, h, w] float (any float dtype; computed in float32): the frames of one
            video, or of several videos packed along N.
        lengths: each video's frame count (sequence of ints or 1-D int tensor, sum N);
            None = one video. Videos never mix: every filter replicates (or zero-pads) at each
            video's own borders.
        window: the 3D filter's odd sizes (frames, rows, columns); an int for all three;
            None for no filter. window_kind: "box" (mean) or "gaussian" (per axis
            sigma = size/6, radius size//2; = scipy.ndimage.gaussian_filter(..., sigma=size/6,
            radius=size//2, mode="nearest")). Borders replicate (mode "nearest").
        sigma, support: the temporal Gaussian's standard deviation and odd length in frames;
            either None: no temporal smoothing.
        protocol: "centered": normalised symmetric kernel, borders replicated.
            "official": docs/design.md §5 exactly, support = R - 1 (37 and 11 = Avenue's
            R = 38, S = 11;
            899 and 282 = ShanghaiTech), kernel one sample off centre, zero padding.

        check: False = no host read: NaN/inf in maps give NaN scores (for loops that test
            once per video) instead of the ValueError.

    Returns: float32 [N] frame scores on maps' device. Raises ValueError on NaN/inf in maps.
    """
    if not isinstance(maps, torch.Tensor):
        raise TypeError(f"maps must be a torch.Tensor, got {type(maps).__name__}")
    if maps.dim() != 3 or not maps.dtype.is_floating_point:
        raise ValueError(f"maps must be a float tensor [N, h, w], got {maps.dtype} "
                         f"{tuple(maps.shape)}")
    if maps.shape[1] < 1 or maps.shape[2] < 1:
        raise ValueError(f"maps frames must be non-empty, got {tuple(maps.shape)}")
    win = parse_window(window, window_kind)
    temporal = parse_temporal(sigma, support, protocol)
    lens = lengths_list(lengths, maps.shape[0])
    scores = torch.ops.aedfast.filter_frame_max(maps, lens, list(win), window_kind, False,
                                                bool(check))
    if temporal:
        scores = torch.ops.aedfast.temporal_gaussian(scores, lens, int(support), float(sigma),
                                                     protocol)
    return scores
