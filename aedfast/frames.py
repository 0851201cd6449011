"""Frames in: the one frame lister, frame validation, frame sources and the resizes.

Every path that reads frames goes through this module (docs/design.md §2, §6):

- `list_frame_files`: the frame images of a folder, natural order (used by scoring, the data
  set readers, training and the anomaly sources alike).
- `check_frames_array`: uint8 [T, H, W(, 1|3|4)] or a clear error.
- `FrameSource`: one video (file, folder, camera, array or iterable) as chunks of uint8
  [n, H0, W0, C], decoded in a background thread.
- Resizes to the preset's size, all equal to ``cv2.resize(INTER_LINEAR)`` (the official
  pre-processing): `resize_frame` (one numpy frame), `resize_frames_host` (a CPU batch, frame
  by frame with OpenCV) and `cv2_resize` (the same in integer tensor arithmetic, for frames
  already on a GPU): half-pixel sampling without anti-aliasing, OpenCV's 11-bit fixed-point
  weights and its SIMD rounding. It is bit-exact with opencv-python for the official sizes
  (360x640 -> 320x640, 480x856 -> 160x320) and every size tested; OpenCV's scalar tail loop,
  used for rows whose width x 3 is not a multiple of its vector width, rounds differently, so
  other sizes may differ by one grey level on a few pixels.
"""

from __future__ import annotations

import os
import queue
import re
import threading
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
import torch

