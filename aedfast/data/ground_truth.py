"""Ground-truth label files, as researchers have them -> per-video 0/1 frame labels.

Every reader takes the file and the videos' lengths (``{video name: number of frames}``, in the
data set's order, e.g. ``{v.name: len(v) for v in dataset.test}``) and returns
``{video name: uint8 [n_frames]}`` (1 = anomalous) in that order. A file that disagrees with
the lengths (a range past the last frame, a label list of another length, a video the file does
not cover) raises `DatasetError` naming the file and the video. Kinds (`GT_KINDS`):

- ``"ffp-mat"``: the MATLAB files of the future-frame-prediction line of work (``ped2.mat``,
  ``avenue.mat``, ...): variable ``gt``, a 1 x V (or V x 1) cell, cell v for the v-th video in
  the order of `lengths`: a 2 x N array whose column j is the 1-based inclusive frame range
  [start; end] of the j-th anomalous event (empty: no event; a 2-vector or 1 x 2: one event).
- ``"npy"``: one 0/1 array [sum of all lengths] for the whole data set, the videos' labels
  concatenated in the order of `lengths`.
- ``"json"``: ``{"video name": [0, 0, 1, ...], ...}``, one 0/1 (or true/false) label per frame.
- ``"ucf-crime"``: UCF-Crime's ``Temporal_Anomaly_Annotation_for_Testing_Videos.txt``: per line
  ``name class s1 e1 s2 e2`` (whitespace separated; any further s/e pairs are read too),
  ``-1 -1`` for no event. The name matches a video by name or by name without its extension
  (``Abuse028_x264.mp4`` -> ``Abuse028_x264``). The file does not say whether its numbers are
  0- or 1-based; they are read like the other range formats here, as 1-based inclusive frame
  numbers [s, e] (frames s-1 .. e-1 of the video).
- ``"ped1"``: the UCSD ``UCSDped1.m`` (or ``UCSDped2.m``) file: statements
  ``TestVideoFile{end+1}.gt_frame = [60:152];`` (also ``X{k}.gt_frame = [...]`` and
  ``X.gt{k} = [...]``), 1-based frame numbers and MATLAB ranges ``a:b`` / ``a:step:b``,
  ``[5:90, 140:200]`` for two events. Entry k is the video whose name ends in the number k
  (``Test001`` -> entry 1) when every name holds a number, else the k-th video in order.

Every video in `lengths` must be covered by the file; entries for videos not in `lengths` are
ignored for the name-keyed kinds (json, ucf-crime), so a subset of a data set can be evaluated.
`read_ground_truth(path, lengths, kind="auto")` picks the kind from the extension (.mat,
.npy, .json, .m) or, for text files, from the content.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .errors import DatasetError

GT_KINDS = ("ffp-mat", "npy", "json", "ucf-crime", "ped1")


def ranges_to_labels(ranges: Sequence[tuple[int, int]], n_frames: int, *, source: str,
                     video: str) -> np.ndarray:
    """1-based inclusive frame ranges [(start, end), ...] -> uint8 [n_frames] labels.

    Raises DatasetError naming `source` (the file) and `video` when a range is empty
    (end < start), starts before frame 1 or ends after frame n_frames."""
    lab = np.zeros(int(n_frames), np.uint8)
    for s, e in ranges:
        if int(s) != s or int(e) != e:
            raise DatasetError(f"{source}: video {video!r}: frame range [{s}, {e}] is not "
                               "made of whole frame numbers")
        s, e = int(s), int(e)
        if s < 1 or e < s or e > n_frames:
            raise DatasetError(f"{source}: video {video!r}: frame range [{s}, {e}] (1-based, "
                               f"inclusive) does not fit its {n_frames} frames")
        lab[s - 1:e] = 1
    return lab


def _frames_to_labels(frames: np.ndarray, n_frames: int, *, source: str, video: str
                      ) -> np.ndarray:
    """1-based frame numbers -> uint8 [n_frames] labels, with the errors of ranges_to_labels."""
    lab = np.zeros(int(n_frames), np.uint8)
    if frames.size:
        lo, hi = int(frames.min()), int(frames.max())
        if lo < 1 or hi > n_frames:
            raise DatasetError(f"{source}: video {video!r}: frames {lo}..{hi} (1-based) named, "
                               f"the video has {n_frames}")
        lab[frames - 1] = 1
    return lab


# ----------------------------------------------------------------------------- ffp-mat


def read_ffp_mat(path: str | os.PathLike, lengths: Mapping[str, int]) -> dict[str, np.ndarray]:
    """The ``gt`` cell of a future-frame-prediction ``.mat`` file (module docstring)."""
    from scipy.io import loadmat

    path = Path(path)
    try:
        data = loadmat(str(path))
    except NotImplementedError as e:  # MATLAB v7.3 (HDF5)
        raise DatasetError(f"{path}: {e}; re-save it with save(..., '-v7')") from e
    except Exception as e:  # noqa: BLE001 - any failure here is a malformed file
        raise DatasetError(f"{path}: cannot read as a MATLAB .mat file ({e})") from e
    if "gt" not in data:
        found = sorted(k for k in data if not k.startswith("__"))
        raise DatasetError(f"{path}: no variable 'gt' (found {found})")
    gt = data["gt"]
    cells = list(gt.reshape(-1)) if gt.dtype == object else [gt]
    names = list(lengths)
    if len(cells) != len(names):
        which = names[len(cells)] if len(cells) < len(names) else names[-1]
        raise DatasetError(f"{path}: 'gt' has {len(cells)} cells for {len(names)} videos "
                           f"(first video without a matching cell: {which!r})")
    out = {}
    for name, cell in zip(names, cells):
        a = np.asarray(cell)
        if a.size == 0:
            ranges = np.zeros((2, 0))
        elif a.size == 2:  # one event: a 2-vector, 1 x 2 or 2 x 1
            ranges = a.reshape(2, 1)
        elif a.ndim == 2 and a.shape[0] == 2:
            ranges = a
        else:
            raise DatasetError(f"{path}: video {name!r}: expected a 2 x N array of [start; end] "
                               f"frame ranges in its 'gt' cell, got shape {a.shape}")
        out[name] = ranges_to_labels(list(zip(ranges[0], ranges[1])), lengths[name],
                                     source=str(path), video=name)
    return out


# ----------------------------------------------------------------------------- npy


def load_label_array(path: str | os.PathLike) -> np.ndarray:
    """A ``.npy`` file of frame labels as one 1-D array ([T], or [1, T] / [T, 1]); the one
    .npy label loader (the data set readers use it too)."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001
        raise DatasetError(f"{path}: cannot read as a .npy label array ({e})") from e
    if arr.ndim != 1 and not (arr.ndim == 2 and 1 in arr.shape):
        raise DatasetError(f"{path}: expected one [T] array of 0/1 frame labels, got shape "
                           f"{arr.shape}")
    return arr.reshape(-1)


