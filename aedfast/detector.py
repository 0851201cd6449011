"""Detector: uint8 frames in, smoothed anomaly scores out, for video files, frame folders,
arrays and cameras.

Data flows one way: frames (`aedfast.frames`: sources, resizes) -> the model step
(`aedfast.step`: compiled, CUDA graphs) -> maps -> 3D filter + frame max and temporal
smoothing (`aedfast.scoring`) -> scores. Live streams are `aedfast.stream.DetectorStream`.

Pre-processing (docs/design.md §2), once per frame: frames come as uint8 (H0 x W0 x 3, BGR as
OpenCV reads them) and are resized to the preset's size as ``cv2.resize(INTER_LINEAR)`` does
(`aedfast.frames.prepare_frames`). The resized uint8 frames live in a frame store (a ring
buffer per video); each model step gathers frames t-3, t, t+3 (frame t where a neighbour
does not exist) from it and scales them as (v - 127.5) / 127.5 inside the compiled step.

Speed: on CUDA each step (gather, scale, model, maps) is captured as a CUDA graph per batch
bucket over static buffers, around a torch.compile'd model, in bfloat16 by default (built, not
yet measured on a GPU: see README "Status"). Its CvT blocks run the fused "triton" kernels or
the "torch" reference ops, whichever was measured faster on this GPU at these shapes
(backend "auto", `aedfast.backend_choice`: timed on first use, cached on disk). On the CPU the
model runs the "torch" backend (folded BatchNorm, SDPA) compiled by inductor in float32. The
baseline every fast path is checked against is backend "eager", compile=False,
cuda_graphs=False, precision "fp32". `describe()` reports the backend that runs, the one
asked for and why they differ.
"""

from __future__ import annotations

import copy
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from . import backend_choice as choice
from .alarms import Event, video_alarms
from .calibration import (
    Calibration,
    detector_signature,
    model_fingerprint,
    resolve_calibration,
)
from .decode import open_frames
from .frames import prepare_frames
from .model import AEDMAE, load_model
from .progress import progress_bar
from .scoring import PROTOCOLS, ChunkFilter, Smoothing, finish_scores, resolve_smoothing
from .step import OFFSET, StepCore, StepRunner, stack_indices

if TYPE_CHECKING:
    from .stream import DetectorStream

__all__ = ["PRECISIONS", "Detector", "VideoResult"]

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class VideoResult:
    """Scores of one video. T = the number of input frames.

    scores: float32 [T] the smoothed frame scores, one per input frame.
    raw_scores: float32 [T] before any smoothing (paper: max of each frame's map; official:
        the token-mean frame score).
    maps: float32 [T, H, W] (pixel) or [T, h, w] (token) anomaly maps before filtering, when
        asked for (return_maps=True), else None.
    frames, seconds, fps: frames scored, wall-clock seconds end to end (decode included),
        frames per second.
    alarms: bool [T], True on the frames of an event, and events: the `aedfast.alarms.Event`s
        (start, end, peak frame, peak score, map peak row/col) at the Detector's calibrated
        threshold (docs/design.md §13); None when the Detector has no calibration.
    """

    scores: np.ndarray
    raw_scores: np.ndarray
    maps: np.ndarray | None = None
    frames: int = 0
    seconds: float = 0.0
    fps: float = 0.0
    info: dict = field(default_factory=dict)
    alarms: np.ndarray | None = None
    events: list[Event] | None = None

    def __len__(self) -> int:
        return int(self.frames)

    @property
    def pred_score(self) -> np.ndarray:
        """`scores` under anomalib's name: float32 [T], one smoothed score per frame."""
        return self.scores

    @property
    def anomaly_map(self) -> np.ndarray | None:
        """`maps` under anomalib's name: float32 [T, H, W] (or [T, h, w]), or None."""
        return self.maps


# ----------------------------------------------------------------------------- detector


def _auto_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS/Windows
        return os.cpu_count() or 1


