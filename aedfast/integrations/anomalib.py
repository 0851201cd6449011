"""aedfast inside anomalib: an ``AnomalibModule`` around a trained or converted aedfast
checkpoint, for anomalib's video datamodules (``Avenue``, ``ShanghaiTech``, ``UCSDped``) and
its ``Engine``. Needs the optional extra: ``pip install "aedfast[anomalib]"``.

    model = AedMae("avenue.safetensors")
    datamodule = Avenue(root=..., clip_length_in_frames=7, target_frame="mid",
                        frames_between_clips=1)
    Engine(logger=False).test(model, datamodule=datamodule)

What a clip becomes (docs/design.md §2 pre-processing, §9 masking noise): anomalib hands each
step a `VideoBatch` whose ``image`` is float [B, 7, C, H, W] in [0, 1], RGB (anomalib decodes
frames as RGB and scales uint8 by 1/255), and whose ``frames`` is the index of each clip's
target frame t, the middle one. Of each clip only frames t-3, t, t+3 (clip positions 0, 3, 6)
are used: they are turned back into the uint8 values anomalib decoded, round(255 x) (exact,
since x = v / 255), and go through the model's own pre-processing as RGB
(`Detector.preprocess(..., channel_order="rgb")`: flipped to the BGR order the model was
trained on, resized as OpenCV's INTER_LINEAR does, scaled to [-1, 1] inside the step). The
model step is the Detector's (`Detector.runner`), with the masking noise of frame index t
(`aedfast.step.frame_noise`), so a clip scores exactly as `Detector.score_video` scores its
frame t, given the same decoded pixels (frame folders: the same files; video files are decoded
by PyAV in anomalib and by OpenCV in the Detector, which agreed pixel for pixel on an MJPEG
AVI). Per clip the module returns
- ``pred_score`` float32 [B]: the Detector's raw frame score of frame t (protocol "paper": the
  max of its unfiltered anomaly map, `VideoResult.raw_scores`; "official": the token-mean
  score of docs/design.md §2);
- ``anomaly_map`` float32 [B, 1, H, W] at the input size (paper protocol only): the pixel map
  of frame t (`VideoResult.maps`), resized bilinearly (half-pixel centres) from the model's
  size.

Limits:
- The first and last 3 frames of each video are never scored: a 7-frame clip centred on them
  does not exist (aedfast's own `Detector` scores them with frame t standing in for the
  missing neighbour). anomalib's metrics therefore run on every frame but those 6 per video.
- anomalib's image AUROC is computed on the raw per-frame scores, without aedfast's temporal
  smoothing or the 3D filter over the maps; it is not the number aedfast reports. The `FrameAUC`
  metrics (in the default evaluator) and `aedfast_protocol_scores` apply aedfast's temporal
  smoothing per video (the protocol's Gaussian, then the paper protocol's score floor; for the
  official ShanghaiTech rule the per-video min-max) and compute the micro / macro AUC of
  docs/design.md §5. The 3D filter of the paper protocol needs each video's whole volume of maps
  at the model's size, which per-clip steps do not have: it is left out, so these numbers equal
  `Detector` scores with ``smoothing={"window": None}`` (away from the 6 missing frames, which
  also move the smoothing's border by 3 frames). For the exact paper protocol use ``aedfast
  eval``.
- Clips must be 7 frames long with the target in the middle (``clip_length_in_frames=7,
  target_frame="mid"``); the protocol metrics also need every frame
  (``frames_between_clips=1``). These are checked against the datamodule when a run starts.
- The frame index is the batch's ``frames`` field: the frame number for frame-folder layouts
  (UCSDped, ShanghaiTech's test set) and the video timestamp for video files, which is the
  frame number in AVI files (Avenue; anomalib reads Avenue's masks by the same index).
- No training through anomalib: train with ``aedfast train`` and load the checkpoint.
- The default post-processor leaves the scores as they are (no anomalib normalisation or
  thresholds, so no ``pred_label`` / ``pred_mask``); pass ``post_processor=PostProcessor()``
  and run ``Engine.validate`` on labelled data first to get anomalib's normalised scores.

torchvision: anomalib needs it, and PyPI's torchvision is built against PyPI's CUDA torch. Next
to a CPU build of torch its C++ operators (nms, roi_align, ...) cannot load, and torchvision
0.28 then fails to import at all ("operator torchvision::nms does not exist"). This module
declares the two operator schemas torchvision's import needs (no kernels) in exactly that
case, with a warning, and imports it again: neither anomalib's video datamodules nor this
module use those operators, and calling one still fails with torchvision's own message.
"""

