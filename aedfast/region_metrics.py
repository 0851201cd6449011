"""RBDC and TBDC as Ramachandra and Jones define them ("Street Scene", WACV 2020), on boxes:
ground truth as box tracks, detections as scored boxes (docs/design.md §11).

Tables (float64 numpy arrays, one row per box; coordinates are inclusive pixel indices, a box
covers (x_max - x_min + 1) x (y_max - y_min + 1) pixels; frames are 0-based):

- ground-truth tracks of one video: [N, 6] rows (track_id, frame, x_min, y_min, x_max, y_max);
  a track is the set of rows with one track_id;
- detections of one video: [M, 6] rows (frame, x_min, y_min, x_max, y_max, score).

`rbdc_tbdc(tracks, detections, n_frames)` takes {video: table} dicts; `detection_curves`
gives the whole curves. A detection is a true positive when its IoU with a ground-truth region
of its frame is >= beta (0.1), else a false positive; a region is detected by any true-positive
detection at IoU >= beta; a track is detected when >= alpha (0.1) of its regions are. The score
threshold sweeps every distinct detection score; RBDC / TBDC are the areas under the detection
rate against false positives per frame for FP/frame in [0, 1] (§11 says exactly how).

Import: `read_box_tracks` reads the per-video track files in the two layouts in use
(comma-separated ``track_id, frame, x_min, y_min, x_max, y_max`` with 0-based frames, as the
ShanghaiTech track annotations of Georgescu et al. ship; or Street Scene's whitespace-separated
``frame_file track_id center_x center_y width height`` with 1-based frames, the layout of the
Avenue / UCSD track annotations of Ramachandra and Jones), `read_detections` /
`write_detections` the per-video detection files (``frame, x_min, y_min, x_max, y_max,
score``) of the evaluation code commonly used with them. `detections_from_maps` turns pixel
anomaly maps into detections: connected regions above a threshold, scored by their maximum.

`aedfast.metrics.mask_rbdc_tbdc` is another, mask-derived variant (regions and tracks taken
from pixel masks, thresholds swept on the maps): not the paper's numbers.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from .checkpoint import atomic_write
from .data.errors import DatasetError

ALPHA = 0.1  # share of a track's regions to detect
BETA = 0.1  # IoU a detection needs with a ground-truth region
LAYOUTS = ("aed", "streetscene")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` [N, 4] with every box of `b` [M, 4] (x_min, y_min, x_max, y_max,
    inclusive pixel coordinates). float64 [N, M]."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


# ----------------------------------------------------------------------------- files


def _video_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DatasetError(f"{path}: no such file or folder")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".txt"
                   and not p.name.startswith(".") and "readme" not in p.name.lower())
    if not files:
        raise DatasetError(f"{path}: expected one .txt file per video, found none")
    return files


def _rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of the non-empty lines; fields split on commas and whitespace."""
    out = []
    for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        f = [x for x in re.split(r"[,\s]+", line.strip()) if x]
        if f:
            out.append((i, f))
    return out


def _layout(path: Path, rows: list[tuple[int, list[str]]]) -> str:
    if not rows:
        return "aed"
    first = rows[0][1]
    text = path.read_text(errors="replace")
    if "," in text.splitlines()[rows[0][0] - 1]:
        return "aed"
    if not re.fullmatch(r"-?\d+(\.\d*)?", first[0]):
        return "streetscene"
    raise DatasetError(f"{path}: cannot tell the track layout (whitespace-separated numbers); "
                       f"pass layout= one of {LAYOUTS}")


def _number(path: Path, line: int, tok: str) -> float:
    try:
        return float(tok)
    except ValueError:
        raise DatasetError(f"{path}, line {line}: {tok!r} is not a number") from None