class Detector:
    """Scores videos and live streams with an AED-MAE.

    Args:
        model_or_checkpoint: an AEDMAE (copied, the caller's model is left untouched), a
            native .safetensors checkpoint, an official .pth teacher checkpoint, or a
            (teacher.pth, student.pth) pair.
        preset: the preset of official checkpoints (native ones carry their config).
        device: "cuda", "cuda:1", "cpu"; default CUDA when available.
        precision: "fp32", "bf16" (weights and activations in bfloat16; the fused kernels
            accumulate in float32), or "auto" = bf16 on CUDA, fp32 on the CPU.
        batch_size: frames per model step (the largest bucket).
        compile: torch.compile the step (inductor).
        cuda_graphs: capture the step as CUDA graphs per batch bucket (CUDA only).
        seed: masking-noise seed (see `frame_noise`).
        smoothing: a `Smoothing`, a dict of its fields overriding the protocol's default, or
            None (no smoothing: scores = raw scores).
        protocol: "paper" (pixel maps, 3D filter, frame max, temporal Gaussian) or "official"
            (token-mean scores and the official filter, docs/design.md §2/§5).
        official_dataset: which official rule ("avenue" or "shanghaitech"); default from the
            model's preset name (avenue unless it is "shanghaitech").
        backend: "auto", "triton", "torch" or "eager"; default: the environment variable
            AEDFAST_BACKEND, else "auto" (`aedfast.backend_choice`): on CUDA the faster of
            "triton" and "torch" per part (encoder, decoder blocks), measured at this
            Detector's largest bucket and precision on first use and cached per device,
            versions and shape; "torch" on the CPU, without timing. "triton" where Triton
            cannot run (CPU without TRITON_INTERPRET=1, triton missing) becomes "torch" with
            a warning; a fused backend that cannot be set falls back to "eager" with a
            warning. `backend` and `describe()` report what runs.
        warmup: settle the backend (measure, or read the cached choice) now instead of on
            first use.
        buckets: batch sizes with their own compiled step / CUDA graph (default 1, 8, 64, 256
            up to batch_size, and batch_size).
        threads: CPU threads for torch (default: leave torch's setting, capped at the cores
            this process may use).
        calibration: alarm thresholds (`aedfast.calibration.Calibration`, docs/design.md §13):
            "auto" (default: CK.calibration.json beside the checkpoint file when there is
            one; skipped with a warning when it was made with other scoring settings), None,
            a path, a dict or a Calibration (ValueError when made for another scorer). With
            one, `score_video` returns alarms and events and streams raise events.
        alarm_rate: which calibrated false-alarm rate sets the threshold ("1/h", or a number
            per hour the calibration covers); default its first rate.
    """

    def __init__(self, model_or_checkpoint: AEDMAE | str | os.PathLike | tuple, *,
                 preset: str = "avenue", device: str | torch.device | None = None,
                 precision: str = "auto", batch_size: int = 64, compile: bool = True,
                 cuda_graphs: bool = True, seed: int = 0,
                 smoothing: Smoothing | Mapping | None | str = "default",
                 protocol: str = "paper", official_dataset: str | None = None,
                 backend: str | None = None, buckets: Sequence[int] | None = None,
                 threads: int | None = None, warmup: bool = False,
                 calibration: Calibration | Mapping | str | os.PathLike | None = "auto",
                 alarm_rate: str | float | None = None):
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        requested, source = choice.requested_backend(backend)
        self.device = torch.device(device) if device is not None else _auto_device()
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' asked for but CUDA is not available")
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        if self.device.type == "cpu":
            cores = _cpu_cores()
            if threads is not None:
                torch.set_num_threads(max(1, int(threads)))
            elif torch.get_num_threads() > cores:
                torch.set_num_threads(cores)

        src = load_model(model_or_checkpoint, preset=preset)
        model = copy.deepcopy(src).eval()
        for prm in model.parameters():
            prm.requires_grad_(False)
        self.config = model.config
        self.protocol = protocol
        name = self.config.name
        self.official_dataset = official_dataset or (
            "shanghaitech" if name == "shanghaitech" else "avenue")
        if self.official_dataset not in ("avenue", "shanghaitech"):
            raise ValueError("official_dataset must be 'avenue' or 'shanghaitech'")
        self.smoothing = resolve_smoothing(smoothing, protocol, self.official_dataset,
                                           getattr(src, "cls_head_trained", True))
        self.seed = int(seed)
        self.fingerprint = model_fingerprint(src)  # what a calibration was made with
        self.calibration = resolve_calibration(calibration, model_or_checkpoint,
                                               detector_signature(self))
        if alarm_rate is not None and self.calibration is None:
            raise ValueError("alarm_rate needs a calibration (aedfast calibrate, or "
                             "calibration=PATH)")
        self.alarm_threshold = None if self.calibration is None else \
            self.calibration.threshold(alarm_rate)

        if precision == "auto":
            precision = "bf16" if self.device.type == "cuda" else "fp32"
        self.precision = precision
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32

        # BatchNorm is folded in float32 first; bf16 then runs the whole model in bfloat16
        # (the fused ops take one activation dtype; they accumulate, and compute LayerNorm
        # and softmax statistics, in float32)
        # (a measured choice switches the fused blocks later, keeping these folded weights)
        model.to(self.device)
        self.backend_plan = choice.plan_backend(requested, source, self.device)
        self._set_backend(model, self.backend_plan)
        model.to(dtype)
        self.model = model
        self._dtype = dtype
        self.seed = int(seed)
        core = StepCore(model, protocol, self.smoothing, self.official_dataset, self.seed, dtype)
        self._runner = StepRunner(core, self.device, compile=compile, cuda_graphs=cuda_graphs,
                                  batch_size=batch_size, buckets=buckets)
        self._store: torch.Tensor | None = None
        if warmup:
            self.warm_up()

    # ------------------------------------------------------------------ set-up helpers

    def _set_backend(self, model: AEDMAE, plan: choice.BackendPlan) -> None:
        try:
            model.set_backend(plan.backend)
        except Exception as e:  # the fused kernels may be unavailable on this machine
            warnings.warn(f"backend {plan.backend!r} unavailable ({type(e).__name__}: {e}); "
                          "using 'eager'", RuntimeWarning, stacklevel=3)
            model.set_backend("eager")
            plan.reason += f"; {plan.backend!r} failed to set up: eager"
            plan.backend, plan.measure = "eager", False

    def warm_up(self) -> Detector:
        """Settle the backend: with "auto" on CUDA, time the fused candidates per part (or
        reuse the cached choice) and switch the blocks to the faster. Runs once; the first
        use (scoring, streaming, `runner`) calls it, so does Detector(warmup=True)."""
        plan = self.backend_plan
        if not plan.measure:
            return self
        plan.measure = False
        run = self._runner
        try:
            parts, how = choice.choose_by_measurement(
                self.model, self.device, run.batch_size, self._dtype,
                cuda_graphs=run.cuda_graphs)
        except Exception as e:  # measuring must not stop scoring: keep the reference ops
            warnings.warn(f"backend measurement failed ({type(e).__name__}: {e}); running "
                          "'torch'", RuntimeWarning, stacklevel=2)
            plan.reason = f"{plan.source}; measurement failed: torch"
            return self
        self.model.set_backend(parts, refold=False)
        plan.backend = self.model.backend
        plan.reason = f"{plan.source}; " + ", ".join(
            f"{p} {how[p]}" for p in parts) + f" at batch {run.batch_size}"
        return self

    @property
    def backend(self) -> str:
        """The backend that runs: "eager", "torch", "triton", "mixed" (per part: see
        `describe()`), or "auto" while a measurement is pending (before first use)."""
        return "auto" if self.backend_plan.measure else self.model.backend

    @property
    def runner(self) -> StepRunner:
        """The step runner (compiled step, CUDA graphs); settles the backend first."""
        self.warm_up()
        return self._runner

    @property
    def batch_size(self) -> int:
        """Frames per model step (the largest bucket)."""
        return self._runner.batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self._runner.batch_size = value

    @property
    def buckets(self) -> tuple[int, ...]:
        """Batch sizes with their own compiled step / CUDA graph."""
        return self._runner.buckets

    @property
    def compiled(self) -> bool:
        return self._runner.compiled

    @property
    def cuda_graphs(self) -> bool:
        return self._runner.cuda_graphs

    @property
    def map_size(self) -> tuple[int, int]:
        """(rows, columns) of one anomaly map: pixels, tokens, or (1, 1) for "official"."""
        if self.protocol == "official":
            return (1, 1)
        if self.smoothing.resolution == "token":
            return self.config.grid
        return tuple(self.config.img_size)

    def describe(self) -> dict:
        """The settings that decide speed and numbers (device, backend, precision, ...).

        backend: what runs ("eager", "torch", "triton", "mixed"; "auto" before the first use
        measures); backend_parts: what runs per part; backend_requested: what was asked
        ("auto", ...); backend_reason: where the request came from and why it became what
        runs (e.g. "argument; the CPU has no Triton path without TRITON_INTERPRET=1",
        "default; encoder measured, decoder cached at batch 64")."""
        plan = self.backend_plan
        parts = dict.fromkeys(self.model.block_backends, "auto") if plan.measure \
            else dict(self.model.block_backends)
        return {"device": str(self.device), "backend": self.backend, "backend_parts": parts,
                "backend_requested": plan.requested, "backend_reason": plan.reason,
                "precision": self.precision, "compile": self.compiled,
                "cuda_graphs": self.cuda_graphs,
                "batch_size": self.batch_size, "buckets": list(self.buckets),
                "protocol": self.protocol, "preset": self.config.name, "seed": self.seed}

    # ------------------------------------------------------------------ pre-processing

    def preprocess(self, frames: torch.Tensor | np.ndarray, channel_order: str = "bgr"
                   ) -> torch.Tensor:
        """uint8 [n, H0, W0, C] (C = 3 BGR, 1 grey, 4 BGRA; or [n, H0, W0] grey), on the host
        or the device -> uint8 [n, 3, H, W] on the device, resized to the preset's size
        (`cv2_resize`: OpenCV's INTER_LINEAR) and in BGR order."""
        return prepare_frames(frames, self.config.img_size, self.device, channel_order)

    # ------------------------------------------------------------------ offline

    @torch.inference_mode()
    def score_video(self, source, *, return_maps: bool = False, progress: bool = False,
                    max_frames: int | None = None, channel_order: str = "bgr",
                    decode: str = "opencv") -> VideoResult:
        """Score every frame of a video.

        source: a video file path (decoded with OpenCV in a background thread), a folder of
            frame images (natural order), a uint8 array or tensor [T, H, W, 3] (BGR; grey
            [T, H, W] / [T, H, W, 1] is replicated, BGRA drops alpha; CPU or CUDA memory), an
            iterable of [H, W, 3] uint8 frames, or a camera index / stream URL.
        return_maps: also return the per-frame anomaly maps (paper protocol).
        max_frames: stop after this many frames.
        decode: how a video file is decoded: "opencv" (the reference), "cpu" (torchcodec),
            "gpu" (torchcodec with NVDEC: frames stay on the device) or "auto" ("gpu" where
            it works, else OpenCV with one logged line); docs/design.md §12, aedfast.decode.
        Any frame size: frames are resized on the device. Videos of 1 or 2 frames are scored
        (missing neighbours = frame t). A truncated file is scored up to the last frame that
        decodes, with a RuntimeWarning; zero frames raise ValueError.
        """
        if return_maps and self.protocol == "official":
            raise ValueError("maps are a paper-protocol output; use protocol='paper'")
        t_start = time.perf_counter()
        sm = self.smoothing
        B = self.batch_size
        chunk = max(B, 16)
        src = open_frames(source, decode=decode, device=self.device, chunk=chunk,
                          max_frames=max_frames)
        cap = B + chunk + 2 * OFFSET + 2
        store = self._store
        if store is None or store.shape[0] < cap:
            if store is not None:
                self.runner.forget(store)
            H, W = self.config.img_size
            store = self._store = torch.empty(cap, 3, H, W, dtype=torch.uint8,
                                              device=self.device)
        C = store.shape[0]

        def slot(t):
            return t % C

        bar = progress_bar(total=src.total, enabled=progress, unit="frame",
                           desc=Path(src.name).name, leave=False)

        filt = ChunkFilter(sm, self.protocol)
        raw_parts: list[torch.Tensor] = []
        map_parts: list[np.ndarray] = []
        # with a calibration: each frame's map peak (flat argmax, on the device) for events
        locate = self.calibration is not None and self.protocol == "paper"
        peak_parts: list[torch.Tensor] = []
        uploaded = 0  # frames in the store: [0, uploaded)
        done = 0  # frames through the model: [0, done)

        def run(upto: int, last: int) -> None:
            nonlocal done
            while done < upto:
                k = min(B, upto - done)
                t = np.arange(done, done + k, dtype=np.int64)
                idx = stack_indices(t, last, slot)
                maps, raw = self.runner.run(store, idx, t)
                raw_parts.append(raw)
                filt.push(maps)
                if locate:
                    peak_parts.append(maps.flatten(1).argmax(1))
                if return_maps:
                    map_parts.append(maps.float().cpu().numpy())
                done += k
                bar.update(k)

        try:
            for ch in src.chunks():
                n = ch.shape[0]
                if n == 0:
                    continue
                x = self.preprocess(ch, channel_order)
                slots = torch.arange(uploaded, uploaded + n, device=self.device) % C
                store.index_copy_(0, slots, x)
                uploaded += n
                # frames whose t+3 is in: full batches only, so the store never overflows
                ready = uploaded - OFFSET
                run(done + (max(0, ready - done) // B) * B, last=uploaded - 1)
            if uploaded == 0:
                raise ValueError(f"{src.name}: no frames to score (empty video)")
            run(uploaded, last=uploaded - 1)
        finally:
            bar.close()

        raw = torch.cat(raw_parts)
        scores = finish_scores(filt.finish(), sm, self.protocol, self.official_dataset)
        T = uploaded
        raw_np = raw.float().cpu().numpy()
        scores_np = scores.float().cpu().numpy()
        if not (np.isfinite(scores_np).all() and np.isfinite(raw_np).all()):
            # the loop's one finite check, on the host copy (docs/design.md §7)
            raise ValueError(f"{src.name}: the model's maps or scores contain NaN or inf "
                             "(corrupt weights, or values beyond float range)")
        alarms = events = None
        if self.calibration is not None:
            alarms, events = video_alarms(
                scores_np, self.alarm_threshold, self.calibration.rule,
                torch.cat(peak_parts) if locate else None, self.map_size[1])
        secs = time.perf_counter() - t_start
        return VideoResult(
            scores=scores_np, raw_scores=raw_np,
            maps=np.concatenate(map_parts) if return_maps else None,
            frames=T, seconds=secs, fps=T / secs if secs > 0 else float("inf"),
            info={**self.describe(), "source": src.name, "truncated": src.truncated,
                  "decoder": src.decoder},
            alarms=alarms, events=events,
        )

    def score_camera(self, source: int | str, *, max_frames: int | None = None,
                     progress: bool = False) -> VideoResult:
        """Score a camera (index) or a stream URL until it ends or `max_frames`."""
        return self.score_video(source, max_frames=max_frames, progress=progress)

    # ------------------------------------------------------------------ streaming

    def stream(self, n_streams: int = 0, *, max_streams: int | None = None,
               strict: bool = False) -> DetectorStream:
        """A `DetectorStream` with streams 0..n_streams-1 open (see its docstring)."""
        from .stream import DetectorStream

        return DetectorStream(self, n_streams, max_streams=max_streams, strict=strict)
