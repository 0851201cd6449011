"""Lazy videos: `Video` (frames decoded on access, a small cache of recent frames, frame labels
and pixel masks attached by the data set readers), its two stores `FrameFolderVideo` (one image
per frame) and `VideoFileVideo` (a video file decoded sequentially with OpenCV; the model reads
frames t-3, t, t+3, so consecutive reads hit the cache), and `collect_videos`, the videos of a
folder.

Frames are uint8 [H, W, 3] BGR (as OpenCV reads them); grey images are converted to BGR.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from ..frames import IMAGE_EXTENSIONS, list_frame_files, natural_key
from .errors import DatasetError
from .masks import Masks

IMAGE_EXTS = IMAGE_EXTENSIONS  # the frame lister's extensions (aedfast.frames)
VIDEO_EXTS = (".avi", ".mp4", ".mov", ".mkv", ".mpg", ".mpeg", ".m4v", ".wmv", ".webm", ".flv")


def is_visible(p: Path) -> bool:
    """Whether `p` is a data set entry: its name starts with neither "." nor "_"."""
    return not p.name.startswith((".", "_"))


def is_video_file(p: Path) -> bool:
    """Whether `p` is a visible file with a video extension (`VIDEO_EXTS`)."""
    return p.is_file() and is_visible(p) and p.suffix.lower() in VIDEO_EXTS


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


def collect_videos(folder: Path, *, exclude: Callable[[Path], bool] | None = None,
                   what: str = "videos") -> list[Video]:
    """The videos in `folder`: its video files and its sub-folders of frame images, in natural
    order of name. Raises DatasetError if there are none."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: expected a folder of {what}, not found")
    videos: list[Video] = []
    for p in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        if not is_visible(p) or (exclude is not None and exclude(p)):
            continue
        if is_video_file(p):
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
