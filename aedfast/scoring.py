"""From model outputs to frame scores: the scoring options, maps, min-max, the chunked filter.

Data flows one way: model outputs -> maps (`anomaly_maps`, or `official_frame_scores` for the
official protocol) -> 3D filter + frame max (`ChunkFilter`, over a video fed in chunks) ->
temporal smoothing and the score floor (`finish_scores`) -> scores. The kernels behind the
filter and the temporal Gaussian live in `aedfast.kernels.smoothing`; this module holds the
options and the per-video bookkeeping around them (docs/design.md §1, §2, §5, §6, §9).

Protocols:
- "paper" (default, docs/design.md §1): per-pixel map o = a|x - T|^2 + b|T - S|^2 + c*y
  (`anomaly_maps`), a 3D filter + frame max, then a temporal Gaussian (`Smoothing`).
- "official" (docs/design.md §2 official frame scores, §5 filter): token-mean errors (avenue
  rule: L2 teacher + teacher/student; shanghaitech rule: L1 teacher, per-video min-max), then
  the official one-sample-off-centre temporal filter (R = 38, S = 11 or R = 900, S = 282).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import torch

from .kernels.smoothing import smooth_scores

__all__ = [
    "PROTOCOLS", "ChunkFilter", "Smoothing", "anomaly_maps", "check_floor", "finish_scores",
    "minmax_normalize", "official_frame_scores", "resolve_smoothing", "subtract_floor",
]

PROTOCOLS = ("paper", "official")
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Smoothing:
    """How frame scores are made from the model's outputs.

    window: the 3D filter's odd sizes (frames, rows, columns) over the maps, or None.
    window_kind: "box" (mean) or "gaussian" (per axis sigma = size / 6).
    sigma, support: the temporal Gaussian over frame scores (support odd, in frames);
        either None switches it off.
    temporal: "centered" (normalised, borders replicated) or "official" (docs/design.md §5).
    resolution: maps per "pixel" ([H, W], the paper's) or per "token" ([h, w], p*p smaller).
    a, b, c: weights of the reconstruction error, the teacher/student discrepancy and the
        predicted anomaly-map channel (docs/design.md §1).
    d: weight of the cls head's synthetic-anomaly probability sigmoid(cls_logit), added
        uniformly to every pixel of the frame's map (so it adds d * p to the frame max and
        passes through the filters unchanged in space). An aedfast addition: the paper's
        formula has no such term, and official checkpoints have no trained head (their d is
        then 0 unless asked for, `resolve_smoothing`). Maps returned with d > 0 carry that
        per-frame offset.
    floor: time constant (frames) of the score floor subtracted last, per video or stream
        (`subtract_floor`, docs/design.md §6 "The score floor"): a causal lower envelope of the
        scores so far, so a scene whose normal frames score high (crowds, noise, texture)
        does not outrank another scene's anomalies. None: off. An aedfast addition.

    The defaults (weights, window, temporal Gaussian, floor) were chosen on the benchmark
    family's development variants only, by `python -m bench.choose_defaults` (docs/design.md
    §6, "Choosing the defaults"; the search: bench/results/2026-12-01-cpu-defaults-floor/).
    """

    window: tuple[int, int, int] | None = (5, 5, 5)
    window_kind: str = "box"
    sigma: float | None = 5.0
    support: int | None = 21
    temporal: str = "centered"
    resolution: str = "pixel"
    a: float = 1.0
    b: float = 0.0
    c: float = 1.0
    d: float = 1.0
    floor: float | None = 1000.0

    @classmethod
    def official(cls, dataset: str = "avenue") -> Smoothing:
        """docs/design.md §5: the official filter, R = 38, S = 11 (avenue) or R = 900, S = 282."""
        if dataset == "shanghaitech":
            return cls(window=None, sigma=282.0, support=899, temporal="official", floor=None)
        return cls(window=None, sigma=11.0, support=37, temporal="official", floor=None)

    @property
    def rt(self) -> int:
        """Temporal radius of the 3D filter, frames."""
        return 0 if self.window is None else int(self.window[0]) // 2

    def filter_kwargs(self) -> dict:
        return {"window": self.window, "window_kind": self.window_kind}

    def temporal_kwargs(self) -> dict:
        return {"sigma": self.sigma, "support": self.support, "protocol": self.temporal}


def resolve_smoothing(smoothing: Smoothing | Mapping | str | None, protocol: str,
                      official_dataset: str, cls_head_trained: bool = True) -> Smoothing:
    """The `Smoothing` a Detector uses: "default" (the protocol's own), None (no smoothing:
    scores = raw scores), a `Smoothing`, or a dict of fields overriding the protocol's default.
    Validated here, once, so that bad options fail at construction and not mid-video.

    cls_head_trained: False for a model whose cls head holds no trained weights (official
    checkpoints, `AEDMAE.cls_head_trained`): the default's cls term d is then left out (d = 0,
    logged); a d > 0 asked for explicitly is kept, with a warning."""
    base = Smoothing.official(official_dataset) if protocol == "official" else Smoothing()
    if isinstance(smoothing, str):
        if smoothing != "default":
            raise ValueError(f"smoothing must be a Smoothing, a dict or None, got {smoothing!r}")
        sm = base
    elif smoothing is None:
        sm = replace(base, window=None, sigma=None, support=None, floor=None)
    elif isinstance(smoothing, Smoothing):
        sm = smoothing
    elif isinstance(smoothing, Mapping):
        sm = replace(base, **dict(smoothing))
    else:
        raise TypeError(f"smoothing must be a Smoothing, a dict or None, got "
                        f"{type(smoothing).__name__}")
    if sm.resolution not in ("pixel", "token"):
        raise ValueError(f"resolution must be 'pixel' or 'token', got {sm.resolution!r}")
    check_floor(sm.floor)
    if sm.d and not cls_head_trained and protocol == "paper":
        explicit = isinstance(smoothing, Smoothing) or (isinstance(smoothing, Mapping)
                                                        and "d" in smoothing)
        if explicit:
            warnings.warn(f"smoothing d = {sm.d:g} weights the cls head, which this model has "
                          "not trained (an official checkpoint): its term is noise",
                          stacklevel=3)
        else:
            logger.info("the model's cls head is untrained (official checkpoint): scoring "
                        "without its term (d = 0)")
            sm = replace(sm, d=0.0)
    if sm.window is not None:
        w = (sm.window,) * 3 if isinstance(sm.window, int) else tuple(sm.window)
        sm = replace(sm, window=w)
    smooth_scores(torch.zeros(1, 1, 1), window=sm.window, window_kind=sm.window_kind,
                  sigma=sm.sigma, support=sm.support, protocol=sm.temporal)
    return sm


# ----------------------------------------------------------------------------- maps


def anomaly_maps(target: torch.Tensor, teacher: torch.Tensor, student: torch.Tensor,
                 grid: tuple[int, int], patch: int, a: float = 1.0, b: float = 1.0,
                 c: float = 1.0, resolution: str = "pixel") -> torch.Tensor:
    """Per-pixel (or per-token) anomaly maps from patchified model outputs.

    Args:
        target: [B, L, p*p*Ct] with Ct = 4 (frame + anomaly map) or 3 (frame only), layout
            (h, w, p, p, C): token (i, j) holds its p x p pixels row-major, channel fastest.
        teacher, student: [B, L, p*p*4], same layout; channels 0..2 the BGR frame in [-1, 1],
            channel 3 the anomaly map in [-1, 1].
        grid: (h, w) tokens, L = h * w. patch: p.
        a, b, c: weights of the teacher error, the teacher/student error and the anomaly map.
        resolution: "pixel" -> [B, h*p, w*p] (localisation metrics, pictures);
            "token" -> [B, h, w], the mean over each token's pixels of the same quantity
            (enough when only frame scores are wanted; p*p times smaller).

    Returns: float32 maps, o = a*mean_c (target - teacher)^2 + b*mean_c (teacher - student)^2
    + c*clamp((y + 1) / 2, 0, 1), with y the teacher's channel 3.
    """
    if resolution not in ("pixel", "token"):
        raise ValueError(f"resolution must be 'pixel' or 'token', got {resolution!r}")
    h, w = int(grid[0]), int(grid[1])
    p = int(patch)
    if h < 1 or w < 1 or p < 1:
        raise ValueError(f"grid and patch must be positive, got grid={grid}, patch={patch}")
    for name, t in (("target", target), ("teacher", teacher), ("student", student)):
        if not isinstance(t, torch.Tensor) or t.dim() != 3:
            raise ValueError(f"{name} must be a 3-D tensor [B, L, p*p*C]")
        if t.shape[1] != h * w:
            raise ValueError(f"{name} has L={t.shape[1]} tokens, grid {h}x{w} needs {h * w}")
    if teacher.shape[2] != p * p * 4 or student.shape != teacher.shape:
        raise ValueError(f"teacher and student must both be [B, L, {p * p * 4}] "
                         f"(p={p}, 4 channels), got {tuple(teacher.shape)}, "
                         f"{tuple(student.shape)}")
    if target.shape[0] != teacher.shape[0] or target.shape[2] not in (p * p * 3, p * p * 4):
        raise ValueError(f"target must be [B, L, {p * p * 3}] or [B, L, {p * p * 4}], "
                         f"got {tuple(target.shape)}")
    bsz = teacher.shape[0]
    tgt = target.float().reshape(bsz, h * w, p * p, -1)[..., :3]
    tea = teacher.float().reshape(bsz, h * w, p * p, 4)
    stu = student.float().reshape(bsz, h * w, p * p, 4)
    e_rec = (tgt - tea[..., :3]).square().mean(-1)
    e_dis = (tea[..., :3] - stu[..., :3]).square().mean(-1)
    y = ((tea[..., 3] + 1.0) * 0.5).clamp(0.0, 1.0)
    o = a * e_rec + b * e_dis + c * y  # [B, L, p*p]
    if resolution == "token":
        return o.mean(-1).reshape(bsz, h, w)
    return o.reshape(bsz, h, w, p, p).permute(0, 1, 3, 2, 4).reshape(bsz, h * p, w * p)


def official_frame_scores(target: torch.Tensor, out: tuple, *,
                          dataset: str = "avenue") -> torch.Tensor:
    """The official implementation's frame scores (docs/design.md §2), one per frame [B].

    target: [B, L, p*p*4] patchified 4-channel target (docs/design.md §2 step 8).
    "avenue": L2 per token, teacher error + teacher/student error, mean over tokens.
    "shanghaitech": L1 per token, teacher error only (per-video min-max normalisation is
    applied afterwards over a whole video: see `minmax_normalize`).
    """
    teacher, student = out[0], out[1]
    if target.shape != teacher.shape:
        raise ValueError(f"target shape {tuple(target.shape)} != prediction {tuple(teacher.shape)}")
    if dataset == "avenue":
        err = ((target - teacher) ** 2).mean(-1) + ((teacher - student) ** 2).mean(-1)
    elif dataset == "shanghaitech":
        err = (target - teacher).abs().mean(-1)
    else:
        raise ValueError(f"unknown official protocol {dataset!r}: 'avenue' or 'shanghaitech'")
    return err.mean(-1)


def minmax_normalize(scores: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Min-max normalisation of one video's scores to [0, 1] (ShanghaiTech's official
    protocol). A constant video gives zeros; NaN anywhere gives NaN everywhere (numpy or
    torch in, the same type out)."""
    if isinstance(scores, torch.Tensor):
        lo, hi = scores.min(), scores.max()
        return (scores - lo) / (hi - lo).clamp_min(torch.finfo(scores.dtype).tiny)
    p = np.asarray(scores, dtype=np.float64)
    if p.size == 0:
        return p.copy()
    lo, hi = np.min(p), np.max(p)
    return (p - lo) / np.maximum(hi - lo, np.finfo(np.float64).tiny)


