"""UBnormal reader: a source of anomalous objects (frames + masks) for synthetic-anomaly
training (docs/design.md §1, §6).

Layout accepted (lenient). Every folder named ``<video>_annotations`` up to four levels below
ROOT is one annotated video; its frames are, in this order of preference:

- a video file ``<video>.<ext>`` (.mp4, .avi, ...) beside the annotations folder
  (the original release: ROOT/Scene<k>/<video>.mp4 + ROOT/Scene<k>/<video>_annotations/),
- a frame folder ``<video>/`` beside it,
- a frame folder ``../frames/<video>/`` (frames extracted as the official implementation
  expects: ROOT/train/frames/<video>/ + ROOT/train/annotations/<video>_annotations/).

Its per-frame object masks are the images of ``<video>_annotations/<video>_gt/`` if that folder
exists, else the images directly in ``<video>_annotations/`` (e.g. ``<video>_0000_gt.png``), in
natural order, one per frame. A mask pixel holds the id of the object it shows (0 =
background); colour masks use their first channel. The optional
``<video>_annotations/<video>_tracks.txt`` has one anomalous object per line:
``object_id, start, end`` (frames start..end-1, as the official implementation slices them).
Without it, every nonzero id is an object, and each run of consecutive frames in which it
appears is one sequence (found by reading the masks once, on first use).
By default only videos whose name contains "abnormal" are used (UBnormal's anomalous
videos); pass ``only_abnormal=False`` for all annotated videos.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..frames import list_frame_files
from .errors import DatasetError
from .videos import VIDEO_EXTS, FrameFolderVideo, Video, VideoFileVideo


def _read_id_mask(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"{path}: cannot read object mask image")
    return img[..., 0] if img.ndim == 3 else img


@dataclass
class AnomalySequence:
    """One anomalous object over frames `start`..`stop`-1 of a UBnormal video."""

    video: UBnormalVideo
    object_id: int
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start

    def frame(self, i: int) -> np.ndarray:
        """uint8 [H, W, 3] BGR: the i-th frame of the sequence (whole frame)."""
        return self.video.frames[self.start + i]

    def mask(self, i: int) -> np.ndarray:
        """bool [H, W]: the object's pixels in the i-th frame of the sequence."""
        return self.video.object_mask(self.start + i, self.object_id)

    def load(self, *, crop: bool = False, min_area: int = 0, pad: int = 2,
             max_frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(frames uint8 [n, h, w, 3] BGR, masks bool [n, h, w]) of the object.

        `min_area`: the sequence ends before the first frame whose mask has fewer pixels (as
        the official implementation does); `crop`: cut all frames to the union bounding box of
        the masks plus `pad` pixels; `max_frames`: read at most that many frames.
        Frames keep their background (multiply by the mask to isolate the object)."""
        n = len(self) if max_frames is None else min(len(self), max_frames)
        frames, masks = [], []
        for i in range(n):
            m = self.mask(i)
            if min_area > 0 and int(m.sum()) < min_area:
                break
            frames.append(self.frame(i))
            masks.append(m)
        if not frames:
            h, w = self.video.frames.shape
            return np.zeros((0, h, w, 3), np.uint8), np.zeros((0, h, w), bool)
        f, m = np.stack(frames), np.stack(masks)
        if crop and m.any():
            ys, xs = np.nonzero(m.any(axis=0))
            y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, m.shape[1])
            x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, m.shape[2])
            f, m = f[:, y0:y1, x0:x1], m[:, y0:y1, x0:x1]
        return np.ascontiguousarray(f), np.ascontiguousarray(m)


class UBnormalVideo:
    """An annotated UBnormal video: `frames` (a lazy `Video`), per-frame object-id masks and
    the anomalous object tracks."""

    def __init__(self, name: str, frames: Video, mask_paths: list[Path],
                 tracks_file: Path | None):
        if len(mask_paths) != len(frames):
            raise DatasetError(f"{mask_paths[0].parent if mask_paths else name}: "
                               f"{len(mask_paths)} mask images for {len(frames)} frames of "
                               f"{frames.source}")
        self.name = name
        self.frames = frames
        self.mask_paths = mask_paths
        self.tracks_file = tracks_file
        self._tracks: list[tuple[int, int, int]] | None = None
        self._mask_cache: tuple[int, np.ndarray] | None = None
        if tracks_file is not None:
            self._tracks = self._read_tracks(tracks_file)

    def __len__(self) -> int:
        return len(self.frames)

    def _read_tracks(self, path: Path) -> list[tuple[int, int, int]]:
        tracks = []
        for ln, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            toks = [t for t in re.split(r"[,;\s]+", line.strip()) if t]
            if not toks:
                continue
            try:
                obj, start, end = (int(float(t)) for t in toks[:3])
            except ValueError as e:
                raise DatasetError(f"{path}:{ln}: expected 'object_id, start, end', got "
                                   f"{line.strip()!r}") from e
            if len(toks) < 3:
                raise DatasetError(f"{path}:{ln}: expected 'object_id, start, end', got "
                                   f"{line.strip()!r}")
            start, end = max(start, 0), min(end, len(self))
            if end > start:
                tracks.append((obj, start, end))
        return tracks

    def id_mask(self, i: int) -> np.ndarray:
        """The object-id mask of frame i ([H, W] integer, 0 = background), cut to the frame
        size (some masks are a few pixels larger)."""
        if self._mask_cache is not None and self._mask_cache[0] == i:
            return self._mask_cache[1]
        m = _read_id_mask(self.mask_paths[i])
        self._mask_cache = (i, m)
        return m

    def object_mask(self, i: int, object_id: int) -> np.ndarray:
        """bool [H, W]: pixels of object `object_id` in frame i (frame-sized)."""
        m = self.id_mask(i) == object_id
        h, w = self.frames.shape
        if m.shape != (h, w):
            out = np.zeros((h, w), bool)
            hh, ww = min(h, m.shape[0]), min(w, m.shape[1])
            out[:hh, :ww] = m[:hh, :ww]
            m = out
        return m

    @property
    def tracks(self) -> list[tuple[int, int, int]]:
        """(object_id, start, stop) per anomalous object track (stop exclusive)."""
        if self._tracks is None:
            runs: dict[int, int] = {}
            tracks = []
            for i in range(len(self)):
                ids = set(np.unique(self.id_mask(i)).tolist()) - {0}
                for obj in list(runs):
                    if obj not in ids:
                        tracks.append((obj, runs.pop(obj), i))
                for obj in ids:
                    runs.setdefault(int(obj), i)
            tracks += [(obj, s, len(self)) for obj, s in runs.items()]
            self._tracks = sorted(tracks, key=lambda t: (t[1], t[0]))
        return self._tracks

    def __repr__(self) -> str:
        nt = len(self._tracks) if self._tracks is not None else "?"
        return f"UBnormalVideo({self.name!r}, {len(self)} frames, {nt} tracks)"


class UBnormal:
    """The annotated videos of a UBnormal tree (`videos`) and their anomalous objects
    (`sequences()`)."""

    def __init__(self, root: Path, videos: list[UBnormalVideo]):
        self.root = root
        self.videos = videos

    def __len__(self) -> int:
        return len(self.videos)

    def sequences(self, *, min_length: int = 1) -> Iterator[AnomalySequence]:
        """Every anomalous object track of at least `min_length` frames, video by video."""
        for v in self.videos:
            for obj, start, stop in v.tracks:
                if stop - start >= min_length:
                    yield AnomalySequence(v, obj, start, stop)

    def summary(self) -> str:
        """Videos, frames and anomalous object tracks found (reads masks where no tracks
        file exists)."""
        nf = sum(len(v) for v in self.videos)
        tr = [t for v in self.videos for t in v.tracks]
        return (f"UBnormal at {self.root}: {len(self.videos)} annotated videos, {nf} frames, "
                f"{len(tr)} anomalous object tracks ({sum(s - a for _, a, s in tr)} object-frames)")

    def __repr__(self) -> str:
        return (f"UBnormal(root={str(self.root)!r}, {len(self.videos)} videos, "
                f"{sum(len(v) for v in self.videos)} frames)")


def _frames_for(ann_dir: Path, name: str) -> Video | None:
    parent = ann_dir.parent
    for ext in VIDEO_EXTS:
        for cand in (parent / f"{name}{ext}", parent / f"{name}{ext.upper()}"):
            if cand.is_file():
                return VideoFileVideo(cand, name)
    for folder in (parent / name, parent.parent / "frames" / name, parent / "frames" / name):
        if folder.is_dir() and list_frame_files(folder):
            return FrameFolderVideo.from_folder(folder, name)
    return None


def open_ubnormal(root: str | os.PathLike, *, only_abnormal: bool = True) -> UBnormal:
    """Open a UBnormal tree (layout in the module docstring). Raises DatasetError when no
    annotated video is found or one is malformed (the message names the file)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: expected the UBnormal root folder, not found")
    ann_dirs: list[Path] = []
    for cur, dirs, _ in os.walk(root):
        if len(Path(cur).relative_to(root).parts) >= 4:
            dirs[:] = []
        for d in sorted(dirs):
            if d.endswith("_annotations") and not d.startswith("."):
                ann_dirs.append(Path(cur) / d)
                # masks live inside; no need to walk into it
        dirs[:] = [d for d in dirs if not d.endswith("_annotations")]
    videos = []
    for ann in sorted(ann_dirs):
        name = ann.name[: -len("_annotations")]
        if only_abnormal and "abnormal" not in name.lower():
            continue
        frames = _frames_for(ann, name)
        if frames is None:
            raise DatasetError(f"{ann}: annotations of video {name!r} but no frames: expected "
                               f"{ann.parent / (name + '.mp4')} (or another video file), a "
                               f"frame folder {ann.parent / name} or "
                               f"{ann.parent.parent / 'frames' / name}")
        gt = ann / f"{name}_gt"
        mask_dir = gt if gt.is_dir() else ann
        paths = list_frame_files(mask_dir)
        if not paths:
            raise DatasetError(f"{mask_dir}: expected per-frame object mask images of video "
                               f"{name!r}, found none")
        tracks = ann / f"{name}_tracks.txt"
        videos.append(UBnormalVideo(name, frames, paths, tracks if tracks.is_file() else None))
    if not videos:
        raise DatasetError(f"{root}: no annotated {'abnormal ' if only_abnormal else ''}videos "
                           "found (expected <video>_annotations folders beside <video>.mp4 "
                           "files, e.g. ROOT/Scene1/abnormal_scene_1_scenario_1_annotations)")
    return UBnormal(root, videos)