from __future__ import annotations

import hashlib
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..detector import Detector
from ..model import AEDMAE, load_model
from ..scoring import PROTOCOLS, Smoothing, resolve_smoothing
from ..step import OFFSET
from .frame_protocol import ProtocolScores, protocol_scores

CLIP_LENGTH = 2 * OFFSET + 1  # frames t-3 .. t+3
TARGET = OFFSET  # the target frame's position in a clip (anomalib's "mid": int(7 / 2))
_CLIP_POSITIONS = (0, TARGET, CLIP_LENGTH - 1)  # frames t-3, t, t+3

_TORCHVISION_SCHEMAS: list[torch.library.Library] = []  # kept alive: dropping undefines them


def _import_torchvision() -> None:
    """Import torchvision; where its C++ operators cannot load beside this torch build, declare
    the two operator schemas its import registers fake kernels for, and import it again."""
    try:
        import torchvision  # noqa: F401
        return
    except ImportError:
        return  # not installed: anomalib's import below says what is missing
    except RuntimeError as e:
        if "torchvision::nms does not exist" not in str(e):
            raise
        reason = str(e)
    for name in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
        del sys.modules[name]
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _TORCHVISION_SCHEMAS.append(lib)
    import torchvision  # noqa: F401

    warnings.warn(f"torchvision's C++ operators do not load beside torch {torch.__version__} "
                  f"({reason}): imported without them (anomalib's video datamodules and "
                  "aedfast do not use them)", RuntimeWarning, stacklevel=3)


_import_torchvision()

try:
    from anomalib import LearningType
    from anomalib.data import InferenceBatch, VideoBatch
    from anomalib.metrics import AUROC, AnomalibMetric, Evaluator
    from anomalib.models.components import AnomalibModule
    from anomalib.post_processing import PostProcessor
    from anomalib.pre_processing import PreProcessor
    from torchmetrics import Metric
    from torchmetrics.utilities import dim_zero_cat
except ImportError as e:  # pragma: no cover - depends on the environment
    # the same exception type, so that a missing package still reads as ModuleNotFoundError
    raise type(e)(f"aedfast.integrations.anomalib needs anomalib and its video extra ({e}): "
                  "pip install 'aedfast[anomalib]'", name=e.name) from e

__all__ = [
    "CLIP_LENGTH", "AedMae", "FrameAUC", "ProtocolScores", "aedfast_protocol_scores",
    "clip_frames_uint8", "protocol_scores",  # ProtocolScores, protocol_scores: frame_protocol.py
]


# ----------------------------------------------------------------------------- clips


def clip_frames_uint8(image: torch.Tensor) -> torch.Tensor:
    """Frames t-3, t, t+3 of each clip as the uint8 values anomalib decoded.

    image: float [B, 7, C, H, W] in [0, 1] (C = 3 RGB or 1 grey), as in a `VideoBatch`.
    Returns uint8 [B, 3, H, W, C] (channels last, still RGB): round(255 x), clamped to [0, 255].
    """
    if not isinstance(image, torch.Tensor) or image.dim() != 5:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"batch.image: expected video clips [B, {CLIP_LENGTH}, C, H, W], "
                         f"got {shape}")
    if image.shape[1] != CLIP_LENGTH:
        raise ValueError(
            f"batch.image holds clips of {image.shape[1]} frames; AedMae needs clips of "
            f"{CLIP_LENGTH} frames with the target frame in the middle (frames t-3 .. t+3): "
            f"build the datamodule with clip_length_in_frames={CLIP_LENGTH}, target_frame='mid'")
    if image.shape[2] not in (1, 3):
        raise ValueError(f"batch.image: expected 1 or 3 channels, got {image.shape[2]}")
    if not image.is_floating_point():
        raise TypeError(f"batch.image: expected float frames in [0, 1], got {image.dtype}")
    x = image[:, list(_CLIP_POSITIONS)]
    return (x.float() * 255.0).round_().clamp_(0, 255).to(torch.uint8).permute(0, 1, 3, 4, 2)


