"""Pixel ground truth of one video as a lazy sequence of masks: `masks[i]` -> bool [H, W].

The stores the data set readers meet: a [T, H, W] array (`ArrayMasks`), a memory-mapped
``.npy`` file (`NpyMasks`, ShanghaiTech), one image per frame (`ImageMasks`, UCSD Ped2) and a
MATLAB cell of frame masks (`MatMasks`, Avenue's ``volLabel``). Nothing is read until a mask or
the frame labels are asked for; `frame_labels()` gives uint8 [T], 1 where a mask is not empty.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from .errors import DatasetError


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