def read_track_file(path: str | os.PathLike, *, layout: str = "auto",
                    frame_size: tuple[int, int] | None = None) -> np.ndarray:
    """One video's ground-truth tracks -> float64 [N, 6] (track_id, frame, x_min, y_min, x_max,
    y_max), frames 0-based, rows sorted by (track_id, frame).

    layout: "aed" (``track_id, frame, x_min, y_min, x_max, y_max``, frames as written, 0-based),
    "streetscene" (``frame_file track_id cx cy w h``; frame = the leading number of frame_file,
    1-based; x_min = floor(cx - w/2), y_min = floor(cy - h/2), x_max = ceil(x_min + w),
    y_max = ceil(y_min + h), as the common evaluation code converts them) or "auto" (commas:
    aed; a first field that is not a number, e.g. ``0001.jpg``: streetscene). frame_size (H, W)
    clips boxes to the frame; without it coordinates are only clipped at 0.
    """
    path = Path(path)
    rows = _rows(path)
    lay = _layout(path, rows) if layout == "auto" else layout
    if lay not in LAYOUTS:
        raise ValueError(f"unknown track layout {layout!r}; one of {('auto',) + LAYOUTS}")
    out = np.zeros((len(rows), 6))
    for r, (line, f) in enumerate(rows):
        if len(f) != 6:
            raise DatasetError(f"{path}, line {line}: expected 6 fields ({lay} layout), got "
                               f"{len(f)}: {' '.join(f)!r}")
        if lay == "aed":
            out[r] = [_number(path, line, t) for t in f]
            continue
        m = re.match(r"\d+", f[0])
        if m is None:
            raise DatasetError(f"{path}, line {line}: frame file {f[0]!r} does not start with "
                               "its frame number")
        tid, cx, cy, w, h = (_number(path, line, t) for t in f[1:])
        x0, y0 = math.floor(cx - w / 2), math.floor(cy - h / 2)
        out[r] = [tid, int(m.group()) - 1, x0, y0, math.ceil(x0 + w), math.ceil(y0 + h)]
    if lay == "streetscene" and out.size:
        out[:, 2:4] = np.clip(out[:, 2:4], 0, None)
    if frame_size is not None and out.size:
        out[:, 4] = np.minimum(out[:, 4], frame_size[1] - 1)
        out[:, 5] = np.minimum(out[:, 5], frame_size[0] - 1)
    bad = np.flatnonzero((out[:, 4] < out[:, 2]) | (out[:, 5] < out[:, 3]) | (out[:, 1] < 0))
    if bad.size:
        line = rows[bad[0]][0]
        raise DatasetError(f"{path}, line {line}: box {out[bad[0], 2:].tolist()} at frame "
                           f"{int(out[bad[0], 1])} is empty or before frame 0")
    return out[np.lexsort((out[:, 1], out[:, 0]))] if out.size else out