def _video_key(path: str) -> int:
    """A stable 56-bit integer per video path (the same in every process)."""
    return int.from_bytes(hashlib.blake2b(str(path).encode(), digest_size=7).digest(), "little")


# ----------------------------------------------------------------------------- the module


class AedMae(AnomalibModule):
    """An aedfast checkpoint as an anomalib video model (see the module docstring).

    Args:
        checkpoint: a native .safetensors checkpoint, an official .pth teacher checkpoint, a
            (teacher.pth, student.pth) pair, or an `AEDMAE`.
        preset: the preset of official checkpoints (native ones carry their config).
        protocol: "paper" (pixel maps; pred_score = the map's max) or "official" (token-mean
            scores, no maps), as in `Detector`.
        official_dataset: "avenue" or "shanghaitech" (the official rule and its temporal
            filter); default from the model's preset name.
        smoothing: the Detector's `Smoothing` (or a dict of its fields): its map weights a, b,
            c, d and resolution shape the maps; its temporal fields drive the `FrameAUC`
            metrics and `protocol_scores`. Default: the protocol's own.
        seed: the masking-noise seed (`Detector`'s).
        device: where the model runs; default: wherever Lightning puts this module.
        precision, compile, cuda_graphs, backend, batch_size: as for `Detector`.
        pre_processor, post_processor, evaluator, visualizer: anomalib's components; True
            means this model's defaults: no transform (the model pre-processes itself), no
            normalisation or thresholds, and the evaluator of `default_evaluator`. The
            visualizer is off by default: anomalib's ImageVisualizer draws single frames and
            fails on 7-frame clips ("pic should be 2/3 dimensional", anomalib 2.7).
    """

    def __init__(self, checkpoint: str | AEDMAE | tuple, *, preset: str = "avenue",
                 protocol: str = "paper", official_dataset: str | None = None,
                 smoothing: Smoothing | Mapping | None = None, seed: int = 0,
                 device: str | torch.device | None = None, precision: str = "auto",
                 compile: bool = True, cuda_graphs: bool = True, backend: str | None = None,
                 batch_size: int = 64, pre_processor: torch.nn.Module | bool = True,
                 post_processor: torch.nn.Module | bool = True, evaluator: Any = True,
                 visualizer: Any = False) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        super().__init__(pre_processor=pre_processor, post_processor=post_processor,
                         evaluator=False if evaluator is True else evaluator,
                         visualizer=visualizer)
        model = load_model(checkpoint, preset=preset).eval()
        for prm in model.parameters():
            prm.requires_grad_(False)
        self.model = model  # a submodule: Lightning moves it; the Detector works on a copy
        self.protocol = protocol
        name = model.config.name
        self.official_dataset = official_dataset or (
            "shanghaitech" if name == "shanghaitech" else "avenue")
        if self.official_dataset not in ("avenue", "shanghaitech"):
            raise ValueError("official_dataset must be 'avenue' or 'shanghaitech', got "
                             f"{self.official_dataset!r}")
        self.smoothing = resolve_smoothing("default" if smoothing is None else smoothing,
                                           protocol, self.official_dataset,
                                           getattr(model, "cls_head_trained", True))
        self._device_arg = None if device is None else torch.device(device)
        self._options = {"preset": preset, "protocol": protocol,
                         "official_dataset": self.official_dataset, "smoothing": self.smoothing,
                         "seed": int(seed), "precision": precision, "compile": compile,
                         "cuda_graphs": cuda_graphs, "backend": backend,
                         "batch_size": batch_size}
        self._detector: Detector | None = None
        self._store: torch.Tensor | None = None
        self._store_release = None  # forgets the store's CUDA graphs (`StepRunner.track`)
        if evaluator is True:
            self.evaluator = self.default_evaluator()

    # ------------------------------------------------------------------ anomalib's hooks

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """No trainer arguments of its own: the model is not trained through anomalib."""
        return {}

    @property
    def learning_type(self) -> LearningType:
        """One-class: the model was trained (with ``aedfast train``) on normal videos only."""
        return LearningType.ONE_CLASS

    @classmethod
    def configure_pre_processor(cls, image_size: tuple[int, int] | None = None) -> PreProcessor:
        """No transform: the model resizes and scales the frames itself (docs/design.md §2)."""
        del image_size
        return PreProcessor()

    def configure_post_processor(self) -> PostProcessor:
        """Scores and maps as the model gives them: no normalisation, no thresholds."""
        return PostProcessor(enable_normalization=False, enable_thresholding=False)

    def default_evaluator(self) -> Evaluator:
        """anomalib's image AUROC (raw per-frame scores) and pixel AUROC (maps against
        ``gt_mask``, where the data set has masks), and aedfast's protocol `FrameAUC`, micro
        and macro, logged as ``aedfast_micro_auc`` / ``aedfast_macro_auc``."""
        kw = {"protocol": self.protocol, "dataset": self.official_dataset,
              "smoothing": self.smoothing}
        return Evaluator(test_metrics=[
            AUROC(fields=["pred_score", "gt_label"], prefix="image_"),
            AUROC(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False),
            FrameAUC("micro", **kw), FrameAUC("macro", **kw),
        ])

    def configure_optimizers(self) -> None:
        """Nothing to optimise here (see `training_step`)."""
        return None

    def training_step(self, batch: VideoBatch, *args, **kwargs) -> None:
        """Refuses: aedfast models are trained with ``aedfast train`` (or `aedfast.train`)."""
        raise RuntimeError("AedMae is not trained through anomalib: train the model with "
                           "`aedfast train` (or aedfast.train) and pass its checkpoint to "
                           "AedMae; use Engine.test / Engine.predict")

    def on_validation_start(self) -> None:
        super().on_validation_start()
        self._check_datamodule(self.evaluator.val_metrics if self.evaluator else ())

    def on_test_start(self) -> None:
        super().on_test_start()
        self._check_datamodule(self.evaluator.test_metrics if self.evaluator else ())

    def on_predict_start(self) -> None:
        super().on_predict_start()
        self._check_datamodule(())

    def _check_datamodule(self, metrics: Iterable) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None:
            return
        kind = type(dm).__name__
        clip = getattr(dm, "clip_length_in_frames", None)
        if clip is not None and clip != CLIP_LENGTH:
            raise ValueError(f"{kind}.clip_length_in_frames is {clip}; AedMae needs "
                             f"{CLIP_LENGTH} (frames t-3 .. t+3 around the target frame)")
        target = getattr(dm, "target_frame", None)
        if target is not None and str(getattr(target, "value", target)) != "mid":
            raise ValueError(f"{kind}.target_frame is {getattr(target, 'value', target)!r}; "
                             "AedMae scores the middle frame of each clip: target_frame='mid'")
        stride = getattr(dm, "frames_between_clips", None)
        if stride not in (None, 1) and any(isinstance(m, FrameAUC) for m in metrics):
            raise ValueError(f"{kind}.frames_between_clips is {stride}; aedfast's protocol "
                             "metrics (FrameAUC) smooth every frame's score: use "
                             "frames_between_clips=1, or an evaluator without FrameAUC")

    # ------------------------------------------------------------------ scoring

    @property
    def detector(self) -> Detector:
        """The `Detector` whose model step scores the clips, on this module's device (or the
        `device` asked for); rebuilt from `model` when the device changes."""
        dev = self._device_arg if self._device_arg is not None else self.device
        det = self._detector
        if det is None or det.device.type != dev.type or (
                dev.index is not None and det.device.index != dev.index):
            self._detector = det = Detector(self.model, device=dev, **self._options)
            self._store = self._store_release = None  # the old store went with its Detector
        return det

    def _frame_store(self, det: Detector) -> torch.Tensor:
        """One frame store reused by every step (CUDA graphs are captured per store)."""
        H, W = det.config.img_size
        n = len(_CLIP_POSITIONS) * det.batch_size
        if self._store is None or self._store.shape[0] != n:
            if self._store_release is not None:
                self._store_release()  # the replaced store's CUDA graphs
            self._store = torch.empty(n, 3, H, W, dtype=torch.uint8, device=det.device)
            self._store_release = det.runner.track(self, self._store)
        return self._store

    @torch.inference_mode()
    def score_clips(self, image: torch.Tensor, frames: torch.Tensor) -> InferenceBatch:
        """Score each clip's target frame.

        image: float [B, 7, C, H, W] in [0, 1], RGB (a `VideoBatch`'s ``image``).
        frames: int [B] the target frames' indices in their videos (``VideoBatch.frames``):
            the masking noise of each frame is drawn from it.
        Returns an `InferenceBatch` with pred_score float32 [B] and (paper protocol)
        anomaly_map float32 [B, 1, H, W], on the device of `image`.
        """
        u8 = clip_frames_uint8(image)
        if frames is None:
            raise ValueError("batch.frames is missing: AedMae draws each frame's masking "
                             "noise from its index in the video")
        tids = torch.as_tensor(frames).reshape(-1).to("cpu", torch.int64).numpy()
        B, k3, H0, W0, C = u8.shape
        if tids.shape[0] != B:
            raise ValueError(f"batch.frames holds {tids.shape[0]} indices for {B} clips")
        det = self.detector
        store = self._frame_store(det)
        step = det.batch_size
        raw_parts, map_parts = [], []
        for s in range(0, B, step):
            n = min(step, B - s)
            x = det.preprocess(u8[s:s + n].reshape(n * k3, H0, W0, C), channel_order="rgb")
            store[:n * k3].copy_(x)
            idx = np.arange(n * k3, dtype=np.int64).reshape(n, k3)
            maps, raw = det.runner.run(store, idx, tids[s:s + n])
            raw_parts.append(raw.float())
            if self.protocol == "paper":
                m = maps.float()[:, None]
                if tuple(m.shape[-2:]) != (H0, W0):
                    m = F.interpolate(m, size=(H0, W0), mode="bilinear", align_corners=False)
                map_parts.append(m)
        raw = torch.cat(raw_parts).to(image.device)
        amap = torch.cat(map_parts).to(image.device) if map_parts else None
        return InferenceBatch(pred_score=raw, anomaly_map=amap)

    def forward(self, batch: torch.Tensor, frames: torch.Tensor | None = None
                ) -> InferenceBatch:
        """clips float [B, 7, C, H, W] + target frame indices [B] -> `InferenceBatch`
        (pre-processor, `score_clips`, post-processor)."""
        if frames is None:
            raise ValueError("AedMae needs each clip's target frame index (its masking noise "
                             "depends on it): call model(clips, frames)")
        batch = self.pre_processor(batch) if self.pre_processor else batch
        out = self.score_clips(batch, frames)
        return self.post_processor(out) if self.post_processor else out

    def _step(self, batch: VideoBatch) -> VideoBatch:
        out = self.score_clips(batch.image, batch.frames)
        if not bool(torch.isfinite(out.pred_score).all()):
            raise ValueError(f"{sorted(set(batch.video_path or ()))}: the model's scores "
                             "contain NaN or inf (corrupt weights?)")
        return batch.update(pred_score=out.pred_score, anomaly_map=out.anomaly_map)

    def validation_step(self, batch: VideoBatch, *args, **kwargs) -> VideoBatch:
        """Scores a batch of clips (as `test_step`)."""
        return self._step(batch)

    def test_step(self, batch: VideoBatch, *args, **kwargs) -> VideoBatch:
        """Scores a batch of clips: sets ``pred_score`` and ``anomaly_map``."""
        return self._step(batch)

    def predict_step(self, batch: VideoBatch, *args, **kwargs) -> VideoBatch:
        """Scores a batch of clips (as `test_step`)."""
        return self._step(batch)

    def protocol_scores(self, predictions: Iterable) -> ProtocolScores:
        """`aedfast_protocol_scores` with this model's protocol, data set rule and smoothing."""
        return aedfast_protocol_scores(predictions, self.protocol, dataset=self.official_dataset,
                                       smoothing=self.smoothing)


