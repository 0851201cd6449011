"""Video decoding: open a video file with a chosen decoder and get its frames as chunks of
uint8 [n, H, W, 3] BGR frames, on the host or already on the Detector's device
(docs/design.md §12).

`decode` values (`Detector.score_video(decode=...)`, `aedfast score --decode`):

- "opencv" (the default): `cv2.VideoCapture` on the host, through `aedfast.frames.FrameSource`.
  The reference: the official pre-processing reads frames with OpenCV.
- "cpu": torchcodec's FFmpeg decoder on the host (uint8 CPU tensors; pinned when the Detector
  is on CUDA, so the upload is asynchronous). On the videos tested it gives the same pixels as
  OpenCV: both convert YUV to BGR with libswscale's default BT.601 matrices (§12).
- "gpu": torchcodec on the Detector's CUDA device (NVDEC): frames are decoded, converted to
  RGB and kept in device memory, then flipped to BGR there; no host round trip. Needs a CUDA
  Detector, a CUDA build of torchcodec matching torch, FFmpeg's shared libraries and the
  driver's NVDEC library (libnvcuvid). Its colour conversion is torchcodec's CUDA one, not
  libswscale's: pixel differences to OpenCV are measured by bench/decode_bench.py.
- "auto": "gpu" where it works (a CUDA Detector, and torchcodec opens the file there), else
  "opencv", with one logged line saying why (INFO on a CPU Detector, where OpenCV is the
  expected choice; WARNING on a CUDA one).

Only video files go through torchcodec: folders of images, arrays, iterables and cameras are
always read by `FrameSource` ("auto" and "opencv" accept them; "cpu" and "gpu" refuse them
with a ValueError naming the source).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import cv2
import torch

from .frames import FrameSource

__all__ = ["DECODE_CHOICES", "TorchcodecSource", "check_decode", "open_frames",
           "torchcodec_problem"]

DECODE_CHOICES = ("opencv", "cpu", "gpu", "auto")
INSTALL_HINT = ("install torchcodec (pip install 'aedfast[decode]'; on a CPU-only torch "
                "torchcodec==0.13.0, the last CPU build on PyPI) and FFmpeg's shared libraries "
                "(e.g. apt-get install ffmpeg); see docs/design.md §12")

log = logging.getLogger(__name__)


def check_decode(decode: str) -> str:
    """`decode` if it is one of DECODE_CHOICES, else a ValueError naming the choices."""
    if decode not in DECODE_CHOICES:
        raise ValueError(f"decode must be one of {', '.join(DECODE_CHOICES)}; got {decode!r}")
    return decode


def _load_torchcodec() -> ModuleType:
    """The torchcodec module, or a RuntimeError saying why it cannot decode video here."""
    try:
        import torchcodec
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except Exception as e:  # ImportError, or its native libraries failing to load
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise RuntimeError(f"torchcodec is not usable ({type(e).__name__}: {first}); "
                           f"{INSTALL_HINT}") from e
    if getattr(torchcodec, "ffmpeg_major_version", 0) is None:  # torchcodec >= 0.14 imports
        raise RuntimeError("torchcodec found no FFmpeg shared libraries (libavcodec ...); "
                           + INSTALL_HINT)
    return torchcodec


def torchcodec_problem() -> str | None:
    """None when torchcodec can decode video on this machine, else why not (one line)."""
    try:
        _load_torchcodec()
    except RuntimeError as e:
        return str(e)
    return None


class TorchcodecSource(FrameSource):
    """One video file decoded by torchcodec on `device` ("cpu" or a CUDA device), as chunks of
    uint8 [n, H, W, 3] BGR tensors on that device, in a background thread (the `FrameSource`
    interface: `chunks()`, `total`, `name`, `truncated`; `decoder` names what decodes).

    Frames are read in order with `get_frames_in_range` (torchcodec's "exact" seek mode: the
    file is scanned once on opening, so `total` is the count of frames in the stream). A file
    whose header announces more frames than the stream holds (truncated) is scored up to its
    last frame, with a RuntimeWarning, as `FrameSource` does."""

    def __init__(self, path: str | os.PathLike, *, device: torch.device | str, chunk: int,
                 max_frames: int | None = None, threads: int = 0, pin: bool = False):
        tc = _load_torchcodec()
        from torchcodec.decoders import VideoDecoder

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no such video file: {path}")
        self.device = torch.device(device)
        where = "cuda" if self.device.type == "cuda" else "cpu"
        try:
            dec = VideoDecoder(str(path), device=str(self.device), dimension_order="NHWC",
                               seek_mode="exact", num_ffmpeg_threads=int(threads))
        except Exception as e:  # not a video, unsupported codec, no NVDEC, ...
            why = (str(e).strip().splitlines() or [""])[0].split(", ")[-1][:200]
            raise ValueError(f"cannot open video {path} with torchcodec on {where} ({why})"
                             ) from e
        self._dec = dec
        self.chunk = max(1, int(chunk))
        self.pin = bool(pin) and self.device.type == "cpu"  # pinned host chunks for CUDA
        self.max_frames = max_frames
        self.name = str(path)
        self.truncated = False
        self._direct = self._producer = self._cap = None
        n = len(dec)
        self._header = getattr(dec.metadata, "num_frames_from_header", None)
        self.total = n if max_frames is None else min(n, int(max_frames))
        version = getattr(tc, "__version__", "?")
        self.decoder = f"torchcodec {version} " + ("nvdec" if where == "cuda" else "cpu")
        self._fallback_checked = where == "cpu"

    def _check_fallback(self) -> None:
        """NVDEC may refuse a codec and torchcodec then decodes on the CPU (frames still land
        on the device): say so once, after the first chunk (when torchcodec knows)."""
        self._fallback_checked = True
        status = getattr(self._dec, "cpu_fallback", None)
        if status is not None and bool(status):
            self.decoder += " (CPU fallback)"
            log.warning("%s: torchcodec decodes this video on the CPU, not with NVDEC (%s)",
                        self.name, status)

    def _decode_chunks(self) -> Iterator[torch.Tensor]:
        i, stop = 0, self.total
        while i < stop:
            j = min(i + self.chunk, stop)
            try:
                rgb = self._dec.get_frames_in_range(i, j).data  # uint8 [n, H, W, 3] RGB
            except Exception as e:  # a damaged frame: keep what decoded, as OpenCV does
                self.truncated = True
                warnings.warn(f"{self.name}: torchcodec stopped at frame {i} of {stop} "
                              f"({type(e).__name__}); scoring the {i} decoded frames",
                              RuntimeWarning, stacklevel=3)
                return
            if not self._fallback_checked:
                self._check_fallback()
            yield to_bgr(rgb)
            i = j
        n = len(self._dec)
        if self._header and self._header > n and (self.max_frames is None
                                                   or self.max_frames > n):
            self.truncated = True
            warnings.warn(f"{self.name}: the container announces {self._header} frames but "
                          f"only {n} could be decoded (truncated or damaged file); scoring "
                          f"the {n} decoded frames", RuntimeWarning, stacklevel=3)

    def chunks(self) -> Iterator[torch.Tensor]:
        """uint8 [n, H, W, 3] BGR tensors on `device`, decoded in a background thread."""
        yield from self._threaded(self._decode_chunks())


def to_bgr(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 [n, H, W, 3] RGB -> BGR (OpenCV's order). On the CPU in place, frame by frame
    with cv2.cvtColor (about 8x cheaper there than torch's flip, which would cost more than
    decoding); on a GPU with a flip on the device."""
    if rgb.device.type != "cpu":
        return rgb.flip(-1)
    rgb = rgb.contiguous()
    a = rgb.numpy()
    for f in a:  # each f is a contiguous view: cvtColor writes into it
        cv2.cvtColor(f, cv2.COLOR_RGB2BGR, dst=f)
    return rgb


