"""Evaluation metrics: frame-level AUC by the official protocol (docs/design.md §5), pixel-level
AUC, and a mask-derived variant of the region- and track-based detection criteria RBDC / TBDC
(not the paper's numbers: those are `aedfast.region_metrics`, docs/design.md §11).

Frame level
    `official_filter` is the official temporal Gaussian filter; `micro_macro_auc` the official
    micro / macro AUC (optionally applying the filter and the per-video min-max normalisation
    first, as the official inference does; `OFFICIAL_PROTOCOL` holds its per-data-set settings).

Pixel level
    `pixel_auc`: exact ROC AUC over all pixels of all frames held in memory (a deterministic
    random subsample when there are more than `max_pixels`). `PixelAUC`: the same AUC streamed
    frame by frame (docs/design.md §5), within `PixelAUC.error_bound()` of the exact value.

Mask-derived RBDC / TBDC ("mask_rbdc", "mask_tbdc"; regions and tracks from pixel masks):
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
    - default thresholds of `mask_rbdc_tbdc` (all maps in memory): 32 evenly spaced between the
      smallest and largest map value plus 32 quantiles of the map values dense near the top
      (1 - geomspace(1e-4, 1)); streamed (`MaskDetectionAccumulator` without thresholds, as in
      `evaluate`): the same rule on the first video (a strided subsample of <= 65536 values),
      then each video with values above every value seen so far adds 16 more by the same rule
      over its values above that maximum (up to 256 in all). Such an added threshold detects
      nothing in the videos already counted, so their counts at it (zero) are exact.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from .kernels.temporal import temporal_weights
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
    `aedfast.kernels.temporal.temporal_weights` (protocol "official", support R - 1)."""
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


def _videos(maps, masks) -> list[tuple]:
    """(maps, masks) of each video, maps and masks normalised by `_video_list`."""
    mv, kv = _video_list(maps, "maps"), _video_list(masks, "masks")
    if len(mv) != len(kv):
        raise ValueError(f"{len(mv)} videos of maps for {len(kv)} videos of masks")
    return list(zip(mv, kv))