# ----------------------------------------------------------------------------- protocol


def _flat_batches(predictions: Iterable) -> Iterable:
    for item in predictions:
        if isinstance(item, (list, tuple)):  # one list per dataloader
            yield from _flat_batches(item)
        else:
            yield item


def aedfast_protocol_scores(predictions: Iterable, protocol: str = "paper", *,
                            dataset: str = "avenue", smoothing: Smoothing | None = None
                            ) -> ProtocolScores:
    """aedfast's frame-level numbers from an anomalib run of `AedMae`.

    predictions: what ``Engine.predict`` returns (batches with ``video_path``, ``frames``,
    ``pred_score`` and, for AUCs, ``gt_label``; one list per dataloader is flattened), or any
    iterable of such batches. protocol / dataset / smoothing: the model's (`AedMae.protocol`,
    ...; `AedMae.protocol_scores` passes them). Scores must be the model's own, i.e. the
    default post-processor (anomalib's normalisation clamps them). See `protocol_scores`.
    """
    videos: list = []
    frames, scores, labels = [], [], []
    with_labels = None
    for i, b in enumerate(_flat_batches(predictions)):
        for field in ("video_path", "frames", "pred_score"):
            if getattr(b, field, None) is None:
                raise ValueError(f"predictions batch {i} has no {field!r}; expected the "
                                 "batches of Engine.predict / Engine.test on AedMae")
        has = getattr(b, "gt_label", None) is not None
        if with_labels is None:
            with_labels = has
        elif has != with_labels:
            raise ValueError(f"predictions batch {i}: gt_label present in some batches only")
        videos += [str(p) for p in b.video_path]
        frames.append(torch.as_tensor(b.frames).reshape(-1).cpu().numpy())
        scores.append(torch.as_tensor(b.pred_score).reshape(-1).float().cpu().numpy())
        if has:
            labels.append(torch.as_tensor(b.gt_label).reshape(-1).int().cpu().numpy())
    if not videos:
        raise ValueError("predictions hold no batches")
    return protocol_scores(videos, np.concatenate(frames), np.concatenate(scores),
                           np.concatenate(labels) if with_labels else None,
                           protocol=protocol, dataset=dataset, smoothing=smoothing)


