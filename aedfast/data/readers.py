"""Dataset readers: lazy access to the videos, frame labels and pixel masks of the usual video
anomaly detection data sets (SPEC §6).

`open_dataset(root, kind)` returns a `Dataset` with `.train` and `.test`, lists of `Video`.
Nothing is decoded up front: opening a data set lists files, reads video headers and checks the
shapes of label files (``.npy`` via memory maps, ``.mat`` via `scipy.io.whosmat`), so a malformed
tree fails at once with a `DatasetError` naming the file and what was expected. Frames are
decoded on access; video files are decoded sequentially with a small cache of recent frames
(the model reads frames t-3, t, t+3, so consecutive reads hit the cache).

Layouts accepted (`kind`):

- ``"avenue"``: ROOT/training_videos/*.avi, ROOT/testing_videos/*.avi (or frame folders in
  ROOT/{training,testing}/frames/<video>/), pixel ground truth in a ``testing_label_mask``
  folder anywhere up to three levels below ROOT (``N_label.mat``, a MATLAB cell ``volLabel``
  of T frame masks; video ``01`` matches ``1_label.mat``). Frame label = mask.any().
- ``"shanghaitech"``: ROOT/training/videos/*.avi (or ROOT/training/frames/<video>/),
  ROOT/testing/frames/<video>/NNN.jpg, ROOT/testing/test_frame_mask/<video>.npy ([T] 0/1) and,
  optional, ROOT/testing/test_pixel_mask/<video>.npy ([T, H, W]). A video without a frame mask
  but with a pixel mask gets labels from the pixel mask.
- ``"ped2"``: ROOT/Train/TrainNNN/*.tif, ROOT/Test/TestNNN/*.tif, pixel masks in
  ROOT/Test/TestNNN_gt/*.bmp. Where a ``_gt`` folder is missing, frame labels come from the
  ``gt_frame`` ranges of the UCSD ``*.m`` file in ROOT/Test (e.g. ``UCSDped2.m``).
- ``"official"`` (the official implementation's layout): ROOT/{train,test}/frames/<video>/<n>.jpg
  (or .png; sorted numerically) and one text file of 0/1 labels per test video, searched in
  `labels_dir` (if given), ROOT/test/labels, ROOT/test/gt, ROOT/test, ROOT/labels, ROOT/gt,
  ROOT/test/frames and ROOT, as ``<video>.txt`` (one label per line, or separated by whitespace
  or commas) or ``<video>.npy``.
- ``"folder"``: a folder of video files (.avi, .mp4, ...) and/or of frame folders, a single
  frame folder, or a single video file. No labels: every video goes to `.test` (labels None)
  and `.train` is the same list.
- ``"auto"``: guess one of the above from the tree.

A base folder may also be the only sub-folder of ROOT (an archive unpacked into ROOT/Name/).
Frames are uint8 [H, W, 3] BGR (as OpenCV reads them); grey images are converted to BGR.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from ..frames import IMAGE_EXTENSIONS, list_frame_files, natural_key

IMAGE_EXTS = IMAGE_EXTENSIONS  # the frame lister's extensions (aedfast.frames)
VIDEO_EXTS = (".avi", ".mp4", ".mov", ".mkv", ".mpg", ".mpeg", ".m4v", ".wmv", ".webm", ".flv")
KINDS = ("avenue", "shanghaitech", "ped2", "official", "folder", "auto")
_ALIASES = {"shanghai": "shanghaitech", "stc": "shanghaitech", "ucsd": "ped2",
            "ucsdped2": "ped2", "aed-mae": "official", "frames": "folder", "videos": "folder"}


class DatasetError(ValueError):
    """A data set tree that does not match the expected layout: says which file, what was
    expected and what was found."""


def _visible(p: Path) -> bool:
    return not p.name.startswith((".", "_"))


# ----------------------------------------------------------------------------- masks


class Masks:
    """Lazy sequence of pixel masks of one video: `masks[i]` -> bool [H, W]."""

    def __len__(self) -> int:
        raise NotImplementedError

    def _get(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, i: int) -> np.ndarray:
        n = len(self)
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"mask index must be an int, got {type(i).__name__}")
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"mask index {i} out of range for {n} frames")
        return self._get(int(i))

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self._get(i)

    def frame_labels(self) -> np.ndarray:
        """uint8 [T]: 1 where the mask has any foreground pixel."""
        return np.fromiter((m.any() for m in self), dtype=np.uint8, count=len(self))


class ArrayMasks(Masks):
    """Masks from a [T, H, W] array (any dtype; nonzero = anomalous), e.g. a memory-mapped .npy."""

    def __init__(self, array: np.ndarray, source: str = "array"):
        if array.ndim != 3:
            raise DatasetError(f"{source}: expected a [T, H, W] mask array, got shape "
                               f"{tuple(array.shape)}")
        self._a = array
        self.source = source

    def __len__(self) -> int:
        return int(self._a.shape[0])

    def _get(self, i: int) -> np.ndarray:
        return np.asarray(self._a[i]) != 0

    def frame_labels(self) -> np.ndarray:
        out = np.empty(len(self), np.uint8)
        for s in range(0, len(self), 64):  # chunks: a memory map is not read in one go
            out[s:s + 64] = np.asarray(self._a[s:s + 64]).reshape(
                min(64, len(self) - s), -1).any(axis=1)
        return out


class NpyMasks(ArrayMasks):
    """Masks in a .npy file of shape [T, H, W], memory-mapped (read on access; pickled by
    path, so DataLoader workers do not copy the array)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            arr = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - any failure here is a malformed file
            raise DatasetError(f"{path}: cannot read as a .npy mask array ({e})") from e
        super().__init__(arr, str(path))

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, d: dict) -> None:
        self.__init__(d["path"])