def frame_pairs(maps, masks, size: tuple[int, int] | None = None, *, video: int = 0
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One video's frames: (float32 map [H, W] at the mask size, bool mask [H, W]).

    maps: [T, h, w] or a sequence of [h, w] frames; masks: [T, H, W] or a sequence of [H, W]
    frames (nonzero = anomalous), read one frame at a time (``video.masks`` stays lazy). Maps of
    another size are resized bilinearly; with `size` (H, W) both are resized to it first (masks
    nearest). `video` only numbers the error messages.
    """
    if len(maps) != len(masks):
        raise ValueError(f"video {video}: {len(maps)} maps for {len(masks)} masks")
    for t, (m, k) in enumerate(zip(maps, masks)):
        m = np.asarray(m, dtype=np.float32)
        k = np.asarray(k) != 0
        if m.ndim != 2 or k.ndim != 2:
            raise ValueError(f"video {video} frame {t}: maps and masks must be 2-D per frame, "
                             f"got {m.shape} and {k.shape}")
        if size is not None and k.shape != tuple(size):
            k = cv2.resize(k.astype(np.uint8), (size[1], size[0]),
                           interpolation=cv2.INTER_NEAREST) > 0
        if m.shape != k.shape:
            m = cv2.resize(m, (k.shape[1], k.shape[0]), interpolation=cv2.INTER_LINEAR)
        yield m, k


def pixel_auc(maps, masks, *, max_pixels: int = 20_000_000, seed: int = 0) -> float:
    """Exact pixel-level ROC AUC over all pixels of all frames, all held in memory (for data
    sets larger than memory, stream them through `PixelAUC`).

    maps: float anomaly maps, [T, H, W] or a list of per-video [T, H, W] (or per-video lists
    of [H, W] frames); masks: the ground truth in the same structure (nonzero = anomalous;
    e.g. `video.masks`). Maps of another size are resized to the masks' size. When there are
    more than `max_pixels` pixels, each pixel is kept with probability max_pixels / total, drawn
    from a generator seeded with `seed` (deterministic). NaN when only one class is present.
    """
    videos = _videos(maps, masks)
    n_frames = sum(len(k) for _, k in videos)
    rng = np.random.default_rng(seed)
    rate = 1.0
    vals, labs = [], []
    for v, (ms, ks) in enumerate(videos):
        for m, k in frame_pairs(ms, ks, video=v):
            if not vals:  # frame size known from the first mask
                rate = min(1.0, max_pixels / max(n_frames * k.size, 1))
            keep = rng.random(k.size) < rate if rate < 1.0 else slice(None)
            vals.append(m.reshape(-1)[keep])
            labs.append(k.reshape(-1)[keep])
    if not vals:
        raise ValueError("no frames")
    y = np.concatenate(labs)
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, np.concatenate(vals)))


class PixelAUC:
    """Streaming pixel-level ROC AUC (docs/design.md §5): a histogram of the pixels' values per
    class, in memory that does not grow with the number of pixels.

    Bins: d = map - ref in float32 (ref: the first frame's smallest finite value, so values
    bunched far from 0 still spread over many bins) by sign, exponent and the top `bits` bits
    of the mantissa: edges 2**-bits relative to |d| apart (2.4e-4 for bits = 12). Counts live
    in blocks, one per (sign, exponent) met: int64 [2**bits, 2], 64 KiB for bits = 12, <= 512.

    The binning is monotone, so pairs (anomalous pixel, normal pixel) in different bins are
    ordered exactly as by their values; pairs in one bin count 1/2, as ties do. The error
    against the exact AUC (`pixel_auc`, scikit-learn) is therefore at most `error_bound()` =
    (1/2) * sum over bins of positives * negatives / (P * N). Equal values (ties) are exact but
    count in that bound, so it overstates the error of maps with many repeated values.
    """

    def __init__(self, bits: int = 12) -> None:
        if not 1 <= int(bits) <= 23:
            raise ValueError(f"bits must be in [1, 23], got {bits}")
        self.bits = int(bits)
        self.ref: np.float32 | None = None
        self._blocks: dict[int, np.ndarray] = {}  # (sign, exponent) -> int64 [2**bits, 2]

    def add(self, maps, masks) -> None:
        """Add videos: maps and masks as for `pixel_auc` (one video or a list of videos)."""
        for v, (ms, ks) in enumerate(_videos(maps, masks)):
            for m, k in frame_pairs(ms, ks, video=v):
                self.add_frame(m, k)

    def add_frame(self, m: np.ndarray, k: np.ndarray) -> None:
        """Add one frame: float map [H, W] and its mask [H, W] of the same size (nonzero =
        anomalous). NaN in the map raises ValueError (as scikit-learn does)."""
        m, k = np.asarray(m, np.float32), np.asarray(k) != 0
        if m.shape != k.shape:
            raise ValueError(f"map {m.shape} and mask {k.shape} differ in size")
        if m.size == 0:
            return
        if np.isnan(m).any():
            raise ValueError("maps hold NaN")
        if self.ref is None:
            fin = m[np.isfinite(m)]
            self.ref = np.float32(fin.min() if fin.size else 0.0)
        d = (m - self.ref) + np.float32(0.0)  # -0.0 -> +0.0: one key for 0
        u = d.reshape(-1).view(np.uint32)
        key = np.where(u >= 0x80000000, ~u, u | np.uint32(0x80000000))  # sorts as d does
        key >>= 23 - self.bits
        block = key >> self.bits
        touched = np.flatnonzero(np.bincount(block, minlength=512))
        rank = np.zeros(512, np.int64)
        rank[touched] = np.arange(touched.size)
        idx = ((rank[block] << self.bits) | (key & ((1 << self.bits) - 1))) * 2 + k.reshape(-1)
        hist = np.bincount(idx, minlength=touched.size << (self.bits + 1))
        for b, h in zip(touched.tolist(), hist.reshape(touched.size, -1, 2)):
            if b in self._blocks:
                self._blocks[b] += h
            else:
                self._blocks[b] = h.copy()

    def _counts(self) -> tuple[np.ndarray, np.ndarray, float]:
        """(negatives, positives) per bin in value order (float64 [n_bins] each), P * N."""
        if not self._blocks:
            raise ValueError("no frames")
        h = np.concatenate([self._blocks[b] for b in sorted(self._blocks)], dtype=np.float64)
        return h[:, 0], h[:, 1], float(h[:, 0].sum()) * float(h[:, 1].sum())

    def result(self) -> float:
        """The pixel AUC of all frames added; NaN when only one class is present."""
        neg, pos, pn = self._counts()
        if pn == 0:
            return float("nan")
        below = np.cumsum(neg) - neg  # normal pixels in lower bins
        return float(pos @ (below + 0.5 * neg) / pn)

    def error_bound(self) -> float:
        """An upper bound on |result() - exact AUC| (the class docstring says why)."""
        neg, pos, pn = self._counts()
        return float("nan") if pn == 0 else float(0.5 * (pos @ neg) / pn)


# ----------------------------------------------------------------------------- RBDC / TBDC


def _sample(maps, max_samples: int) -> tuple[np.ndarray, float, float]:
    """(float32 [n]: the finite values of a strided subsample of at most ~max_samples values,
    the smallest and the largest finite value of all, +-inf when none), frame by frame."""
    mv = _video_list(maps, "maps")
    stride = max(1, sum(int(np.asarray(f).size) for v in mv for f in v) // max_samples)
    parts, lo, hi = [np.zeros(0, np.float32)], np.inf, -np.inf
    for f in (np.asarray(f, np.float32) for v in mv for f in v):
        parts.append(f.reshape(-1)[::stride])
        fin = np.isfinite(f)
        lo = min(lo, float(np.min(f, initial=np.inf, where=fin)))
        hi = max(hi, float(np.max(f, initial=-np.inf, where=fin)))
    sample = np.concatenate(parts)
    return sample[np.isfinite(sample)], lo, hi


def _levels(sample: np.ndarray, lo: float, hi: float, n: int) -> np.ndarray:
    """n/2 thresholds evenly spaced from lo up to (not including) hi and n - n/2 quantiles of
    the sample dense near its top (levels 1 - geomspace(1e-4, 1)); sorted, unique, float64."""
    lin = np.linspace(lo, hi, n // 2, endpoint=False)
    levels = 1.0 - np.geomspace(1e-4, 1.0, n - n // 2)
    q = np.quantile(sample, levels) if sample.size else np.zeros(0)
    return np.unique(np.concatenate([lin, q]))


def default_thresholds(maps, n: int = 64, max_samples: int = 2_000_000) -> np.ndarray:
    """Thresholds for `mask_rbdc_tbdc`: n/2 evenly spaced over the range of the finite map
    values and n/2 quantiles dense near the top (levels 1 - geomspace(1e-4, 1)) of a strided
    subsample of at most ~max_samples values. float64 [<= n], sorted."""
    sample, lo, hi = _sample(maps, max_samples)
    if sample.size == 0:
        raise ValueError("maps hold no finite values")
    return _levels(sample, lo, hi, n)


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


class MaskDetectionAccumulator:
    """Mask-derived RBDC / TBDC counts streamed per video (docs/design.md §5; definitions in the
    module docstring): per threshold the sums over frames of false positives, detected regions and
    detected tracks (tracks never span videos), int64 [K] each; memory O(K) plus one video's
    ground-truth regions.

    thresholds: fixed score thresholds; None: the rule of `default_thresholds` (n = 64) on
    `samples` values of the first video, extended upwards by later videos (16 per video,
    `max_thresholds` in all; module docstring). Feed whole videos with `add`, or frame by
    frame: `start_video(maps)`, `add_frame` per frame, `end_video()`. `add` evaluates at `size`.
    """

    def __init__(self, thresholds: Sequence[float] | None = None, *, overlap: float = 0.1,
                 track_fraction: float = 0.1, size: tuple[int, int] | None = None,
                 max_thresholds: int = 256, samples: int = 65536) -> None:
        if not 0 < overlap <= 1:
            raise ValueError(f"overlap must be in (0, 1], got {overlap}")
        self.overlap, self.track_fraction, self.size = overlap, track_fraction, size
        self.auto, self.max_thresholds, self.samples = thresholds is None, max_thresholds, samples
        thr = np.zeros(0) if thresholds is None else np.asarray(thresholds, np.float64).ravel()
        if thresholds is not None and thr.size == 0:
            raise ValueError("no thresholds")
        self.thresholds = np.zeros(0)
        self.fp = self.det_regions = self.det_tracks = np.zeros(0, np.int64)
        self.n_frames = self.n_regions = self.n_tracks = 0
        self._extend(thr)
        self.top = -np.inf  # largest map value met so far
        self._video: tuple[_UnionFind, list[np.ndarray]] | None = None
        self._prev: tuple[np.ndarray, list[int]] | None = None  # last frame's GT labels, ids

    def _extend(self, new: np.ndarray) -> None:
        """Append thresholds above every value counted so far: nothing detected there yet."""
        zero = np.zeros(new.size, np.int64)
        self.thresholds = np.concatenate([self.thresholds, new])
        self.fp = np.concatenate([self.fp, zero])
        self.det_regions = np.concatenate([self.det_regions, zero])
        hit_none = self.track_fraction <= 0  # 0 of a track's regions detected is enough
        self.det_tracks = np.concatenate([self.det_tracks, zero + hit_none * self.n_tracks])

    def add(self, maps, masks) -> None:
        """Add videos: maps and masks as for `mask_rbdc_tbdc` (one video or a list of videos)."""
        for v, (ms, ks) in enumerate(_videos(maps, masks)):
            self.start_video(ms)
            for m, k in frame_pairs(ms, ks, self.size, video=v):
                self.add_frame(m, k)
            self.end_video()

    def start_video(self, maps) -> None:
        """Begin a video; maps: its [T, h, w] maps (or frames), read only to choose thresholds
        when none were given."""
        if self.auto and self.thresholds.size == 0:
            self._extend(default_thresholds([maps], max_samples=self.samples))
        elif self.auto and np.isfinite(self.top) and self.thresholds.size < self.max_thresholds:
            sample, _, hi = _sample([maps], self.samples)
            if hi > self.top:
                new = _levels(sample[sample > self.top], self.top, hi, 16)
                new = new[new > self.thresholds[-1]]
                self._extend(new[: self.max_thresholds - self.thresholds.size])
        self._video, self._prev = (_UnionFind(), []), None

    def add_frame(self, m: np.ndarray, k: np.ndarray) -> None:
        """Add one frame of the current video: float32 map [H, W], bool mask [H, W]."""
        if self._video is None:
            raise RuntimeError("start_video() first")
        uf, rows = self._video
        thr, overlap = self.thresholds, self.overlap
        self.n_frames += 1
        m_max = float(np.max(m, initial=-np.inf, where=~np.isnan(m)))
        self.top = max(self.top, m_max)
        if k.any():
            n_gt, g = cv2.connectedComponents(k.astype(np.uint8), connectivity=8)
            ids = [uf.add() for _ in range(n_gt - 1)]
            if self._prev is not None:
                # link overlapping GT regions of consecutive frames into tracks
                both = (g > 0) & (self._prev[0] > 0)
                if both.any():
                    pairs = np.unique(np.stack([g[both], self._prev[0][both]]), axis=1)
                    for a, b in pairs.T:
                        uf.union(ids[a - 1], self._prev[1][b - 1])
            gpix = g > 0
            g_in = g[gpix]
            g_area = np.bincount(g_in, minlength=n_gt)[1:]
            self._prev = (g, ids)
        else:
            n_gt, self._prev = 1, None
        det = np.zeros((n_gt - 1, thr.size), bool)
        for j, t in enumerate(thr):
            if t >= m_max:  # nothing detected at this or any higher threshold
                continue
            binary = (m > t).astype(np.uint8)
            if not binary.any():
                continue
            n_d, lab, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
            if n_gt == 1:
                self.fp[j] += n_d - 1
                continue
            d_area = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
            inter = np.bincount(lab[gpix].astype(np.int64) * n_gt + g_in,
                                minlength=n_d * n_gt).reshape(n_d, n_gt)[1:, 1:]
            iou = inter / (d_area[:, None] + g_area[None, :] - inter)
            hit = iou >= overlap
            self.fp[j] += int((~hit.any(axis=1)).sum())
            det[:, j] = hit.any(axis=0)
        if n_gt > 1:
            rows.append(det)

    def end_video(self) -> None:
        """Fold the video's regions and tracks into the sums and drop them."""
        uf, rows = self._video or (None, [])
        self._video = self._prev = None
        if uf is None or not rows:
            return
        dets = np.concatenate(rows)  # bool [regions of this video, K]
        roots = np.array([uf.find(i) for i in range(dets.shape[0])])
        _, track = np.unique(roots, return_inverse=True)
        n_tracks = int(track.max()) + 1
        hits = np.zeros((n_tracks, dets.shape[1]))
        np.add.at(hits, track, dets.astype(np.float64))
        sizes = np.bincount(track, minlength=n_tracks)[:, None]
        self.det_regions += dets.sum(axis=0)
        self.det_tracks += (hits / sizes >= self.track_fraction).sum(axis=0)
        self.n_regions += dets.shape[0]
        self.n_tracks += n_tracks

    def curves(self) -> dict[str, np.ndarray]:
        """The dict `mask_detection_curves` returns."""
        if self.n_frames == 0:
            raise ValueError("no frames")
        nan = np.full(self.thresholds.size, np.nan)
        return {"thresholds": self.thresholds.copy(), "fp_per_frame": self.fp / self.n_frames,
                "rbdr": self.det_regions / self.n_regions if self.n_regions else nan,
                "tbdr": self.det_tracks / self.n_tracks if self.n_tracks else nan,
                "n_regions": np.asarray(self.n_regions), "n_tracks": np.asarray(self.n_tracks),
                "n_frames": np.asarray(self.n_frames)}

    def result(self, max_fp: float = 1.0) -> tuple[float, float]:
        """(RBDC, TBDC) of everything added, FP/frame integrated over [0, max_fp]."""
        c = self.curves()
        return curve_area(c["fp_per_frame"], c["rbdr"], max_fp), curve_area(
            c["fp_per_frame"], c["tbdr"], max_fp)


def mask_detection_curves(maps_per_video, masks_per_video, *,
                          thresholds: Sequence[float] | None = None, overlap: float = 0.1,
                          track_fraction: float = 0.1, size: tuple[int, int] | None = None
                          ) -> dict[str, np.ndarray]:
    """Per threshold: false positives per frame, region and track detection rates.

    The cost is one connected-component labelling per frame and threshold at the masks' size
    (or at `size` = (H, W), to which maps and masks are resized first: a smaller size is faster).
    Default thresholds: `default_thresholds` of all maps; a `MaskDetectionAccumulator` works.

    Returns a dict of float64 arrays [K]: "thresholds", "fp_per_frame", "rbdr", "tbdr", and the
    counts "n_regions", "n_tracks", "n_frames" (0-d). Definitions in the module docstring.
    """
    thr = default_thresholds(maps_per_video) if thresholds is None else thresholds
    acc = MaskDetectionAccumulator(thr, overlap=overlap, track_fraction=track_fraction, size=size)
    acc.add(maps_per_video, masks_per_video)
    return acc.curves()


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


def mask_rbdc_tbdc(maps_per_video, masks_per_video, *, thresholds: Sequence[float] | None = None,
                   overlap: float = 0.1, track_fraction: float = 0.1, max_fp: float = 1.0,
                   size: tuple[int, int] | None = None) -> tuple[float, float]:
    """Mask-derived (RBDC, TBDC), not the paper's (`aedfast.region_metrics.rbdc_tbdc` is).

    maps_per_video: per video float anomaly maps [T, H, W] (or a list of [H, W]); masks_per_video:
    per video ground-truth masks in the same structure (nonzero = anomalous; e.g.
    `video.masks`). `thresholds`: score thresholds (default: `default_thresholds`); `overlap`:
    the IoU a detection needs (0.1); `track_fraction`: the share of a track's regions that must
    be detected (0.1); `max_fp`: the FP/frame range integrated ([0, 1]); `size`: evaluate at
    this (H, W) instead of the masks' size (faster when smaller). Both lie in [0, 1];
    NaN when the ground truth has no anomalous region. See the module docstring for details.
    """
    c = mask_detection_curves(maps_per_video, masks_per_video, thresholds=thresholds,
                              overlap=overlap, track_fraction=track_fraction, size=size)
    return (curve_area(c["fp_per_frame"], c["rbdr"], max_fp),
            curve_area(c["fp_per_frame"], c["tbdr"], max_fp))


__all__ = [
    "OFFICIAL_PROTOCOL", "curve_area", "default_thresholds", "mask_detection_curves",
    "MaskDetectionAccumulator", "PixelAUC", "frame_pairs", "micro_macro_auc", "official_auc",
    "official_filter", "official_kernel", "official_postprocess", "pixel_auc", "mask_rbdc_tbdc",
]