def _is_file_path(source) -> bool:
    return isinstance(source, (str, os.PathLike)) and "://" not in str(source)


def open_frames(source, *, decode: str = "opencv", device: torch.device | str = "cpu",
                chunk: int = 64, max_frames: int | None = None, threads: int = 0
                ) -> FrameSource:
    """The frames of `source` (anything `FrameSource` reads) as a `FrameSource`-like object
    whose `chunks()` yield uint8 [n, H, W, 3] BGR frames (numpy or torch; on `device` for
    decode "gpu"), with `decoder` naming what decodes: "opencv", "array" or
    "torchcodec <version> cpu|nvdec".

    decode: "opencv", "cpu", "gpu" or "auto" (module docstring). device: the device the frames
    are for (the Detector's). threads: torchcodec's FFmpeg threads on the CPU (0: FFmpeg
    chooses, as OpenCV's capture does). Raises FileNotFoundError for a missing path,
    ValueError for an unknown `decode`, a file that is not a video, or "cpu" / "gpu" with a
    source that is not a video file; RuntimeError when "cpu" / "gpu" cannot run here (why,
    and what to install)."""
    decode = check_decode(decode)
    device = torch.device(device)
    pin = device.type == "cuda"
    is_path = _is_file_path(source)
    if is_path and not Path(source).exists():
        raise FileNotFoundError(f"no such video file or folder: {source}")
    is_file = is_path and Path(source).is_file()
    if decode in ("cpu", "gpu") and not is_file:
        what = f"folder {source}" if is_path else repr(source)[:80]
        raise ValueError(f"decode={decode!r} reads video files, and {what} is not one; "
                         "folders, arrays and cameras are read with OpenCV (decode='opencv' "
                         "or 'auto')")
    if decode == "cpu":
        return TorchcodecSource(source, device="cpu", chunk=chunk, max_frames=max_frames,
                                threads=threads, pin=pin)
    if decode == "gpu":
        if device.type != "cuda":
            raise ValueError(f"decode='gpu' decodes on the Detector's CUDA device; this one "
                             f"runs on {device} (use decode='cpu', 'opencv' or 'auto')")
        return TorchcodecSource(source, device=device, chunk=chunk, max_frames=max_frames)
    if decode == "auto" and is_file:
        if device.type != "cuda":
            log.info("decode='auto': %s is decoded with OpenCV (the Detector runs on the CPU; "
                     "GPU decoding needs CUDA)", source)
        else:
            try:
                return TorchcodecSource(source, device=device, chunk=chunk,
                                        max_frames=max_frames)
            except (RuntimeError, ValueError) as e:
                log.warning("decode='auto': GPU decoding unavailable for %s, using OpenCV (%s)",
                            source, e)
    src = FrameSource(source, chunk, pin=pin, max_frames=max_frames)
    src.decoder = "opencv" if is_path or isinstance(source, (int, str)) else "array"
    return src
