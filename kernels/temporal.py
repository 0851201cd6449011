"""The temporal Gaussian over frame scores (docs/design.md §5): the second op of the smoothing
pipeline (`aedfast.kernels.smoothing.smooth_scores` runs both), Triton kernel, torch
reference and custom op; plus the packed-video lengths both ops take.

Several videos are packed along N with `lengths`; a video's scores never mix with another's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ._triton import autotune_configs, check_triton_device, tl, triton

__all__ = [
    "device_lengths",
    "lengths_list",
    "parse_temporal",
    "temporal_gaussian_reference",
    "temporal_gaussian_triton",
    "temporal_weights",
]


def temporal_weights(support: int, sigma: float, protocol: str) -> list[float]:
    """Temporal Gaussian weights w[k], k = 0..support-1, applied as
    out[i] = sum_k w[k] * s[i + k - support//2].

    centered: exp(-0.5 ((k - support//2) / sigma)^2), normalised to sum 1.
    official (docs/design.md §5, support = R - 1): g(s) = exp(-0.5 ((s - c) / S)^2) /
    (S sqrt(2 pi)) for
    s = 1..R-1 with c = the support's element at index len//2 - 1, i.e. c = support//2 (and
    c = 1 for support 1, index -1) and w[k] = g(k + 1): one sample off centre and not
    normalised, exactly as the official code.
    """
    half = support // 2
    if protocol == "centered":
        g = [math.exp(-0.5 * ((k - half) / sigma) ** 2) for k in range(support)]
        s = sum(g)
        return [v / s for v in g]
    # the official code's support[len // 2 - 1], Python's wrap-around included (support 1)
    c = (half - 1) % support + 1
    norm = 1.0 / (sigma * math.sqrt(2.0 * math.pi))
    return [norm * math.exp(-0.5 * ((k + 1 - c) / sigma) ** 2) for k in range(support)]


def lengths_list(lengths: Sequence[int] | torch.Tensor | None, n: int) -> list[int]:
    """Video lengths as host ints, checked: positive, summing to n (None: one video of n).
    Lengths are metadata: kept on the host, so launching never reads the device."""
    if lengths is None:
        return [int(n)]
    if isinstance(lengths, torch.Tensor):
        if lengths.dim() != 1 or lengths.dtype.is_floating_point or lengths.is_complex():
            raise TypeError("lengths must be a 1-D integer tensor or a sequence of ints")
        lengths = lengths.tolist()
    lens = [int(v) for v in lengths]
    if any(v < 1 for v in lens) or sum(lens) != n:
        raise ValueError(f"lengths must be positive and sum to the {n} frames of maps, "
                         f"got {lens}")
    return lens


def device_lengths(lens: list[int], device: torch.device) -> torch.Tensor:
    """int64 [V] on `device`; equal lengths (one video, or the stream's one-frame maps) are
    filled there, without a blocking host -> device copy."""
    if lens and all(v == lens[0] for v in lens):
        return torch.full((len(lens),), lens[0], dtype=torch.int64, device=device)
    return torch.tensor(lens, dtype=torch.int64).to(device, non_blocking=True)


def parse_temporal(sigma, support, protocol: str) -> bool:
    """Validate the temporal Gaussian's arguments; False when it is switched off (None)."""
    if protocol not in ("centered", "official"):
        raise ValueError(f"protocol must be 'centered' or 'official', got {protocol!r}")
    if sigma is None or support is None:
        return False
    if not isinstance(support, int) or support < 1 or support % 2 == 0:
        raise ValueError(f"support must be a positive odd int (official: R - 1), got {support!r}")
    if not isinstance(sigma, (int, float)) or not sigma > 0:
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    return True



# ----------------------------------------------------------------------------------------
# Torch reference
# ----------------------------------------------------------------------------------------


def temporal_gaussian_reference(scores: torch.Tensor, lengths: Sequence[int] | torch.Tensor,
                                support: int,
                                sigma: float, protocol: str = "centered") -> torch.Tensor:
    """Eager torch: per video, padding (replicate for "centered", zeros for "official") by
    support//2 on both sides and a valid conv1d (a correlation, as np.correlate). [N] -> [N]."""
    w = torch.tensor(temporal_weights(support, sigma, protocol), dtype=torch.float32,
                     device=scores.device).reshape(1, 1, -1)
    half = support // 2
    mode = "replicate" if protocol == "centered" else "constant"
    outs = [F.conv1d(F.pad(v.float().reshape(1, 1, -1), (half, half), mode=mode), w)[0, 0]
            for v in torch.split(scores, lengths_list(lengths, scores.shape[0]))]
    return torch.cat(outs) if outs else scores.float().new_empty(0)


# ----------------------------------------------------------------------------------------
# Triton: temporal Gaussian over frame scores
# ----------------------------------------------------------------------------------------


@triton.autotune(
    configs=autotune_configs([triton.Config({"BLOCK": 256}, num_warps=4),
                              triton.Config({"BLOCK": 128}, num_warps=4)]),
    key=["S", "CENTERED"],
)
@triton.jit
def _temporal_kernel(
    s_ptr,  # frame scores [N] float32 contiguous (all videos packed along N)
    out_ptr,  # out [N] float32: out[i] = sum_k w[k] * s[i + k - S // 2], within i's video
    w_ptr,  # [S] float32 temporal_weights(support, sigma, protocol)
    fvs_ptr, fve_ptr,  # [N] int32 per frame: its video's first and one-past-last index in N
    N,  # frames, all videos together
    S,  # support: the kernel's (odd) length in frames
    CENTERED: tl.constexpr,  # True: replicate borders ("centered"); False: zeros ("official")
    BLOCK: tl.constexpr  # autotuned: output frames per program
):
    # program pid -> output frames pid*BLOCK .. +BLOCK-1
    # One lane per output frame; the kernel is tiny (N x support MACs).
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < N
    vs = tl.load(fvs_ptr + i, mask=m, other=0)
    ve = tl.load(fve_ptr + i, mask=m, other=1)
    half = S // 2
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for k in range(S):
        wk = tl.load(w_ptr + k)
        j = i + k - half
        if CENTERED:
            # replicate borders within the frame's own video
            j = tl.minimum(tl.maximum(j, vs), ve - 1)
            val = tl.load(s_ptr + j, mask=m, other=0.0)
        else:
            # zero padding outside the video (docs/design.md §5)
            val = tl.load(s_ptr + j, mask=m & (j >= vs) & (j < ve), other=0.0)
        acc += wk * val
    tl.store(out_ptr + i, acc, mask=m)


def temporal_gaussian_triton(scores: torch.Tensor, lengths: Sequence[int] | torch.Tensor,
                             support: int, sigma: float, protocol: str = "centered"
                             ) -> torch.Tensor:
    """Triton launcher of the temporal Gaussian; same contract as the reference."""
    check_triton_device(scores)
    s = scores.to(torch.float32).contiguous()
    n = s.numel()
    out = torch.empty_like(s)
    if n == 0:
        return out
    lengths = device_lengths(lengths_list(lengths, n), s.device)
    ends = torch.cumsum(lengths, 0)
    fvs = torch.repeat_interleave(ends - lengths, lengths).to(torch.int32)
    fve = torch.repeat_interleave(ends, lengths).to(torch.int32)
    w = torch.tensor(temporal_weights(support, sigma, protocol), dtype=torch.float32)
    w = w.to(s.device, non_blocking=True)  # pageable source: staged, no wait for the GPU

    grid = lambda meta: (triton.cdiv(n, meta["BLOCK"]),)  # noqa: E731
    _temporal_kernel[grid](s, out, w, fvs, fve, n, support, CENTERED=protocol == "centered")
    return out


# ----------------------------------------------------------------------------------------
# Custom op: CPU = torch reference, CUDA = Triton launcher (lengths: host ints)
# ----------------------------------------------------------------------------------------


@torch.library.custom_op("aedfast::temporal_gaussian", mutates_args=())
def _temporal_gaussian_op(scores: torch.Tensor, lengths: list[int], support: int,
                          sigma: float, protocol: str) -> torch.Tensor:
    return temporal_gaussian_reference(scores, lengths, support, sigma, protocol)


@_temporal_gaussian_op.register_kernel("cuda")
def _(scores, lengths, support, sigma, protocol):
    return temporal_gaussian_triton(scores, lengths, support, sigma, protocol)


@_temporal_gaussian_op.register_fake
def _(scores, lengths, support, sigma, protocol):
    return scores.new_empty(scores.shape, dtype=torch.float32)
