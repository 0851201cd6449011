"""Dataset readers: lazy access to the videos, frame labels and pixel masks of the usual video
anomaly detection data sets (docs/design.md §6).

`open_dataset(root, kind)` returns a `Dataset` with `.train` and `.test`, lists of `Video`.
Nothing is decoded up front: opening a data set lists files, reads video headers and checks the
shapes of label files (``.npy`` via memory maps, ``.mat`` via `scipy.io.whosmat`), so a malformed
tree fails at once with a `DatasetError` naming the file and what was expected. Frames are
decoded on access (`aedfast.data.videos`), pixel masks read on access (`aedfast.data.masks`).

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
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..frames import list_frame_files
from .errors import DatasetError
from .ground_truth import load_label_array, parse_ucsd_m
from .masks import ImageMasks, MatMasks, NpyMasks
from .videos import (
    VIDEO_EXTS,
    FrameFolderVideo,
    Video,
    VideoFileVideo,
    collect_videos,
    is_video_file,
    is_visible,
)

KINDS = ("avenue", "shanghaitech", "ped2", "official", "folder", "auto")
_ALIASES = {"shanghai": "shanghaitech", "stc": "shanghaitech", "ucsd": "ped2",
            "ucsdped2": "ped2", "aed-mae": "official", "frames": "folder", "videos": "folder"}


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
    subs = [d for d in root.iterdir() if d.is_dir() and is_visible(d)]
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
            labels = load_label_array(fpath)
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


def _open_ped2(root: Path) -> Dataset:
    base = _base(root, "Train", "Test")
    for sub in ("Train", "Test"):
        if not (base / sub).is_dir():
            raise DatasetError(f"{base}: expected UCSD folders Train/TrainNNN and Test/TestNNN, "
                               f"{base / sub} is missing")
    is_gt = lambda p: p.name.lower().endswith("_gt")  # noqa: E731
    train = collect_videos(base / "Train", exclude=is_gt, what="training frame folders")
    test = collect_videos(base / "Test", exclude=is_gt, what="test frame folders")
    m_files = sorted(p for p in (base / "Test").glob("*.m") if is_visible(p))
    m_ranges = parse_ucsd_m(m_files[0]) if m_files else []
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
                v.set_ground_truth(_with_source(load_label_array(npy), npy, v))
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
    elif list_frame_files(root) and not any(is_video_file(p) for p in root.iterdir()):
        videos = [FrameFolderVideo.from_folder(root)]
    else:
        videos = collect_videos(root)
    return Dataset("folder", root, videos, videos)


def detect_kind(root: str | os.PathLike) -> str:
    """Guess the layout of a data set tree (the `kind` for `open_dataset`)."""
    root = Path(root)
    if root.is_file():
        return "folder"
    for cand in [root] + sorted(d for d in root.iterdir() if d.is_dir() and is_visible(d)):
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