# ----------------------------------------------------------------------------- video scores


class ChunkFilter:
    """The 3D filter + frame max over a video fed in chunks of maps, with bounded memory.

    Frame f's filtered max needs maps f - rt .. f + rt (clamped to the video). Maps are
    buffered until `min_chunk` frames are complete, then filtered on the buffered volume,
    which starts rt frames before the first frame taken (or at the video's start): an
    artificial border there only touches frames that are not taken, so the result equals
    `smooth_scores` over the whole video. Memory: about min_chunk + batch + 2 rt maps.
    """

    def __init__(self, sm: Smoothing, protocol: str, min_chunk: int = 64):
        self.window = None if protocol == "official" else sm.window
        self.kind = sm.window_kind
        self.rt = 0 if self.window is None else int(self.window[0]) // 2
        self.min_chunk = int(min_chunk)
        self.buf: list[torch.Tensor] = []
        self.buf_start = 0  # frame index of the first buffered map
        self.n = 0  # frames pushed
        self.n_out = 0  # frames whose filtered max is known
        self.out: list[torch.Tensor] = []

    def _filter(self, vol: torch.Tensor) -> torch.Tensor:
        if self.window is None:
            return vol.float().amax(dim=(1, 2))
        # check=False: no host read per chunk; NaN/inf shows as NaN scores, tested once per
        # video by the caller (docs/design.md §7)
        return smooth_scores(vol, window=self.window, window_kind=self.kind, sigma=None,
                             check=False)

    def push(self, maps: torch.Tensor) -> None:
        self.buf.append(maps)
        self.n += maps.shape[0]
        if self.n - self.rt - self.n_out >= self.min_chunk:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        ready = self.n if final else self.n - self.rt
        if ready <= self.n_out:
            return
        vol = self.buf[0] if len(self.buf) == 1 else torch.cat(self.buf)
        start = self.buf_start
        m = self._filter(vol)
        self.out.append(m[self.n_out - start:ready - start])
        self.n_out = ready
        new_start = max(0, self.n_out - self.rt)
        self.buf = [vol[new_start - start:].clone()]
        self.buf_start = new_start

    def finish(self) -> torch.Tensor:
        self._flush(final=True)
        return torch.cat(self.out)