class _ProtocolAUCState(Metric):
    """The torchmetrics side of `FrameAUC`: collects (video, frame, score, label) per clip."""

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, average: str, protocol: str, dataset: str, smoothing: Smoothing | None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.average = average
        self.protocol = protocol
        self.dataset = dataset
        self.smoothing = smoothing
        for state in ("video", "frame", "score", "label"):
            self.add_state(state, default=[], dist_reduce_fx="cat")

    def update(self, video_path: Sequence[str], frames: torch.Tensor, pred_score: torch.Tensor,
               gt_label: torch.Tensor) -> None:
        keys = torch.tensor([_video_key(p) for p in video_path], dtype=torch.int64)
        self.video.append(keys.to(self.device))
        self.frame.append(torch.as_tensor(frames).reshape(-1).to(self.device, torch.int64))
        self.score.append(torch.as_tensor(pred_score).reshape(-1).to(self.device,
                                                                     torch.float64))
        self.label.append(torch.as_tensor(gt_label).reshape(-1).to(self.device, torch.int64))

    def compute(self) -> torch.Tensor:
        res = protocol_scores(
            dim_zero_cat(self.video).cpu().tolist(), dim_zero_cat(self.frame).cpu().numpy(),
            dim_zero_cat(self.score).cpu().numpy(), dim_zero_cat(self.label).cpu().numpy(),
            protocol=self.protocol, dataset=self.dataset, smoothing=self.smoothing)
        value = res.micro_auc if self.average == "micro" else res.macro_auc
        return torch.tensor(value, dtype=torch.float64)


class FrameAUC(AnomalibMetric, _ProtocolAUCState):
    """aedfast's frame AUC as an anomalib metric: per video, the clips' ``pred_score`` in frame
    order get the protocol's temporal smoothing (`protocol_scores`), then the micro or macro
    AUC of docs/design.md §5. Logged as ``aedfast_micro_auc`` / ``aedfast_macro_auc`` (or
    prefix + "FrameAUC" when a prefix is given). Needs every frame of each video but the
    first and last 3 (``frames_between_clips=1``).

    average: "micro" or "macro". protocol, dataset, smoothing: `AedMae`'s.
    """

    default_fields = ("video_path", "frames", "pred_score", "gt_label")

    def __init__(self, average: str = "micro", *, protocol: str = "paper",
                 dataset: str = "avenue", smoothing: Smoothing | None = None,
                 **kwargs) -> None:
        if average not in ("micro", "macro"):
            raise ValueError(f"average must be 'micro' or 'macro', got {average!r}")
        super().__init__(average=average, protocol=protocol, dataset=dataset,
                         smoothing=smoothing, **kwargs)
        if not kwargs.get("prefix"):
            self.name = f"aedfast_{average}_auc"