class ImageMasks(Masks):
    """Masks stored as one image per frame (nonzero = anomalous)."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def _get(self, i: int) -> np.ndarray:
        img = cv2.imread(str(self.paths[i]), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise DatasetError(f"{self.paths[i]}: cannot read mask image")
        if img.ndim == 3:
            img = img.max(axis=2)
        return img != 0


_MAT_CACHE: OrderedDict[str, list[tuple[np.ndarray, tuple[int, int]]]] = OrderedDict()
_MAT_LOCK = threading.Lock()


def _mat_cell_length(path: Path, key: str) -> int:
    """Number of cells of variable `key` in a MATLAB file, without loading it."""
    from scipy.io import whosmat

    _check_not_v73(path)
    try:
        info = whosmat(str(path))
    except Exception as e:  # noqa: BLE001
        raise DatasetError(f"{path}: cannot read as a MATLAB .mat file ({e})") from e
    for name, shape, cls in info:
        if name == key:
            if cls != "cell" or len(shape) != 2 or min(shape) != 1:
                raise DatasetError(f"{path}: expected {key!r} to be a 1 x T MATLAB cell of "
                                   f"frame masks, found a {cls} of shape {shape}")
            return int(max(shape))
    raise DatasetError(f"{path}: no variable {key!r} (found {[n for n, _, _ in info]})")


def _check_not_v73(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(128)
    if b"MATLAB 7.3" in head or head[:8] == b"\x89HDF\r\n\x1a\n":
        raise DatasetError(f"{path}: MATLAB v7.3 (HDF5) file, which scipy.io cannot read; "
                           "re-save it with `save(..., '-v7')` or convert it with h5py")


class MatMasks(Masks):
    """Masks in a MATLAB cell (1 x T cell of H x W arrays, e.g. Avenue's ``volLabel``).

    Loaded on first access and kept bit-packed; the most recent file is cached."""

    def __init__(self, path: Path, key: str = "volLabel", length: int | None = None):
        self.path = Path(path)
        self.key = key
        self._len = length if length is not None else _mat_cell_length(self.path, key)

    def __len__(self) -> int:
        return self._len

    def _volume(self) -> list[tuple[np.ndarray, tuple[int, int]]]:
        k = str(self.path)
        with _MAT_LOCK:
            if k in _MAT_CACHE:
                _MAT_CACHE.move_to_end(k)
                return _MAT_CACHE[k]
        from scipy.io import loadmat

        _check_not_v73(self.path)
        try:
            cell = loadmat(k, variable_names=[self.key])[self.key]
        except NotImplementedError as e:  # v7.3 files scipy refuses
            raise DatasetError(f"{self.path}: {e}; convert it with h5py") from e
        except Exception as e:  # noqa: BLE001
            raise DatasetError(f"{self.path}: cannot read {self.key!r} ({e})") from e
        vol = []
        for j, m in enumerate(np.asarray(cell, dtype=object).reshape(-1)):
            m = np.asarray(m)
            if m.ndim != 2:
                raise DatasetError(f"{self.path}: {self.key}{{{j + 1}}} has shape {m.shape}, "
                                   "expected an H x W mask")
            vol.append((np.packbits(m != 0, axis=None), m.shape))
        with _MAT_LOCK:
            _MAT_CACHE[k] = vol
            while len(_MAT_CACHE) > 1:
                _MAT_CACHE.popitem(last=False)
        return vol

    def _get(self, i: int) -> np.ndarray:
        packed, shape = self._volume()[i]
        return np.unpackbits(packed, count=shape[0] * shape[1]).reshape(shape).astype(bool)

    def frame_labels(self) -> np.ndarray:
        return np.fromiter((p.any() for p, _ in self._volume()), np.uint8, count=len(self))


# ----------------------------------------------------------------------------- videos


class Video:
    """One video: `len(video)` frames, `video[i]` -> uint8 [H, W, 3] BGR, decoded lazily.

    Test videos carry `labels` (uint8 [T] frame labels, 0/1) and, where the data set has
    pixel ground truth, `masks` (a lazy `Masks`; `video.mask(i)` -> bool [H, W], else None).
    """

    def __init__(self, name: str, cache_size: int = 16):
        self.name = name
        self.cache_size = max(1, int(cache_size))
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._labels: np.ndarray | None = None
        self._labels_fn: Callable[[], np.ndarray] | None = None
        self._masks: Masks | None = None
        self.source = ""

    # -- ground truth
    def set_ground_truth(self, labels: np.ndarray | Callable[[], np.ndarray] | None = None,
                         masks: Masks | None = None) -> None:
        """Attach frame labels (an array or a callable computing it on first use) and masks."""
        if masks is not None and len(masks) != len(self):
            raise DatasetError(f"{self.name}: {len(masks)} pixel masks for {len(self)} frames "
                               f"({getattr(masks, 'source', '') or getattr(masks, 'path', '')})")
        self._masks = masks
        if callable(labels):
            self._labels, self._labels_fn = None, labels
        else:
            self._labels_fn = None
            self._labels = None if labels is None else self._check_labels(labels)

    def _check_labels(self, labels: np.ndarray) -> np.ndarray:
        lab = np.asarray(labels).reshape(-1)
        if lab.shape[0] != len(self):
            raise DatasetError(f"{self.name}: {lab.shape[0]} frame labels for {len(self)} frames")
        if lab.size and not np.isin(lab, (0, 1)).all():
            raise DatasetError(f"{self.name}: frame labels must be 0/1, found values "
                               f"{np.unique(lab)[:8].tolist()}")
        return lab.astype(np.uint8)

    @property
    def labels(self) -> np.ndarray | None:
        """uint8 [T] frame labels (1 = anomalous), or None (training / unlabelled videos)."""
        if self._labels is None and self._labels_fn is not None:
            self._labels = self._check_labels(self._labels_fn())
            self._labels_fn = None
        return self._labels

    @property
    def has_labels(self) -> bool:
        return self._labels is not None or self._labels_fn is not None

    @property
    def masks(self) -> Masks | None:
        """Lazy pixel masks (`masks[i]` -> bool [H, W]) or None."""
        return self._masks

    def mask(self, i: int) -> np.ndarray | None:
        """bool [H, W] pixel mask of frame i, or None where the data set has none."""
        return None if self._masks is None else self._masks[i]

    # -- frames
    def __len__(self) -> int:
        raise NotImplementedError

    def _decode(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, i: int) -> np.ndarray:
        """uint8 [H, W, 3] BGR frame i (negative indices count from the end)."""
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"frame index must be an int, got {type(i).__name__}")
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"frame {i} out of range for video {self.name!r} of {n} frames")
        i = int(i)
        with self._lock:
            f = self._cache.get(i)
            if f is not None:
                self._cache.move_to_end(i)
            else:
                f = self._decode(i)
                self._cache[i] = f
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return f.copy()  # callers may write into it; the cache stays intact

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Frames start..stop-1 in order (decoded sequentially)."""
        n = len(self)
        stop = n if stop is None else min(stop, n)
        for i in range(max(0, start), stop):
            yield self[i]

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.frames()

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the frames."""
        h, w = self[0].shape[:2]
        return int(h), int(w)

    def __getstate__(self) -> dict:
        # picklable for DataLoader workers: no lock, no cache, no open decoder
        d = self.__dict__.copy()
        d["_lock"] = None
        d["_cache"] = OrderedDict()
        return d

    def __setstate__(self, d: dict) -> None:
        self.__dict__.update(d)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        gt = ""
        if self.has_labels:
            gt = ", labelled" + (", masks" if self._masks is not None else "")
        return f"{type(self).__name__}({self.name!r}, {len(self)} frames{gt})"


class FrameFolderVideo(Video):
    """A video stored as one image per frame."""

    def __init__(self, paths: Sequence[Path], name: str | None = None, cache_size: int = 16):
        paths = [Path(p) for p in paths]
        if not paths:
            raise DatasetError(f"video {name!r}: no frame images")
        super().__init__(name or paths[0].parent.name, cache_size)
        self.paths = paths
        self.source = str(paths[0].parent)

    @classmethod
    def from_folder(cls, folder: Path, name: str | None = None) -> FrameFolderVideo:
        paths = list_frame_files(folder)
        if not paths:
            raise DatasetError(f"{folder}: expected frame images ({', '.join(IMAGE_EXTS)}), "
                               "found none")
        return cls(paths, name or folder.name)

    def __len__(self) -> int:
        return len(self.paths)

    def _decode(self, i: int) -> np.ndarray:
        img = cv2.imread(str(self.paths[i]), cv2.IMREAD_COLOR)
        if img is None:
            raise DatasetError(f"{self.paths[i]}: cannot read image (frame {i} of {self.name!r})")
        return img


class VideoFileVideo(Video):
    """A video file decoded with OpenCV. Sequential reads decode each frame once; a backward
    or far forward jump seeks (checked, else re-decodes from the start)."""

    _SKIP_LIMIT = 48  # forward gaps up to this are decoded through rather than seeked

    def __init__(self, path: Path, name: str | None = None, cache_size: int = 16):
        path = Path(path)
        super().__init__(name or path.stem, cache_size)
        self.path = path
        self.source = str(path)
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise DatasetError(f"{path}: OpenCV cannot open this video file")
        n = int(round(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
        self.fps = float(cap.get(cv2.CAP_PROP_FPS)) or 25.0
        if n <= 0:  # container without a frame count: count by demuxing
            n = 0
            while cap.grab():
                n += 1
        cap.release()
        if n <= 0:
            raise DatasetError(f"{path}: video has no decodable frames")
        self._n = n
        self._cap: cv2.VideoCapture | None = None
        self._pos = 0
        self._pid = -1

    def __len__(self) -> int:
        return self._n

    def _open(self) -> cv2.VideoCapture:
        if self._cap is None or self._pid != os.getpid():  # a forked worker opens its own
            self._cap = cv2.VideoCapture(str(self.path))
            if not self._cap.isOpened():
                raise DatasetError(f"{self.path}: OpenCV cannot open this video file")
            self._pos, self._pid = 0, os.getpid()
        return self._cap

    def _decode(self, i: int) -> np.ndarray:
        cap = self._open()
        if i < self._pos or i - self._pos > self._SKIP_LIMIT:
            cap.set(cv2.CAP_PROP_POS_FRAMES, i)
            if int(round(cap.get(cv2.CAP_PROP_POS_FRAMES))) == i:
                self._pos = i
            else:  # inexact seek: decode from the start
                self._cap = None
                cap = self._open()
        while self._pos < i:
            if not cap.grab():
                raise DatasetError(f"{self.path}: decoding stopped at frame {self._pos} "
                                   f"(header says {self._n} frames)")
            self._pos += 1
        ok, frame = cap.read()
        if not ok or frame is None:
            raise DatasetError(f"{self.path}: cannot decode frame {i} (header says {self._n} "
                               "frames)")
        self._pos += 1
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        return frame

    def close(self) -> None:
        """Release the decoder (reopened on the next access)."""
        with self._lock:
            if self._cap is not None:
                self._cap.release()
            self._cap = None
            self._cache.clear()

    def __getstate__(self) -> dict:
        d = super().__getstate__()
        d["_cap"], d["_pos"], d["_pid"] = None, 0, -1
        return d


def _is_video_file(p: Path) -> bool:
    return p.is_file() and _visible(p) and p.suffix.lower() in VIDEO_EXTS


def collect_videos(folder: Path, *, exclude: Callable[[Path], bool] | None = None,
                   what: str = "videos") -> list[Video]:
    """The videos in `folder`: its video files and its sub-folders of frame images, in natural
    order of name. Raises DatasetError if there are none."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: expected a folder of {what}, not found")
    videos: list[Video] = []
    for p in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        if not _visible(p) or (exclude is not None and exclude(p)):
            continue
        if _is_video_file(p):
            videos.append(VideoFileVideo(p))
        elif p.is_dir() and list_frame_files(p):
            videos.append(FrameFolderVideo.from_folder(p))
    if not videos:
        raise DatasetError(f"{folder}: expected {what} (video files {', '.join(VIDEO_EXTS[:4])}"
                           f"... or folders of frame images), found none")
    names = [v.name for v in videos]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DatasetError(f"{folder}: several videos share the names {dup} (a video file and a "
                           "frame folder of the same name?)")
    return videos