def read_box_tracks(path: str | os.PathLike, *, layout: str = "auto",
                    frame_size: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    """Ground-truth box tracks: a folder of per-video .txt files (or one file) -> {video name:
    float64 [N, 6]} (`read_track_file` per file). The video name is the file name without
    ``.txt`` and without a trailing ``_gt`` (``Test001_gt.txt`` -> ``Test001``)."""
    out = {}
    for f in _video_files(Path(path)):
        name = re.sub(r"_gt$", "", f.stem, flags=re.IGNORECASE)
        out[name] = read_track_file(f, layout=layout, frame_size=frame_size)
    return out


def read_detections(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Detections: a folder of per-video .txt files (or one file) of lines
    ``frame, x_min, y_min, x_max, y_max, score`` -> {video name (file stem): float64 [M, 6]}."""
    out = {}
    for f in _video_files(Path(path)):
        rows = _rows(f)
        arr = np.zeros((len(rows), 6))
        for r, (line, fields) in enumerate(rows):
            if len(fields) != 6:
                raise DatasetError(f"{f}, line {line}: expected 6 fields (frame, x_min, y_min, "
                                   f"x_max, y_max, score), got {len(fields)}")
            arr[r] = [_number(f, line, t) for t in fields]
        out[f.stem] = arr
    return out


def _fmt(x: float) -> str:
    """A number as text: whole numbers without a decimal point, others exactly (repr)."""
    x = float(x)
    return str(int(x)) if x.is_integer() else repr(x)


def write_detections(folder: str | os.PathLike, detections: Mapping[str, np.ndarray]
                     ) -> list[Path]:
    """Write {video: float [M, 6]} detections as ``<folder>/<video>.txt``, one
    ``frame, x_min, y_min, x_max, y_max, score`` line per box (atomically, per file)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, d in detections.items():
        d = np.asarray(d, np.float64).reshape(-1, 6)
        text = "".join(",".join(_fmt(x) for x in r) + "\n" for r in d)
        paths.append(atomic_write(folder / f"{name}.txt", lambda p, t=text: p.write_text(t)))
    return paths


def match_tracks(tracks: Mapping[str, np.ndarray], names: Sequence[str]
                 ) -> dict[str, np.ndarray]:
    """Assign track tables to videos: by name, else by the last number in the names when that
    number picks one video (``Test001`` -> ``01``). Videos without tracks get an empty
    [0, 6] table. Raises DatasetError for tracks that match no video."""
    out = {n: np.zeros((0, 6)) for n in names}
    nums: dict[int, list[str]] = {}
    for n in names:
        d = re.findall(r"\d+", n)
        if d:
            nums.setdefault(int(d[-1]), []).append(n)
    for key, table in tracks.items():
        if key in out:
            out[key] = np.asarray(table, np.float64).reshape(-1, 6)
            continue
        d = re.findall(r"\d+", key)
        hit = nums.get(int(d[-1]), []) if d else []
        if len(hit) != 1:
            raise DatasetError(f"tracks of {key!r} match no test video (by name or number) "
                               f"among {len(names)} videos")
        out[hit[0]] = np.asarray(table, np.float64).reshape(-1, 6)
    return out


# ----------------------------------------------------------------------------- detections


def detections_from_maps(maps, *, threshold: float | None = None, relative: float | None = None,
                         frame_size: tuple[int, int] | None = None, first_frame: int = 0
                         ) -> np.ndarray:
    """Pixel anomaly maps -> detections: per frame, the 8-connected regions of map > t, each
    a box (its bounding box) scored by the map's maximum inside the region.

    maps: [T, h, w] floats (or a sequence of [h, w]); t = `threshold`, or `relative` times the
    frame's largest finite value (exactly one of the two). frame_size (H, W): scale boxes from
    the map grid to frames of that size (the pixel span [x_min, x_max + 1) of the map becomes
    [floor(x_min W/w), ceil((x_max + 1) W/w)) in the frame). Frames are numbered from
    `first_frame`. Returns float64 [M, 6] rows (frame, x_min, y_min, x_max, y_max, score).
    """
    if (threshold is None) == (relative is None):
        raise ValueError("pass exactly one of threshold= and relative=")
    out = []
    for t, m in enumerate(maps):
        m = np.asarray(m, np.float32)
        if m.ndim != 2:
            raise ValueError(f"frame {t}: maps must be 2-D per frame, got {m.shape}")
        if threshold is not None:
            thr = float(threshold)
        else:
            top = float(np.max(m, initial=-np.inf, where=np.isfinite(m)))
            thr = relative * top if np.isfinite(top) else np.inf
        binary = (m > thr).astype(np.uint8)
        if not binary.any():
            continue
        n, lab, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        best = np.full(n, -np.inf)
        np.maximum.at(best, lab.reshape(-1), m.reshape(-1).astype(np.float64))
        x0, y0 = stats[1:, cv2.CC_STAT_LEFT], stats[1:, cv2.CC_STAT_TOP]
        x1 = x0 + stats[1:, cv2.CC_STAT_WIDTH] - 1
        y1 = y0 + stats[1:, cv2.CC_STAT_HEIGHT] - 1
        box = np.stack([x0, y0, x1, y1], axis=1).astype(np.float64)
        if frame_size is not None:
            sx, sy = frame_size[1] / m.shape[1], frame_size[0] / m.shape[0]
            box[:, 0], box[:, 1] = np.floor(box[:, 0] * sx), np.floor(box[:, 1] * sy)
            box[:, 2] = np.minimum(np.ceil((box[:, 2] + 1) * sx) - 1, frame_size[1] - 1)
            box[:, 3] = np.minimum(np.ceil((box[:, 3] + 1) * sy) - 1, frame_size[0] - 1)
        rows = np.column_stack([np.full(n - 1, first_frame + t, np.float64), box, best[1:]])
        out.append(rows)
    return np.concatenate(out) if out else np.zeros((0, 6))


# ----------------------------------------------------------------------------- the criteria


def _frames_total(n_frames, tracks: Mapping[str, np.ndarray],
                  detections: Mapping[str, np.ndarray]) -> int:
    """Total frames; with per-video lengths, check every box's frame against its video."""
    if not isinstance(n_frames, Mapping):
        return int(n_frames)
    for what, tables in (("track", tracks), ("detection", detections)):
        for name, t in tables.items():
            t = np.asarray(t).reshape(-1, 6)
            if not t.size:
                continue
            if name not in n_frames:
                raise ValueError(f"{what}s of video {name!r}, which is not among the "
                                 f"{len(n_frames)} videos' lengths")
            col = 1 if what == "track" else 0
            bad = (t[:, col] < 0) | (t[:, col] >= n_frames[name])
            if bad.any():
                raise ValueError(f"video {name!r}: a {what} box at frame "
                                 f"{int(t[bad][0, col])} (0-based), the video has "
                                 f"{n_frames[name]} frames")
    return int(sum(n_frames.values()))


def detection_curves(tracks: Mapping[str, np.ndarray], detections: Mapping[str, np.ndarray],
                     n_frames: int | Mapping[str, int], *, alpha: float = ALPHA,
                     beta: float = BETA) -> dict[str, np.ndarray]:
    """The region- and track-based detection rates against false positives per frame, one
    point per distinct detection score (docs/design.md §11).

    tracks: {video: [N, 6] (track_id, frame, x_min, y_min, x_max, y_max)}; detections: {video:
    [M, 6] (frame, x_min, y_min, x_max, y_max, score)}; n_frames: all frames of all evaluated
    videos, or {video: n_frames} (then every box's frame is checked against its video).
    Returns float64 arrays [K + 1] "thresholds" (+inf, then the distinct scores, descending),
    "fp_per_frame", "rbdr", "tbdr" (the first point (0, 0, 0): nothing detected) and 0-d
    "n_regions", "n_tracks", "n_frames". Rates are NaN without ground-truth regions.
    """
    if not 0 < alpha <= 1 or not 0 < beta <= 1:
        raise ValueError(f"alpha and beta must be in (0, 1], got {alpha}, {beta}")
    total = _frames_total(n_frames, tracks, detections)
    if total <= 0:
        raise ValueError("no frames")
    first_parts, track_parts, fp_scores, scores = [], [], [], []
    for name in sorted(set(tracks) | set(detections)):
        gt = np.asarray(tracks.get(name, np.zeros((0, 6))), np.float64).reshape(-1, 6)
        det = np.asarray(detections.get(name, np.zeros((0, 6))), np.float64).reshape(-1, 6)
        if np.isnan(det[:, 5]).any():
            raise ValueError(f"video {name!r}: NaN detection score")
        scores.append(det[:, 5])
        first = np.full(len(gt), -np.inf)  # the highest score of a detection hitting a region
        matched = np.zeros(len(det), bool)
        for f in np.intersect1d(gt[:, 1], det[:, 0]):
            gi, di = np.flatnonzero(gt[:, 1] == f), np.flatnonzero(det[:, 0] == f)
            hit = box_iou(det[di, 1:5], gt[gi, 2:6]) >= beta  # [dets, regions]
            matched[di] = hit.any(axis=1)
            s = np.where(hit, det[di, 5][:, None], -np.inf).max(axis=0, initial=-np.inf)
            first[gi] = np.maximum(first[gi], s)
        fp_scores.append(det[~matched, 5])
        first_parts.append(first)
        for tid in np.unique(gt[:, 0]):  # a track is detected at its k-th best region's score
            f_t = np.sort(first[gt[:, 0] == tid])[::-1]
            k = next(k for k in range(1, f_t.size + 1) if k / f_t.size >= alpha)
            track_parts.append(f_t[k - 1])
    first_all = np.concatenate(first_parts) if first_parts else np.zeros(0)
    track_all, fp_all = np.asarray(track_parts), np.concatenate(fp_scores or [np.zeros(0)])
    thr = np.unique(np.concatenate(scores or [np.zeros(0)]))[::-1]

    def at_least(values: np.ndarray) -> np.ndarray:  # count of values >= each threshold
        v = np.sort(values)
        return (v.size - np.searchsorted(v, thr, side="left")).astype(np.float64)

    n_reg, n_trk = first_all.size, track_all.size
    nan = np.full(thr.size, np.nan)
    return {
        "thresholds": np.concatenate(([np.inf], thr)),
        "fp_per_frame": np.concatenate(([0.0], at_least(fp_all) / total)),
        "rbdr": np.concatenate(([0.0], at_least(first_all) / n_reg if n_reg else nan)),
        "tbdr": np.concatenate(([0.0], at_least(track_all) / n_trk if n_trk else nan)),
        "n_regions": np.asarray(n_reg), "n_tracks": np.asarray(n_trk),
        "n_frames": np.asarray(total),
    }


def criterion_area(fp_per_frame: np.ndarray, rate: np.ndarray, max_fp: float = 1.0) -> float:
    """Area under a detection-rate curve for FP/frame in [0, max_fp], divided by max_fp.

    Points (non-decreasing in both, as `detection_curves` gives them) past max_fp are dropped;
    when the last point kept is below max_fp, the curve stays at its rate up to max_fp (no
    interpolation towards the next point: the evaluation code in common use does so); the
    trapezoid rule integrates. NaN when any rate is NaN."""
    x = np.asarray(fp_per_frame, np.float64)
    y = np.asarray(rate, np.float64)
    if np.isnan(y).any():
        return float("nan")
    keep = x <= max_fp
    x, y = x[keep], y[keep]
    if x.size == 0:
        return 0.0
    if x[-1] < max_fp:
        x, y = np.append(x, max_fp), np.append(y, y[-1])
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0) / max_fp)


def rbdc_tbdc(tracks: Mapping[str, np.ndarray], detections: Mapping[str, np.ndarray],
              n_frames: int | Mapping[str, int], *, alpha: float = ALPHA, beta: float = BETA,
              max_fp: float = 1.0) -> tuple[float, float]:
    """(RBDC, TBDC) of Ramachandra and Jones: the areas under the region- and track-based
    detection rates for false positives per frame in [0, max_fp] (`detection_curves`,
    `criterion_area`; docs/design.md §11). Both in [0, 1]; NaN without ground-truth regions."""
    c = detection_curves(tracks, detections, n_frames, alpha=alpha, beta=beta)
    return (criterion_area(c["fp_per_frame"], c["rbdr"], max_fp),
            criterion_area(c["fp_per_frame"], c["tbdr"], max_fp))


__all__ = [
    "ALPHA", "BETA", "LAYOUTS", "box_iou", "criterion_area", "detection_curves",
    "detections_from_maps", "match_tracks", "rbdc_tbdc", "read_box_tracks", "read_detections",
    "read_track_file", "write_detections",
]
