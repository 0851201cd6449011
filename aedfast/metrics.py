"""Evaluation metrics: frame-level AUC by the official protocol (docs/design.md §5), pixel-level
AUC, and
the region- and track-based detection criteria RBDC / TBDC (Ramachandra & Jones, "Street Scene",
WACV 2020).

Frame level
    `official_filter` is the official temporal Gaussian filter; `micro_macro_auc` the official
    micro / macro AUC (optionally applying the filter and the per-video min-max normalisation
    first, as the official inference does; `OFFICIAL_PROTOCOL` holds its per-data-set settings).

Pixel level
    `pixel_auc`: ROC AUC over all pixels of all frames (a deterministic random subsample when
    there are more than `max_pixels`).

RBDC / TBDC, implementation choices (the paper leaves some open):
    - detected regions: 8-connected components of ``map > threshold`` in each frame;
      ground-truth regions: 8-connected components of each frame's mask;
    - a detected region is a true positive if its IoU with some ground-truth region of the same
      frame is >= `overlap` (0.1); every other detected region is a false positive;
    - a ground-truth region is detected if some detected region has IoU >= `overlap` with it;
      RBDR = detected GT regions / all GT regions;
    - ground-truth tracks: GT regions of consecutive frames of a video that share at least one
      pixel are linked (union-find), a track is a connected set of linked regions; a track is
      detected if at least `track_fraction` (0.1) of its regions are detected; TBDR = detected
      tracks / all tracks;
    - false positives per frame = all false-positive regions / all frames (of all videos);
    - the curve: the operating points (FP/frame, detection rate) of the thresholds, plus (0, 0)
      for a threshold above every score, sorted by FP/frame, with the rate made non-decreasing
      (the best rate reachable with at most that many FP/frame: at low thresholds regions
      merge and detections can drop while FPs fall, which would otherwise fold the curve back);
      integrated with the trapezoid rule over FP/frame in [0, `max_fp`] (linear interpolation
      at `max_fp`; beyond the largest FP/frame reached the curve stays at its last rate) and
      divided by `max_fp`, so RBDC and TBDC lie in [0, 1];
    - maps whose size differs from the masks are resized to the mask size (bilinear);
    - default thresholds: 32 evenly spaced between the smallest and largest map value plus 32
      quantiles of the map values dense near the top (1 - geomspace(1e-4, 1)).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from .kernels.smoothing import temporal_weights
from .scoring import minmax_normalize

# The official inference settings per data set: filter range R, mu (sigma) S, per-video min-max
# normalisation after filtering.
OFFICIAL_PROTOCOL: dict[str, dict] = {
    "avenue": {"R": 38, "S": 11.0, "normalize": False},
    "shanghaitech": {"R": 900, "S": 282.0, "normalize": True},
}


def official_kernel(R: int, S: float) -> np.ndarray:
    """The official Gaussian kernel g over support 1..R-1, centred on the support's element at
    index len//2 - 1 (one sample left of centre). float64 [R - 1]. Its one formula lives in
    `aedfast.kernels.smoothing.temporal_weights` (protocol "official", support R - 1)."""
    if int(R) != R or R < 2:
        raise ValueError(f"filter range R must be an integer >= 2, got {R}")
    if not S > 0:
        raise ValueError(f"filter mu (sigma) S must be > 0, got {S}")
    return np.asarray(temporal_weights(int(R) - 1, float(S), "official"), dtype=np.float64)


def official_filter(scores: np.ndarray, R: int, S: float) -> np.ndarray:
    """The official temporal filter "filt(scores, range R, mu S)" (docs/design.md §5).

    scores: [T] frame scores. Zero-pads len(g)//2 samples on both sides and correlates with g in
    'valid' mode. Returns float64 [T]. For even R (the official settings 38 and 900) that is the
    official output exactly; for odd R the official code returns T + 1 samples, of which the
    first T are returned here.
    """
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"scores must be 1-D [T], got shape {x.shape}")
    g = official_kernel(R, S)
    if x.size == 0:
        return x.copy()
    pad = len(g) // 2
    xp = np.concatenate((np.zeros(pad), x, np.zeros(pad)))
    if xp.size < g.size:  # T == 0 handled above; T >= 1 always covers g
        raise ValueError("scores too short for the filter")
    return np.correlate(xp, g, "valid")[: x.size]


def _as_videos(name: str, seqs: Sequence) -> list[np.ndarray]:
    if isinstance(seqs, np.ndarray) and seqs.ndim == 1 and seqs.dtype != object:
        raise TypeError(f"{name} must be a list of per-video arrays, not one flat array")
    out = []
    for i, s in enumerate(seqs):
        a = np.asarray(s, dtype=np.float64).reshape(-1) if np.ndim(s) <= 1 else None
        if a is None:
            raise ValueError(f"{name}[{i}] must be 1-D, got shape {np.shape(s)}")
        out.append(a)
    return out


def official_postprocess(scores: np.ndarray, R: int | None, S: float | None,
                         normalize: bool = False) -> np.ndarray:
    """The official per-video post-processing of frame scores: filter (if R is given), then
    min-max normalise (if `normalize`), NaN -> 0. float64 [T]."""
    p = np.asarray(scores, dtype=np.float64).reshape(-1)
    if R is not None:
        p = official_filter(p, R, S if S is not None else 1.0)
    if normalize and p.size:
        p = minmax_normalize(p)
    return np.nan_to_num(p, nan=0.0)


def micro_macro_auc(scores_per_video: Sequence[np.ndarray], labels_per_video: Sequence[np.ndarray],
                    *, smooth: tuple[int, float] | None = None, normalize: bool = False,
                    ) -> tuple[float, float]:
    """Frame-level (micro AUC, macro AUC) by the official protocol (docs/design.md §5).

    scores_per_video: per video a [T] array of frame scores; labels_per_video: per video [T]
    0/1 labels. `smooth=(R, S)` applies `official_filter` to each video's scores first and
    `normalize` min-max normalises them per video afterwards (the official inference does both
    for ShanghaiTech, only the filter for Avenue; see OFFICIAL_PROTOCOL); NaN scores count as 0.
    Macro: per video, labels and scores each get a 0 put in front and a 1 appended, then ROC
    AUC; the mean over videos ignoring NaN. Micro: ROC AUC of all (smoothed) frame scores
    concatenated, without that padding; NaN when all frames have the same label (the official
    code would report 1.0 there).
    """
    scores = _as_videos("scores_per_video", scores_per_video)
    labels = _as_videos("labels_per_video", labels_per_video)
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} score arrays for {len(labels)} label arrays")
    if not scores:
        raise ValueError("no videos")
    R, S = smooth if smooth is not None else (None, None)
    aucs, all_p, all_l = [], [], []
    for i, (s, lab) in enumerate(zip(scores, labels)):
        if s.shape != lab.shape:
            raise ValueError(f"video {i}: {s.size} scores for {lab.size} labels")
        if lab.size and not np.isin(lab, (0, 1)).all():
            raise ValueError(f"video {i}: labels must be 0/1")
        p = official_postprocess(s, R, S, normalize)
        all_p.append(p)
        all_l.append(lab)
        lp = np.concatenate(([0.0], lab, [1.0]))
        pp = np.concatenate(([0.0], p, [1.0]))
        aucs.append(roc_auc_score(lp, pp))
    macro = float(np.nanmean(aucs)) if not np.all(np.isnan(aucs)) else float("nan")
    lab_all, p_all = np.concatenate(all_l), np.concatenate(all_p)
    if np.unique(lab_all).size < 2:
        micro = float("nan")
    else:
        micro = float(roc_auc_score(lab_all, p_all))
    return micro, macro


def official_auc(scores_per_video: Sequence[np.ndarray], labels_per_video: Sequence[np.ndarray],
                 dataset: str) -> tuple[float, float]:
    """`micro_macro_auc` with the official settings for `dataset` ("avenue", "shanghaitech")."""
    key = {"shanghai": "shanghaitech"}.get(dataset.lower(), dataset.lower())
    if key not in OFFICIAL_PROTOCOL:
        raise ValueError(f"no official protocol for {dataset!r}; one of {list(OFFICIAL_PROTOCOL)}")
    p = OFFICIAL_PROTOCOL[key]
    return micro_macro_auc(scores_per_video, labels_per_video, smooth=(p["R"], p["S"]),
                           normalize=p["normalize"])


# ----------------------------------------------------------------------------- pixel level


def _video_list(x, name: str) -> list:
    """Normalise maps/masks to a list of videos, each a sequence of 2-D frames."""
    if isinstance(x, np.ndarray):
        if x.ndim == 2:
            return [x[None]]
        if x.ndim == 3:
            return [x]
        raise ValueError(f"{name}: expected [T, H, W] or a list of per-video [T, H, W], got "
                         f"shape {x.shape}")
    out = list(x)
    if out and isinstance(out[0], np.ndarray) and out[0].ndim == 2:
        return [out]  # a list of frames of one video
    return out


def _pairs(maps, masks, size: tuple[int, int] | None = None
           ) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """(video index, frame index, float32 map at mask size, bool mask) for every frame; with
    `size` (H, W) both are resized to it first (maps bilinear, masks nearest)."""
    mv, kv = _video_list(maps, "maps"), _video_list(masks, "masks")
    if len(mv) != len(kv):
        raise ValueError(f"{len(mv)} videos of maps for {len(kv)} videos of masks")
    for v, (ms, ks) in enumerate(zip(mv, kv)):
        if len(ms) != len(ks):
            raise ValueError(f"video {v}: {len(ms)} maps for {len(ks)} masks")
        for t, (m, k) in enumerate(zip(ms, ks)):
            m = np.asarray(m, dtype=np.float32)
            k = np.asarray(k) != 0
            if m.ndim != 2 or k.ndim != 2:
                raise ValueError(f"video {v} frame {t}: maps and masks must be 2-D per frame, "
                                 f"got {m.shape} and {k.shape}")
            if size is not None and k.shape != tuple(size):
                k = cv2.resize(k.astype(np.uint8), (size[1], size[0]),
                               interpolation=cv2.INTER_NEAREST) > 0
            if m.shape != k.shape:
                m = cv2.resize(m, (k.shape[1], k.shape[0]), interpolation=cv2.INTER_LINEAR)
            yield v, t, m, k


def _n_frames(x) -> int:
    return sum(len(v) for v in _video_list(x, "masks"))


def pixel_auc(maps, masks, *, max_pixels: int = 20_000_000, seed: int = 0) -> float:
    """Pixel-level ROC AUC over all pixels of all frames.

    maps: float anomaly maps, [T, H, W] or a list of per-video [T, H, W] (or per-video lists
    of [H, W] frames); masks: the ground truth in the same structure (nonzero = anomalous;
    e.g. `video.masks`). Maps of another size are resized to the masks' size. When there are
    more than `max_pixels` pixels, each pixel is kept with probability max_pixels / total, drawn
    from a generator seeded with `seed` (deterministic). NaN when only one class is present.
    """
    n_frames = _n_frames(masks)
    rng = np.random.default_rng(seed)
    rate = 1.0
    vals, labs = [], []
    for _, _, m, k in _pairs(maps, masks):
        if not vals:  # frame size known from the first mask
            rate = min(1.0, max_pixels / max(n_frames * k.size, 1))
        if rate < 1.0:
            keep = rng.random(k.size) < rate
            vals.append(m.reshape(-1)[keep])
            labs.append(k.reshape(-1)[keep])
        else:
            vals.append(m.reshape(-1))
            labs.append(k.reshape(-1))
    if not vals:
        raise ValueError("no frames")
    y = np.concatenate(labs)
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, np.concatenate(vals)))


# ----------------------------------------------------------------------------- RBDC / TBDC


def default_thresholds(maps, n: int = 64, max_samples: int = 2_000_000) -> np.ndarray:
    """Thresholds for `rbdc_tbdc`: n/2 evenly spaced over the map values' range and n/2
    quantiles dense near the top (levels 1 - geomspace(1e-4, 1)), from a strided subsample."""
    mv = _video_list(maps, "maps")
    total = sum(int(np.asarray(f).size) for v in mv for f in v)
    stride = max(1, total // max_samples)
    parts = [np.asarray(f, np.float32).reshape(-1)[::stride] for v in mv for f in v]
    sample = np.concatenate(parts) if parts else np.zeros(1, np.float32)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        raise ValueError("maps hold no finite values")
    lo, hi = float(sample.min()), float(sample.max())
    lin = np.linspace(lo, hi, n // 2, endpoint=False)
    q = np.quantile(sample, 1.0 - np.geomspace(1e-4, 1.0, n - n // 2))
    return np.unique(np.concatenate([lin, q]))


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []

    def add(self) -> int:
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, a: int) -> int:
        p = self.parent
        while p[a] != a:
            p[a] = p[p[a]]
            a = p[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def detection_curves(maps_per_video, masks_per_video, *, thresholds: Sequence[float] | None = None,
                     overlap: float = 0.1, track_fraction: float = 0.1,
                     size: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    """Per threshold: false positives per frame, region and track detection rates.

    The cost is one connected-component labelling per frame and threshold at the masks' size
    (or at `size` = (H, W), to which maps and masks are resized first: a smaller size is faster).

    Returns a dict of float64 arrays [K]: "thresholds", "fp_per_frame", "rbdr", "tbdr", and the
    counts "n_regions", "n_tracks", "n_frames" (0-d). Definitions in the module docstring.
    """
    thr = (default_thresholds(maps_per_video) if thresholds is None
           else np.asarray(thresholds, np.float64).reshape(-1))
    if thr.size == 0:
        raise ValueError("no thresholds")
    if not 0 < overlap <= 1:
        raise ValueError(f"overlap must be in (0, 1], got {overlap}")
    K = thr.size
    fp = np.zeros(K, np.int64)
    detected_rows: list[np.ndarray] = []  # per GT region: bool [K]
    uf = _UnionFind()
    n_frames = 0
    prev: tuple[int, np.ndarray, list[int]] | None = None  # (video, labels, region ids)
    for v, _t, m, k in _pairs(maps_per_video, masks_per_video, size):
        n_frames += 1
        m_max = float(m.max())
        ids: list[int] = []
        if k.any():
            n_gt, g = cv2.connectedComponents(k.astype(np.uint8), connectivity=8)
            ids = [uf.add() for _ in range(n_gt - 1)]
            if prev is not None and prev[0] == v and prev[2]:
                # link overlapping GT regions of consecutive frames into tracks
                both = (g > 0) & (prev[1] > 0)
                if both.any():
                    pairs = np.unique(np.stack([g[both], prev[1][both]]), axis=1)
                    for a, b in pairs.T:
                        uf.union(ids[a - 1], prev[2][b - 1])
            gpix = g > 0
            g_in = g[gpix]
            g_area = np.bincount(g_in, minlength=n_gt)[1:]
        else:
            n_gt, g = 1, None
        prev = (v, g, ids) if g is not None else None
        det = np.zeros((n_gt - 1, K), bool)
        for j, t in enumerate(thr):
            if t >= m_max:  # nothing detected at this or any higher threshold
                continue
            binary = (m > t).astype(np.uint8)
            if not binary.any():
                continue
            n_d, lab, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
            if n_gt == 1:
                fp[j] += n_d - 1
                continue
            d_area = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
            inter = np.bincount(lab[gpix].astype(np.int64) * n_gt + g_in,
                                minlength=n_d * n_gt).reshape(n_d, n_gt)[1:, 1:]
            iou = inter / (d_area[:, None] + g_area[None, :] - inter)
            hit = iou >= overlap
            fp[j] += int((~hit.any(axis=1)).sum())
            det[:, j] = hit.any(axis=0)
        if n_gt > 1:
            detected_rows.append(det)
    if n_frames == 0:
        raise ValueError("no frames")
    dets = np.concatenate(detected_rows) if detected_rows else np.zeros((0, K), bool)
    n_reg = dets.shape[0]
    rbdr = dets.mean(axis=0) if n_reg else np.full(K, np.nan)
    if n_reg:
        roots = np.array([uf.find(i) for i in range(n_reg)])
        _, track = np.unique(roots, return_inverse=True)
        n_tracks = int(track.max()) + 1
        hits = np.zeros((n_tracks, K))
        np.add.at(hits, track, dets.astype(np.float64))
        sizes = np.bincount(track, minlength=n_tracks)[:, None]
        tbdr = (hits / sizes >= track_fraction).mean(axis=0)
    else:
        n_tracks, tbdr = 0, np.full(K, np.nan)
    return {"thresholds": thr, "fp_per_frame": fp / n_frames, "rbdr": rbdr, "tbdr": tbdr,
            "n_regions": np.asarray(n_reg), "n_tracks": np.asarray(n_tracks),
            "n_frames": np.asarray(n_frames)}


def curve_area(fp_per_frame: np.ndarray, rate: np.ndarray, max_fp: float = 1.0) -> float:
    """Area under the (FP/frame, rate) curve for FP/frame in [0, max_fp], divided by max_fp.

    The point (0, 0) is added; points are sorted by FP/frame (then rate) and the rate is made
    non-decreasing (running maximum); the curve is linear between points, interpolated at
    max_fp, and constant after the last point."""
    x = np.concatenate(([0.0], np.asarray(fp_per_frame, np.float64)))
    y = np.concatenate(([0.0], np.asarray(rate, np.float64)))
    if np.isnan(y).any():
        return float("nan")
    order = np.lexsort((y, x))
    x, y = x[order], np.maximum.accumulate(y[order])
    if x[-1] < max_fp:
        x, y = np.append(x, max_fp), np.append(y, y[-1])
    else:
        i = int(np.searchsorted(x, max_fp, side="right"))  # x[i-1] <= max_fp < x[i]
        if x[i - 1] < max_fp:
            y_at = y[i - 1] + (y[i] - y[i - 1]) * (max_fp - x[i - 1]) / (x[i] - x[i - 1])
            x, y = np.append(x[:i], max_fp), np.append(y[:i], y_at)
        else:
            x, y = x[:i], y[:i]
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0) / max_fp)


def rbdc_tbdc(maps_per_video, masks_per_video, *, thresholds: Sequence[float] | None = None,
              overlap: float = 0.1, track_fraction: float = 0.1, max_fp: float = 1.0,
              size: tuple[int, int] | None = None) -> tuple[float, float]:
    """(RBDC, TBDC): region- and track-based detection criteria (Ramachandra & Jones, 2020).

    maps_per_video: per video float anomaly maps [T, H, W] (or a list of [H, W]); masks_per_video:
    per video ground-truth masks in the same structure (nonzero = anomalous; e.g.
    `video.masks`). `thresholds`: score thresholds (default: `default_thresholds`); `overlap`:
    the IoU a detection needs (0.1); `track_fraction`: the share of a track's regions that must
    be detected (0.1); `max_fp`: the FP/frame range integrated ([0, 1]); `size`: evaluate at
    this (H, W) instead of the masks' size (faster when smaller). Both lie in [0, 1];
    NaN when the ground truth has no anomalous region. See the module docstring for details.
    """
    c = detection_curves(maps_per_video, masks_per_video, thresholds=thresholds,
                         overlap=overlap, track_fraction=track_fraction, size=size)
    return (curve_area(c["fp_per_frame"], c["rbdr"], max_fp),
            curve_area(c["fp_per_frame"], c["tbdr"], max_fp))


__all__ = [
    "OFFICIAL_PROTOCOL", "curve_area", "default_thresholds", "detection_curves",
    "micro_macro_auc", "official_auc", "official_filter", "official_kernel", "pixel_auc",
    "official_postprocess", "rbdc_tbdc",
]