def check_floor(floor) -> float | None:
    """A score floor time constant as `Smoothing.floor` takes it: None, or a number of frames
    >= 1 (float); anything else is a ValueError naming it."""
    if floor is None:
        return None
    if isinstance(floor, bool) or not isinstance(floor, (int, float)) \
            or not math.isfinite(floor) or floor < 1:
        raise ValueError(f"floor must be None or a time constant of at least 1 frame, got "
                         f"{floor!r}")
    return float(floor)


def subtract_floor(scores: torch.Tensor | np.ndarray, tau: float,
                   floor: float | np.ndarray | None = None
                   ) -> tuple[torch.Tensor | np.ndarray, float | np.ndarray | None]:
    """Scores above their causal floor (docs/design.md §6, "The score floor").

    The floor b follows the scores' lower envelope: b_t = min(s_t, b_{t-1} + (s_t - b_{t-1}) /
    tau), so it drops to a lower score at once and rises towards higher ones with time
    constant tau frames; out_t = s_t - b_t >= 0. It starts at the first score (out_0 = 0)
    unless `floor` carries it over from the stream's earlier frames. A NaN score stays NaN and
    leaves the floor as it was. Only past frames count, so a stream fed in chunks gets the
    whole video's result.

    scores: float [T] (one video; torch or numpy) or numpy [S, T] (S streams side by side,
        NaN where a stream has no frame). floor: None, or for [S, T] a float64 [S] array
        (NaN: no floor yet).
    Returns (float32 scores of the same type and shape, the floor after the last frame:
    float or None for [T], float64 [S] for [S, T]).
    """
    tau = check_floor(tau)
    if tau is None:
        raise ValueError("subtract_floor needs a time constant")
    rate = 1.0 / tau
    is_torch = isinstance(scores, torch.Tensor)
    # a tensor is read once (one host sync per video; docs/design.md §7)
    v = (np.asarray(scores.detach().double().tolist(), dtype=np.float64) if is_torch
         else np.asarray(scores, dtype=np.float64))
    if v.ndim == 2:  # streams side by side: one vectorised update per frame
        b = (np.full(v.shape[0], np.nan) if floor is None
             else np.array(floor, dtype=np.float64).reshape(v.shape[0]))
        out = np.empty_like(v)
        for t in range(v.shape[1]):
            x = v[:, t]
            nb = np.where(np.isnan(b), x, np.minimum(x, b + (x - b) * rate))
            b = np.where(np.isnan(x), b, nb)
            out[:, t] = x - b
        return out.astype(np.float32), b
    if v.ndim != 1:
        raise ValueError(f"scores must be [T] or [S, T], got shape {tuple(v.shape)}")
    res = []
    bf = floor
    for x in v.tolist():  # the same rule on Python floats (a video: no numpy per frame)
        if x != x:
            res.append(x)
            continue
        bf = x if bf is None else min(x, bf + (x - bf) * rate)
        res.append(x - bf)
    arr = np.asarray(res, dtype=np.float32)
    if not is_torch:
        return arr, bf
    out = torch.from_numpy(arr)
    return (out if scores.device.type == "cpu"
            else out.to(scores.device, non_blocking=True)), bf


def finish_scores(filtered: torch.Tensor, smoothing: Smoothing, protocol: str,
                  official_dataset: str) -> torch.Tensor:
    """Frame scores of a whole video from its (3D-filtered) frame maxima: float [T] ->
    float32 [T]: the temporal Gaussian of `smoothing` (none when its sigma or support is
    None), then its score floor (`subtract_floor`, when `smoothing.floor` is set); the
    shanghaitech official rule then min-max normalises the filtered scores, as the official
    evaluation does (filter first, then min-max; docs/design.md §5)."""
    s = filtered.float()
    if smoothing.sigma is not None and smoothing.support is not None:
        s = smooth_scores(s.reshape(-1, 1, 1), window=None, sigma=smoothing.sigma,
                          support=smoothing.support, protocol=smoothing.temporal, check=False)
    if smoothing.floor is not None:
        s = subtract_floor(s, smoothing.floor)[0]
    if protocol == "official" and official_dataset == "shanghaitech":
        s = minmax_normalize(s)
    return s