def read_npy_labels(path: str | os.PathLike, lengths: Mapping[str, int]
                    ) -> dict[str, np.ndarray]:
    """One concatenated 0/1 ``.npy`` label array, split by `lengths` in order."""
    path = Path(path)
    arr = load_label_array(path)
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise DatasetError(f"{path}: expected 0/1 frame labels, found values "
                           f"{np.unique(arr)[:8].tolist()}")
    total = sum(int(n) for n in lengths.values())
    out, start = {}, 0
    for name, n in lengths.items():
        if start + n > arr.size:
            raise DatasetError(f"{path}: {arr.size} labels end inside video {name!r} (its frames "
                               f"are {start}..{start + n - 1} of the concatenation); the "
                               f"{len(lengths)} videos have {total} frames in all")
        out[name] = arr[start:start + n].astype(np.uint8)
        start += n
    if arr.size != total:
        last = list(lengths)[-1] if lengths else None
        raise DatasetError(f"{path}: {arr.size} labels, the {len(lengths)} videos have {total} "
                           f"frames in all: {arr.size - total} labels left after the last "
                           f"video {last!r}")
    return out


# ----------------------------------------------------------------------------- json


def read_json_labels(path: str | os.PathLike, lengths: Mapping[str, int]
                     ) -> dict[str, np.ndarray]:
    """``{"video": [0, 1, ...]}`` per-frame 0/1 label lists."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except Exception as e:  # noqa: BLE001
        raise DatasetError(f"{path}: cannot read as JSON ({e})") from e
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected an object {{video name: [0/1 per frame]}}, got a "
                           f"{type(data).__name__}")
    out = {}
    for name, n in lengths.items():
        if name not in data:
            raise DatasetError(f"{path}: no labels for video {name!r}")
        vals = data[name]
        if not isinstance(vals, list) or not all(
                isinstance(x, (bool, int)) and x in (0, 1) for x in vals):
            raise DatasetError(f"{path}: video {name!r}: expected a list of 0/1 frame labels")
        if len(vals) != n:
            raise DatasetError(f"{path}: video {name!r}: {len(vals)} labels for its {n} frames")
        out[name] = np.asarray(vals, np.uint8)
    return out


# ----------------------------------------------------------------------------- ucf-crime


def _by_name(entries: Mapping[str, object], name: str):
    """The entry for a video: by its name, or by either name without its extension."""
    if name in entries:
        return entries[name]
    stems = {Path(k).stem: v for k, v in entries.items()}
    return stems.get(name, stems.get(Path(name).stem))


def read_ucf_crime(path: str | os.PathLike, lengths: Mapping[str, int]
                   ) -> dict[str, np.ndarray]:
    """UCF-Crime's temporal annotation text (module docstring)."""
    path = Path(path)
    entries: dict[str, list[tuple[int, int]]] = {}
    for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        tok = line.split()
        if not tok:
            continue
        nums = tok[2:]
        try:
            vals = [int(x) for x in nums]
        except ValueError:
            vals = []
        if len(tok) < 4 or len(nums) % 2 or len(vals) != len(nums):
            raise DatasetError(f"{path}, line {i}: expected 'name class start end [start end "
                               f"...]' with integer frame numbers, got {line.strip()!r}")
        pairs = []
        for s, e in zip(vals[::2], vals[1::2]):
            if (s == -1) != (e == -1):
                raise DatasetError(f"{path}, line {i}: video {tok[0]!r}: event [{s}, {e}] has "
                                   "one end -1 and the other not")
            if s != -1:
                pairs.append((s, e))
        entries[tok[0]] = pairs
    out = {}
    for name, n in lengths.items():
        pairs = _by_name(entries, name)
        if pairs is None:
            raise DatasetError(f"{path}: no line for video {name!r}")
        out[name] = ranges_to_labels(pairs, n, source=str(path), video=name)
    return out


