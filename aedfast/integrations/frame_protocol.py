"""aedfast's frame-level protocol over per-clip results: clips scored one target frame each (as
`aedfast.integrations.anomalib.AedMae` scores anomalib's clips) are grouped per video and put in
frame order, get the protocol's temporal smoothing (`aedfast.scoring.finish_scores`: the paper
protocol's temporal Gaussian, or the official filter and, ShanghaiTech rule, per-video min-max;
docs/design.md §5, §9) and then the micro / macro frame AUC (`aedfast.metrics.micro_macro_auc`).
The 3D filter of the paper protocol is not applied: it needs each video's whole volume of maps.
Needs nothing beyond aedfast itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..metrics import micro_macro_auc
from ..scoring import PROTOCOLS, Smoothing, finish_scores

__all__ = ["ProtocolScores", "protocol_scores"]


@dataclass
class ProtocolScores:
    """aedfast's frame-level protocol applied to per-clip scores (e.g. an anomalib run).

    videos: the videos, sorted. Per video (lists aligned with `videos`):
    frames: int64 [n] the frame indices scored (from `AedMae`: all but the first and last 3);
    raw_scores: float64 [n] the scores as the model returned them (``pred_score``);
    scores: float64 [n] after the protocol's temporal smoothing (and, official ShanghaiTech
        rule, the per-video min-max);
    labels: int64 [n] 0/1 frame labels, or None without ``gt_label``.
    micro_auc, macro_auc: docs/design.md §5 (NaN without labels).
    """

    videos: list
    frames: list[np.ndarray]
    raw_scores: list[np.ndarray]
    scores: list[np.ndarray]
    labels: list[np.ndarray] | None
    micro_auc: float
    macro_auc: float


def protocol_scores(videos: Sequence, frames: Sequence[int] | np.ndarray,
                    raw_scores: Sequence[float] | np.ndarray,
                    labels: Sequence[int] | np.ndarray | None = None, *,
                    protocol: str = "paper", dataset: str = "avenue",
                    smoothing: Smoothing | None = None) -> ProtocolScores:
    """aedfast's per-video temporal smoothing and frame AUC over per-clip results.

    videos: [N] a video name (or key) per clip; frames: [N] int target frame indices;
    raw_scores: [N] float the model's scores; labels: [N] 0/1 or None. Clips may come in any
    order; within a video the frames must be consecutive (frames_between_clips=1), each once.
    smoothing: the temporal fields (sigma, support, temporal) and the score floor used;
    default the protocol's own (paper: `Smoothing()`'s centred Gaussian and floor; official:
    docs/design.md §5, no floor).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if dataset not in ("avenue", "shanghaitech"):
        raise ValueError(f"dataset must be 'avenue' or 'shanghaitech', got {dataset!r}")
    sm = smoothing if smoothing is not None else (
        Smoothing.official(dataset) if protocol == "official" else Smoothing())
    vid = list(videos)
    fr = np.asarray(frames, dtype=np.int64).reshape(-1)
    raw = np.asarray(raw_scores, dtype=np.float64).reshape(-1)
    lab = None if labels is None else np.asarray(labels).reshape(-1).astype(np.int64)
    n = len(vid)
    if fr.size != n or raw.size != n or (lab is not None and lab.size != n):
        raise ValueError(f"{n} videos, {fr.size} frames, {raw.size} scores"
                         + ("" if lab is None else f", {lab.size} labels") + ": sizes differ")
    if n == 0:
        raise ValueError("no scored clips")
    groups: dict = {}
    for i, v in enumerate(vid):
        groups.setdefault(v, []).append(i)
    names = sorted(groups, key=str)
    out_f, out_raw, out_s, out_l = [], [], [], []
    for v in names:
        ii = np.asarray(groups[v])
        order = np.argsort(fr[ii], kind="stable")
        ii = ii[order]
        f = fr[ii]
        steps = np.diff(f)
        if (steps == 0).any():
            raise ValueError(f"video {v}: frame {int(f[1:][steps == 0][0])} scored twice")
        if (steps != 1).any():
            j = int(np.flatnonzero(steps != 1)[0])
            raise ValueError(f"video {v}: frames {int(f[j])} and {int(f[j + 1])} are not "
                             "consecutive; aedfast's temporal smoothing needs every frame "
                             "(frames_between_clips=1)")
        s = finish_scores(torch.from_numpy(raw[ii].astype(np.float32)), sm, protocol, dataset)
        out_f.append(f)
        out_raw.append(raw[ii])
        out_s.append(s.double().cpu().numpy())
        if lab is not None:
            out_l.append(lab[ii])
    if lab is None:
        micro = macro = float("nan")
    else:
        micro, macro = micro_macro_auc(out_s, out_l)
    return ProtocolScores(names, out_f, out_raw, out_s, out_l if lab is not None else None,
                          float(micro), float(macro))