__all__ = [
    "IMAGE_EXTENSIONS", "FrameSource", "check_frames_array", "cv2_resize", "list_frame_files",
    "natural_key", "prepare_frames", "resize_frame", "resize_frames_host",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# ----------------------------------------------------------------------------- resize

_COEF_BITS = 11  # OpenCV's INTER_RESIZE_COEF_BITS


def _linear_coeffs(src: int, dst: int, clamp: bool) -> tuple[np.ndarray, ...]:
    """OpenCV's INTER_LINEAR taps along one axis: source indices (i0, i1) and 11-bit weights
    (w0, w1) per output index. Columns clamp the position (fx = 0 at the borders); rows keep
    the unclamped weights and clamp only the source rows, as cv::resize does."""
    scale = np.float64(src) / np.float64(dst)
    f = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    i = np.floor(f).astype(np.int64)
    f = (f - i.astype(np.float32)).astype(np.float32)
    if clamp:
        lo, hi = i < 0, i >= src - 1
        f[lo | hi] = 0
        i[lo] = 0
        i[hi] = src - 1
    one = np.float32(1 << _COEF_BITS)
    w0 = np.rint((np.float32(1) - f) * one).astype(np.int32)  # saturate_cast<short>: cvRound
    w1 = np.rint(f * one).astype(np.int32)
    return np.clip(i, 0, src - 1), np.clip(i + 1, 0, src - 1), w0, w1


_COEF_CACHE: dict[tuple, tuple[torch.Tensor, ...]] = {}


def cv2_resize(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 [n, C, H0, W0] -> uint8 [n, C, H, W], = cv2.resize(INTER_LINEAR) per frame.

    Horizontal pass: int32 sums src[i0] * w0 + src[i1] * w1 (exact). Vertical pass: OpenCV's
    SIMD fixed-point form (((r0 >> 4) * b0) >> 16) + (((r1 >> 4) * b1) >> 16) + 2) >> 2.
    """
    H, W = int(size[0]), int(size[1])
    h0, w0 = frames.shape[-2:]
    key = (h0, w0, H, W, frames.device)
    if key not in _COEF_CACHE:
        cx = _linear_coeffs(w0, W, clamp=True)
        cy = _linear_coeffs(h0, H, clamp=False)
        dev = frames.device
        _COEF_CACHE[key] = tuple(
            torch.from_numpy(a).to(dev, torch.int64 if k < 2 else torch.int32)
            for c in (cx, cy) for k, a in enumerate(c))
    ix0, ix1, ax0, ax1, iy0, iy1, by0, by1 = _COEF_CACHE[key]
    x = frames.to(torch.int32)
    row = x.index_select(3, ix0) * ax0 + x.index_select(3, ix1) * ax1  # [n, C, H0, W]
    r0 = (row.index_select(2, iy0) >> 4) * by0[:, None]
    r1 = (row.index_select(2, iy1) >> 4) * by1[:, None]
    out = ((r0 >> 16) + (r1 >> 16) + 2) >> 2
    return out.clamp_(0, 255).to(torch.uint8)


def resize_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [h, w, C] -> uint8 [H, W, C] with cv2.resize(INTER_LINEAR), the official
    pre-processing (docs/design.md §2); returned as is when it already has that size."""
    H, W = int(size[0]), int(size[1])
    if frame.shape[:2] == (H, W):
        return frame
    return cv2.resize(frame, (W, H), interpolation=cv2.INTER_LINEAR)


def resize_frames_host(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 [n, H0, W0, 3] CPU tensor -> uint8 [n, H, W, 3]: `resize_frame` per frame
    (OpenCV releases the GIL and uses its own threads)."""
    H, W = int(size[0]), int(size[1])
    src = frames.contiguous().numpy()
    out = np.empty((src.shape[0], H, W, 3), dtype=np.uint8)
    for i in range(src.shape[0]):
        out[i] = resize_frame(src[i], (H, W))
    return torch.from_numpy(out)


# ------------------------------------------------------------ folders, validation, sources


def natural_key(name: str) -> tuple:
    """Sort key that orders embedded numbers numerically ("2.jpg" < "10.jpg")."""
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in parts if p)


def list_frame_files(folder: str | os.PathLike) -> list[Path]:
    """The frame images directly in `folder`, in natural order (2.jpg before 10.jpg).

    The one frame lister of aedfast: scoring, evaluation, training and the data set readers
    all read a folder through it, so they see the same frames. Hidden files (names starting
    with "." or "_") are skipped, and only the folder's most common image extension is kept
    (a folder of .tif frames may also hold a stray thumbnail). [] when there are none."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith((".", "_"))
             and p.suffix.lower() in IMAGE_EXTENSIONS]
    if not files:
        return []
    counts: dict[str, int] = {}
    for p in files:
        counts[p.suffix.lower()] = counts.get(p.suffix.lower(), 0) + 1
    ext = max(counts, key=lambda e: (counts[e], e))
    return sorted((p for p in files if p.suffix.lower() == ext), key=lambda p: natural_key(p.name))


def check_frames_array(a, what: str = "frames") -> None:
    """Raise a clear TypeError/ValueError unless `a` is uint8 [T, H, W], [T, H, W, 1|3|4]."""
    dtype = a.dtype
    if dtype not in (np.uint8, torch.uint8):
        raise TypeError(f"{what} must be uint8 (as OpenCV reads them), got {dtype}; convert "
                        "with e.g. np.clip(x, 0, 255).astype(np.uint8)")
    if a.ndim not in (3, 4) or (a.ndim == 4 and a.shape[-1] not in (1, 3, 4)):
        raise ValueError(f"{what} must be [T, H, W, 3] (BGR), [T, H, W] or [T, H, W, 1] "
                         f"(grey) or [T, H, W, 4] (BGRA), got shape {tuple(a.shape)}")
    if a.shape[1] < 1 or a.shape[2] < 1:
        raise ValueError(f"{what} have an empty frame size {tuple(a.shape[1:3])}")


class FrameSource:
    """Frames of one video as chunks of uint8 [n, H0, W0, C] (numpy or torch), produced in a
    background thread (decoding overlaps the model); on CUDA, host chunks are staged in
    pinned buffers so the upload is asynchronous."""

    def __init__(self, source, chunk: int, pin: bool, max_frames: int | None):
        self.chunk = max(1, int(chunk))
        self.pin = pin
        self.max_frames = max_frames
        self.total: int | None = None
        self.name = "array"
        self.truncated = False
        self._direct: torch.Tensor | np.ndarray | None = None
        self._producer = None
        self._cap = None
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            self.name = str(path)
            if path.is_dir():
                files = list_frame_files(path)
                if not files:
                    raise ValueError(f"{path}: no frame images ({', '.join(IMAGE_EXTENSIONS)})")
                self.total = len(files)
                self._producer = self._folder_frames(files)
            elif path.is_file():
                self._open_capture(str(path))
            else:
                raise FileNotFoundError(f"no such video file or folder: {path}")
        elif isinstance(source, int) or (isinstance(source, str) and "://" in source):
            self._open_capture(source)
        elif isinstance(source, (np.ndarray, torch.Tensor)):
            check_frames_array(source)
            self.total = int(source.shape[0])
            self._direct = source
        elif isinstance(source, Iterable):
            self._producer = self._iter_frames(iter(source))
        else:
            raise TypeError(f"cannot read frames from a {type(source).__name__}: give a video "
                            "path, a folder of images, a [T, H, W, 3] uint8 array or tensor, "
                            "or an iterable of [H, W, 3] uint8 frames")
        if self.total is not None and max_frames is not None:
            self.total = min(self.total, int(max_frames))

    def _open_capture(self, src) -> None:
        cap = cv2.VideoCapture(src)
        if not cap.isOpened():
            raise ValueError(f"cannot open video {src!r} (unreadable or not a video)")
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.total = n if n > 0 else None
        self.name = str(src)
        self._cap = cap
        self._producer = self._capture_frames(cap)

    # -- producers: yield single frames [H, W, C] ---------------------------------------

    def _capture_frames(self, cap) -> Iterator[np.ndarray]:
        try:
            while True:
                ok, frame = cap.read()
                if not ok or frame is None:
                    break
                yield frame
        finally:
            cap.release()

    def _folder_frames(self, files: list[Path]) -> Iterator[np.ndarray]:
        for f in files:
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)  # BGR, grey expanded, as the official
            if img is None:
                raise ValueError(f"cannot read image {f}")
            yield img

    def _iter_frames(self, it: Iterator) -> Iterator[np.ndarray]:
        for i, fr in enumerate(it):
            if isinstance(fr, torch.Tensor):
                fr = fr.detach().cpu().numpy()
            fr = np.asarray(fr)
            check_frames_array(fr[None], what=f"frame {i}")
            yield fr

    # -- chunks ---------------------------------------------------------------------------

    def chunks(self) -> Iterator[torch.Tensor | np.ndarray]:
        """Chunks of consecutive frames, all of one size within a chunk."""
        if self._direct is not None:
            arr = self._direct
            n = arr.shape[0] if self.max_frames is None else min(arr.shape[0], self.max_frames)
            if self.pin and isinstance(arr, np.ndarray | torch.Tensor) and not (
                    isinstance(arr, torch.Tensor) and (arr.is_cuda or arr.is_pinned())):
                yield from self._threaded(arr[i:i + self.chunk] for i in range(0, n, self.chunk))
            else:
                for i in range(0, n, self.chunk):
                    yield arr[i:i + self.chunk]
            return
        yield from self._threaded(self._group(self._producer))

    def _group(self, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        buf: list[np.ndarray] = []
        count = 0
        for fr in frames:
            if buf and (fr.shape != buf[0].shape or len(buf) == self.chunk):
                yield np.stack(buf)
                buf = []
            buf.append(fr)
            count += 1
            if self.max_frames is not None and count >= self.max_frames:
                break
        if buf:
            yield np.stack(buf)
        if self._cap is not None and self.total is not None and count < self.total and (
                self.max_frames is None or count < self.max_frames):
            self.truncated = True
            warnings.warn(f"{self.name}: the container announces {self.total} frames but only "
                          f"{count} could be decoded (truncated or damaged file); scoring the "
                          f"{count} decoded frames", RuntimeWarning, stacklevel=4)

    def _threaded(self, gen: Iterator) -> Iterator:
        """Run `gen` in a background thread (bounded queue); on CUDA copy each chunk into a
        pinned buffer there, so the host copy overlaps the device work too."""
        q: queue.Queue = queue.Queue(maxsize=3)
        stop = threading.Event()
        done = object()
        pin = self.pin

        def work() -> None:
            try:
                for c in gen:
                    if stop.is_set():
                        return
                    if pin:
                        t = torch.as_tensor(c) if isinstance(c, np.ndarray) else c
                        c = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
                        c.copy_(t)
                    q.put(c)
                q.put(done)
            except BaseException as e:  # forwarded to the consumer
                q.put(e)

        th = threading.Thread(target=work, name="aedfast-reader", daemon=True)
        th.start()
        try:
            while True:
                item = q.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while th.is_alive():  # unblock a producer waiting on a full queue
                try:
                    q.get_nowait()
                except queue.Empty:
                    th.join(timeout=0.05)


def prepare_frames(frames: torch.Tensor | np.ndarray, size: tuple[int, int],
                   device: torch.device, channel_order: str = "bgr") -> torch.Tensor:
    """Frames as the model step reads them: uint8 [n, H0, W0, C] (C = 3 BGR, 1 grey, 4 BGRA;
    or [n, H0, W0] grey), on the host or the device -> uint8 [n, 3, H, W] on `device`,
    resized to `size` = (H, W) as cv2.resize(INTER_LINEAR) does, in BGR order. On the CPU
    OpenCV itself resizes (the reference, and far cheaper than the tensor form); on a GPU
    `cv2_resize` does, on the device."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    check_frames_array(frames)
    if channel_order not in ("bgr", "rgb"):
        raise ValueError(f"channel_order must be 'bgr' or 'rgb', got {channel_order!r}")
    x = frames.to(device, non_blocking=True)
    if x.dim() == 3:
        x = x.unsqueeze(-1)
    c = x.shape[-1]
    if c == 1:
        x = x.expand(-1, -1, -1, 3)
    elif c == 4:
        x = x[..., :3]  # drop alpha
    if channel_order == "rgb":
        x = x.flip(-1)
    H, W = int(size[0]), int(size[1])
    if x.device.type == "cpu" and tuple(x.shape[1:3]) != (H, W):
        return resize_frames_host(x, (H, W)).permute(0, 3, 1, 2).contiguous()
    x = x.permute(0, 3, 1, 2)
    if tuple(x.shape[-2:]) == (H, W):
        return x.contiguous()
    step = 64  # bounds the int32 temporaries
    return torch.cat([cv2_resize(x[i:i + step], (H, W)) for i in range(0, x.shape[0], step)])