# ----------------------------------------------------------------------------- ped1


def _matlab_numbers(body: str, source: str) -> np.ndarray:
    """The numbers of a MATLAB vector literal: ``60:152``, ``5:90, 140:200``, ``1 2 3``,
    ``1:2:9``. int64 [n]."""
    out: list[int] = []
    for tok in re.split(r"[,;\s]+", body.strip()):
        if not tok:
            continue
        try:
            parts = [int(p) for p in tok.split(":")]
        except ValueError as e:
            raise DatasetError(f"{source}: cannot read {tok!r} as frame numbers") from e
        if len(parts) == 1:
            out.append(parts[0])
        elif len(parts) == 2:
            out.extend(range(parts[0], parts[1] + 1))
        elif len(parts) == 3 and parts[1] != 0:
            out.extend(range(parts[0], parts[2] + (1 if parts[1] > 0 else -1), parts[1]))
        else:
            raise DatasetError(f"{source}: cannot read {tok!r} as a MATLAB range")
    return np.asarray(out, np.int64)


def parse_ucsd_m(path: str | os.PathLike) -> list[np.ndarray]:
    """The frame-range entries of a UCSD ``UCSDpedN.m`` file, in entry order: per entry the
    1-based frame numbers (int64 [n]). Reads ``X{end+1}.gt_frame = [...]``,
    ``X{k}.gt_frame = [...]``, ``X.gt{k} = [...]`` and bare ``gt_frame = [...]`` statements;
    ``%`` comments are skipped. Raises DatasetError when explicit indices leave an entry out."""
    path = Path(path)
    text = re.sub(r"%[^\n]*", "", path.read_text(errors="replace"))
    found: dict[int, np.ndarray] = {}
    nxt = 1
    for m in re.finditer(r"([A-Za-z_][\w.{}+\s]*?)=\s*\[([^\]]*)\]", text):
        lhs = re.sub(r"\s+", "", m.group(1))
        if "gt" not in lhs.lower():
            continue
        idx = re.search(r"\{(\d+)\}", lhs)
        k = int(idx.group(1)) if idx else nxt
        found[k] = _matlab_numbers(m.group(2), str(path))
        nxt = max(found) + 1
    missing = sorted(set(range(1, max(found, default=0) + 1)) - set(found))
    if missing:
        raise DatasetError(f"{path}: no ground-truth entry {missing[0]} (entries "
                           f"{sorted(found)} found)")
    return [found[k] for k in sorted(found)]