# ----------------------------------------------------------------------------- data set


class Dataset:
    """A data set: `.train` and `.test`, lists of `Video`; `.kind`, `.root`."""

    def __init__(self, kind: str, root: Path, train: list[Video], test: list[Video]):
        self.kind = kind
        self.root = Path(root)
        self.train = train
        self.test = test

    def video(self, name: str, split: str = "test") -> Video:
        """The video called `name` in `split` ("train" or "test")."""
        for v in getattr(self, split):
            if v.name == name:
                return v
        raise KeyError(f"no {split} video named {name!r}")

    def summary(self) -> str:
        """What was found: videos and frames per split, labelled and anomalous test frames.
        Reads the labels (for Avenue and Ped2 that decodes the pixel masks once)."""
        lines = [f"{self.kind} data set at {self.root}"]
        for split in ("train", "test"):
            vids = getattr(self, split)
            frames = sum(len(v) for v in vids)
            line = f"  {split}: {len(vids)} videos, {frames} frames"
            labelled = [v for v in vids if v.has_labels]
            if labelled:
                nl = sum(len(v) for v in labelled)
                na = int(sum(int(v.labels.sum()) for v in labelled))
                nm = sum(v.masks is not None for v in labelled)
                line += (f"; {nl} labelled frames, {na} anomalous ({100.0 * na / max(nl, 1):.1f}%)"
                         f"; pixel masks for {nm}/{len(vids)} videos")
            elif split == "test":
                line += "; no labels"
            lines.append(line)
        if self.train is self.test:
            lines.append("  (unlabelled folder: train and test are the same list)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"Dataset(kind={self.kind!r}, root={str(self.root)!r}, "
                f"train={len(self.train)} videos/{sum(len(v) for v in self.train)} frames, "
                f"test={len(self.test)} videos/{sum(len(v) for v in self.test)} frames)")


def _base(root: Path, *markers: str) -> Path:
    """`root` if it holds all `markers`, else its only sub-folder that does (a data set archive
    unpacked one level down), else `root` (the caller then reports what is missing)."""
    if all((root / m).exists() for m in markers):
        return root
    subs = [d for d in root.iterdir() if d.is_dir() and _visible(d)]
    hits = [d for d in subs if all((d / m).exists() for m in markers)]
    return hits[0] if len(hits) == 1 else root


def _first_dir(base: Path, candidates: Sequence[str], what: str) -> Path:
    for c in candidates:
        if (base / c).is_dir():
            return base / c
    raise DatasetError(f"{base}: expected {what} in one of "
                       f"{', '.join(str(base / c) for c in candidates)}; none exists")


def _find_dirs(root: Path, name: str, depth: int = 3) -> list[Path]:
    found = []
    for cur, dirs, _ in os.walk(root):
        level = len(Path(cur).relative_to(root).parts)
        if level >= depth:
            dirs[:] = []
        for d in dirs:
            if d.lower() == name.lower():
                found.append(Path(cur) / d)
    return sorted(found)


def _open_avenue(root: Path) -> Dataset:
    base = root
    for markers in (("training_videos",), ("testing_videos",), ("training", "testing")):
        b = _base(root, *markers)
        if all((b / m).exists() for m in markers):
            base = b
            break
    train = collect_videos(_first_dir(base, ["training_videos", "training/frames", "training"],
                                      "training videos"), what="training videos")
    test = collect_videos(_first_dir(base, ["testing_videos", "testing/frames", "testing"],
                                     "testing videos"), what="testing videos")
    mask_dirs = _find_dirs(root, "testing_label_mask")
    if not mask_dirs:
        raise DatasetError(f"{root}: expected a folder 'testing_label_mask' with N_label.mat "
                           "files (Avenue pixel ground truth) up to three levels below, found none")
    mats: dict[int, Path] = {}
    for p in mask_dirs[0].iterdir():
        m = re.fullmatch(r"(\d+)_label\.mat", p.name, re.IGNORECASE)
        if m:
            mats[int(m.group(1))] = p
    for v in test:
        digits = re.findall(r"\d+", v.name)
        if not digits:
            raise DatasetError(f"{v.source}: Avenue test video names must hold the video number "
                               f"(e.g. 01.avi) to match N_label.mat, got {v.name!r}")
        num = int(digits[-1])
        if num not in mats:
            raise DatasetError(f"{mask_dirs[0] / f'{num}_label.mat'}: expected the pixel ground "
                               f"truth of test video {v.name!r}, not found")
        masks = MatMasks(mats[num])
        if len(masks) != len(v):
            raise DatasetError(f"{mats[num]}: volLabel has {len(masks)} frames, test video "
                               f"{v.source} has {len(v)}")
        v.set_ground_truth(masks.frame_labels, masks)
    return Dataset("avenue", base, train, test)


def _load_npy_labels(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001
        raise DatasetError(f"{path}: cannot read as a .npy label array ({e})") from e
    if arr.ndim != 1 and not (arr.ndim == 2 and 1 in arr.shape):
        raise DatasetError(f"{path}: expected a [T] array of 0/1 frame labels, got shape "
                           f"{arr.shape}")
    return arr.reshape(-1)


def _open_shanghaitech(root: Path) -> Dataset:
    base = _base(root, "training", "testing")
    train = collect_videos(_first_dir(base, ["training/videos", "training/frames"],
                                      "training videos"), what="training videos")
    test = collect_videos(_first_dir(base, ["testing/frames", "testing/videos"], "test videos"),
                          what="test videos")
    fdir, pdir = base / "testing/test_frame_mask", base / "testing/test_pixel_mask"
    if not fdir.is_dir() and not pdir.is_dir():
        raise DatasetError(f"{base / 'testing'}: expected test_frame_mask/<video>.npy frame "
                           "labels (and optionally test_pixel_mask/<video>.npy), found neither")
    for v in test:
        fpath, ppath = fdir / f"{v.name}.npy", pdir / f"{v.name}.npy"
        masks = None
        if ppath.is_file():
            masks = NpyMasks(ppath)
            if len(masks) != len(v):
                raise DatasetError(f"{ppath}: {len(masks)} pixel masks, test video {v.source} has "
                                   f"{len(v)} frames")
        elif pdir.is_dir() and any(pdir.iterdir()):
            raise DatasetError(f"{ppath}: expected the pixel mask of test video {v.name!r} "
                               "(other videos have one), not found")
        if fpath.is_file():
            labels = _load_npy_labels(fpath)
            if labels.shape[0] != len(v):
                raise DatasetError(f"{fpath}: {labels.shape[0]} frame labels, test video "
                                   f"{v.source} has {len(v)} frames")
            v.set_ground_truth(labels, masks)
        elif masks is not None:
            v.set_ground_truth(masks.frame_labels, masks)
        else:
            raise DatasetError(f"{fpath}: expected the frame labels of test video {v.name!r}, "
                               "not found")
    return Dataset("shanghaitech", base, train, test)


def _parse_ucsd_m(path: Path) -> list[np.ndarray | None]:
    """The `gt_frame` ranges of a UCSD `UCSDpedN.m` file, in order: per entry the 1-based
    inclusive frame numbers (``[61:180]``, ``[5:90, 140:200]``, ``[1 2 3]``)."""
    text = path.read_text(errors="replace")
    out: list[np.ndarray | None] = []
    for m in re.finditer(r"gt_frame\s*=\s*\[([^\]]*)\]", text):
        frames: list[int] = []
        for tok in re.split(r"[,;\s]+", m.group(1).strip()):
            if not tok:
                continue
            if ":" in tok:
                a, b = tok.split(":")[0], tok.split(":")[-1]
                frames.extend(range(int(a), int(b) + 1))
            else:
                frames.append(int(tok))
        out.append(np.asarray(frames, np.int64))
    return out


def _open_ped2(root: Path) -> Dataset:
    base = _base(root, "Train", "Test")
    for sub in ("Train", "Test"):
        if not (base / sub).is_dir():
            raise DatasetError(f"{base}: expected UCSD folders Train/TrainNNN and Test/TestNNN, "
                               f"{base / sub} is missing")
    is_gt = lambda p: p.name.lower().endswith("_gt")  # noqa: E731
    train = collect_videos(base / "Train", exclude=is_gt, what="training frame folders")
    test = collect_videos(base / "Test", exclude=is_gt, what="test frame folders")
    m_files = sorted(p for p in (base / "Test").glob("*.m") if _visible(p))
    m_ranges = _parse_ucsd_m(m_files[0]) if m_files else []
    for k, v in enumerate(test):
        gt = base / "Test" / f"{v.name}_gt"
        if gt.is_dir():
            paths = list_frame_files(gt)
            if len(paths) != len(v):
                raise DatasetError(f"{gt}: {len(paths)} mask images, test video {v.source} has "
                                   f"{len(v)} frames")
            masks = ImageMasks(paths)
            v.set_ground_truth(masks.frame_labels, masks)
            continue
        digits = re.findall(r"\d+", v.name)
        idx = int(digits[-1]) - 1 if digits else k
        if 0 <= idx < len(m_ranges):
            lab = np.zeros(len(v), np.uint8)
            fr = m_ranges[idx]
            if fr.size and (fr.min() < 1 or fr.max() > len(v)):
                raise DatasetError(f"{m_files[0]}: gt_frame entry {idx + 1} names frames "
                                   f"{fr.min()}..{fr.max()}, video {v.name!r} has {len(v)}")
            lab[fr - 1] = 1
            v.set_ground_truth(lab)
            continue
        raise DatasetError(f"{gt}: expected the pixel masks of test video {v.name!r} (or a "
                           f"UCSDped2.m with gt_frame ranges in {base / 'Test'}), not found")
    return Dataset("ped2", base, train, test)


def _read_label_text(path: Path) -> np.ndarray:
    toks = [t for t in re.split(r"[,;\s]+", path.read_text(errors="replace")) if t]
    try:
        vals = np.asarray([float(t) for t in toks])
    except ValueError as e:
        raise DatasetError(f"{path}: expected 0/1 frame labels separated by whitespace or "
                           f"newlines ({e})") from e
    if vals.size and not np.isin(vals, (0.0, 1.0)).all():
        raise DatasetError(f"{path}: expected 0/1 frame labels, found values "
                           f"{np.unique(vals)[:8].tolist()}")
    return vals.astype(np.uint8)


def _open_official(root: Path, labels_dir: str | os.PathLike | None = None) -> Dataset:
    base = _base(root, "train", "test")
    train = collect_videos(_first_dir(base, ["train/frames", "training/frames"], "train frames"),
                           what="training frame folders")
    test = collect_videos(_first_dir(base, ["test/frames", "testing/frames"], "test frames"),
                          what="test frame folders")
    places = ([Path(labels_dir)] if labels_dir is not None else []) + [
        base / "test/labels", base / "test/gt", base / "test", base / "labels", base / "gt",
        base / "test/frames", base]
    for v in test:
        for d in places:
            txt, npy = d / f"{v.name}.txt", d / f"{v.name}.npy"
            if txt.is_file():
                v.set_ground_truth(_with_source(_read_label_text(txt), txt, v))
                break
            if npy.is_file():
                v.set_ground_truth(_with_source(_load_npy_labels(npy), npy, v))
                break
        else:
            raise DatasetError(f"test video {v.name!r}: expected a label file {v.name}.txt in "
                               f"one of {', '.join(str(p) for p in places)}; none found "
                               "(pass labels_dir=...)")
    return Dataset("official", base, train, test)


def _with_source(labels: np.ndarray, path: Path, v: Video) -> np.ndarray:
    if labels.shape[0] != len(v):
        raise DatasetError(f"{path}: {labels.shape[0]} frame labels, test video {v.source} has "
                           f"{len(v)} frames")
    return labels


def _open_folder(root: Path) -> Dataset:
    if root.is_file():
        if root.suffix.lower() not in VIDEO_EXTS:
            raise DatasetError(f"{root}: expected a video file ({', '.join(VIDEO_EXTS)}) or a "
                               "folder")
        videos: list[Video] = [VideoFileVideo(root)]
    elif list_frame_files(root) and not any(_is_video_file(p) for p in root.iterdir()):
        videos = [FrameFolderVideo.from_folder(root)]
    else:
        videos = collect_videos(root)
    return Dataset("folder", root, videos, videos)


def detect_kind(root: str | os.PathLike) -> str:
    """Guess the layout of a data set tree (the `kind` for `open_dataset`)."""
    root = Path(root)
    if root.is_file():
        return "folder"
    for cand in [root] + sorted(d for d in root.iterdir() if d.is_dir() and _visible(d)):
        if (cand / "training_videos").is_dir() or (cand / "testing_videos").is_dir():
            return "avenue"
        if (cand / "testing/test_frame_mask").is_dir() or (cand / "training/videos").is_dir():
            return "shanghaitech"
        if (cand / "Train").is_dir() and (cand / "Test").is_dir():
            return "ped2"
        if (cand / "train/frames").is_dir() and (cand / "test/frames").is_dir():
            return "official"
    return "folder"


def open_dataset(root: str | os.PathLike, kind: str = "auto", *,
                 labels_dir: str | os.PathLike | None = None) -> Dataset:
    """Open the data set at `root` laid out as `kind` (see the module docstring for the
    layouts): "avenue", "shanghaitech", "ped2", "official", "folder" or "auto".

    `labels_dir`: where the per-video label text files are ("official" layout only).
    Raises DatasetError on a tree that does not match the layout.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"{root}: no such file or folder")
    k = str(kind).lower().replace("_", "").replace(" ", "")
    k = _ALIASES.get(k, k)
    if k not in KINDS:
        raise ValueError(f"unknown data set kind {kind!r}; choose one of {KINDS}")
    if k == "auto":
        k = detect_kind(root)
    if k != "folder" and not root.is_dir():
        raise DatasetError(f"{root}: expected the root folder of a {k} data set")
    if labels_dir is not None and k != "official":
        raise ValueError("labels_dir applies to the 'official' layout only")
    if k == "avenue":
        return _open_avenue(root)
    if k == "shanghaitech":
        return _open_shanghaitech(root)
    if k == "ped2":
        return _open_ped2(root)
    if k == "official":
        return _open_official(root, labels_dir)
    return _open_folder(root)