def read_ped1(path: str | os.PathLike, lengths: Mapping[str, int]) -> dict[str, np.ndarray]:
    """UCSD Ped1/Ped2 ``.m`` frame ranges (module docstring)."""
    path = Path(path)
    entries = parse_ucsd_m(path)
    if not entries:
        raise DatasetError(f"{path}: no 'gt_frame = [...]' (or 'gt{{k}} = [...]') entries")
    numbers = {name: re.findall(r"\d+", name) for name in lengths}
    by_number = all(numbers.values())
    out = {}
    for i, (name, n) in enumerate(lengths.items()):
        k = int(numbers[name][-1]) if by_number else i + 1
        if not 1 <= k <= len(entries):
            raise DatasetError(f"{path}: no entry {k} for video {name!r} ({len(entries)} "
                               "entries)")
        out[name] = _frames_to_labels(entries[k - 1], n, source=str(path), video=name)
    return out


# ----------------------------------------------------------------------------- any kind


_READERS = {"ffp-mat": read_ffp_mat, "npy": read_npy_labels, "json": read_json_labels,
            "ucf-crime": read_ucf_crime, "ped1": read_ped1}


def detect_gt_kind(path: str | os.PathLike) -> str:
    """The kind of a ground-truth file: by extension (.mat, .npy, .json, .m), else by content
    (``gt_frame`` / ``gt{`` statements: ped1; lines ``name class s e ...``: ucf-crime)."""
    path = Path(path)
    ext = path.suffix.lower()
    by_ext = {".mat": "ffp-mat", ".npy": "npy", ".json": "json", ".m": "ped1"}
    if ext in by_ext:
        return by_ext[ext]
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e})") from e
    if re.search(r"gt_frame\s*=|gt\s*\{", text):
        return "ped1"
    first = next((ln.split() for ln in text.splitlines() if ln.strip()), [])
    if len(first) >= 4 and all(re.fullmatch(r"-?\d+", t) for t in first[2:]):
        return "ucf-crime"
    raise DatasetError(f"{path}: cannot tell the ground-truth format; pass one of {GT_KINDS}")


def read_ground_truth(path: str | os.PathLike, lengths: Mapping[str, int], kind: str = "auto"
                      ) -> dict[str, np.ndarray]:
    """Per-video frame labels from a ground-truth file.

    path: the file; lengths: {video name: n_frames} in the data set's order; kind: one of
    `GT_KINDS` or "auto" (`detect_gt_kind`). Returns {video name: uint8 [n_frames]} in the
    order of `lengths`. Raises DatasetError naming the file and the video on any mismatch.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"{path}: no such ground-truth file")
    k = detect_gt_kind(path) if kind == "auto" else kind
    if k not in _READERS:
        raise ValueError(f"unknown ground-truth kind {kind!r}; one of {('auto',) + GT_KINDS}")
    if not lengths:
        raise ValueError("no videos: lengths is empty")
    return _READERS[k](path, {str(n): int(v) for n, v in lengths.items()})


__all__ = [
    "GT_KINDS", "detect_gt_kind", "load_label_array", "parse_ucsd_m", "ranges_to_labels",
    "read_ffp_mat",
    "read_ground_truth", "read_json_labels", "read_npy_labels", "read_ped1", "read_ucf_crime",
]
