"""Evaluation on a labelled data set: frame AUC (micro, macro), pixel AUC, RBDC, TBDC, speed.

`evaluate(detector_or_checkpoint, dataset, protocol=...)` scores every test video with a
Detector and applies aedfast.metrics. Protocol "paper": pixel maps, 3D smoothing, frame
max, temporal Gaussian (docs/design.md §1); "official": the official token-mean frame scores and
docs/design.md §5's filter (checkpoints of the official implementation give its numbers).

Memory does not grow with the data set: each video's maps go, frame by frame, into the
streaming accumulators `metrics.PixelAUC` and `metrics.MaskDetectionAccumulator` and are
dropped before the next video (docs/design.md §5); what is kept per video is its frame scores
and, with box tracks, its detections (boxes from the maps, `region_metrics`, docs/design.md §11).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics, region_metrics, report
from .progress import progress_bar

__all__ = ["EvalResult", "evaluate", "format_report"]

logger = logging.getLogger(__name__)


@dataclass
class EvalResult:
    """What `evaluate` returns: the metrics of one data set under one protocol.

    micro_auc, macro_auc: frame AUC over all frames / averaged over videos (docs/design.md §5).
    pixel_auc (with pixel_auc_error_bound, the streaming estimate's bound), mask_rbdc,
        mask_tbdc (the mask-derived variant, `metrics.mask_rbdc_tbdc`, not the paper's): the
        localisation metrics, None where the data set has no pixel masks or they were not
        computed (localization=False, protocol "official").
    rbdc, tbdc: RBDC / TBDC as the paper computes them (`region_metrics.rbdc_tbdc`, box tracks
        against boxes from the maps), None unless box tracks were given (tracks=...).
    per_video: {video name: its AUC}. frames, fps: frames scored and frames per second of the
        scoring (decode included). videos: labelled test videos scored. device: where.

    Reads like the dict it used to be: ``res["micro_auc"]``, ``res.get(...)``, ``res.keys()``
    and `as_dict()` (plain values, for JSON).
    """

    protocol: str
    dataset: str | None
    videos: int
    frames: int
    fps: float
    micro_auc: float
    macro_auc: float
    pixel_auc: float | None = None
    pixel_auc_error_bound: float | None = None
    rbdc: float | None = None
    tbdc: float | None = None
    mask_rbdc: float | None = None
    mask_tbdc: float | None = None
    per_video: dict[str, float] = field(default_factory=dict)
    device: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (per_video copied), in declaration order."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["per_video"] = dict(self.per_video)
        return d

    def keys(self) -> list[str]:
        return [f.name for f in fields(self)]

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.keys() else default


def _source(video):
    """What Detector.score_video reads best, past the video object's frame cache (which would
    otherwise keep frames of every video scored): the file of a video file, the folder of a
    frame-folder video when it lists exactly the video's frames (`list_frame_files`, the one
    lister), else its frames."""
    from .frames import list_frame_files

    path = getattr(video, "path", None)
    if path is not None and Path(path).is_file():
        return str(path)
    paths = getattr(video, "paths", None)
    if paths and list_frame_files(Path(paths[0]).parent) == [Path(p) for p in paths]:
        return str(Path(paths[0]).parent)
    return video.frames()


def _localize(pixels: metrics.PixelAUC, regions: metrics.MaskDetectionAccumulator,
              maps: np.ndarray, masks) -> None:
    """Feed one video into the accumulators frame by frame: maps float32 [T, h, w], masks a
    sequence of bool [H, W] (e.g. the lazy ``video.masks``); maps are resized to the masks' size
    one frame at a time. Nothing of the video is kept after the return (the frames are views
    of `maps`: a loop variable left behind would keep all of it)."""
    regions.start_video(maps)
    for m, k in metrics.frame_pairs(maps, masks):
        pixels.add_frame(m, k)
        regions.add_frame(m, k)
    regions.end_video()


def evaluate(detector_or_checkpoint, dataset, *, protocol: str = "paper",
             plots: str | os.PathLike | None = None, overlay: str | os.PathLike | None = None,
             progress: bool = True, json_path: str | os.PathLike | None = None,
             localization: bool = True, labels: Mapping[str, np.ndarray] | None = None,
             tracks: Mapping[str, np.ndarray] | None = None,
             region_threshold: float | None = None) -> EvalResult:
    """Score `dataset.test` and compute the metrics.

    detector_or_checkpoint: an aedfast.Detector, or anything Detector accepts.
    dataset: the object aedfast.data.open_dataset returns.
    plots: folder for one score plot per video (ground-truth intervals shaded).
    overlay: folder for overlay videos (anomaly heat map over the frames), paper protocol.
    localization: compute pixel AUC and the mask-derived RBDC / TBDC where the data set has
        pixel masks, streamed video by video: pixel AUC from `metrics.PixelAUC` (all pixels;
        within pixel_auc_error_bound of the exact value), mask_rbdc / mask_tbdc from
        `metrics.MaskDetectionAccumulator` with its default thresholds (from the first video
        with masks, extended upwards).
    labels: {video name: uint8 [T]} frame labels replacing the data set's own (e.g. from
        `aedfast.data.ground_truth.read_ground_truth`); every test video is then evaluated.
    tracks: {video name: float [N, 6] box-track rows} (`region_metrics.read_box_tracks`; names
        matched by `region_metrics.match_tracks`): RBDC / TBDC as the paper computes them, from
        boxes of the connected regions of each frame's map above `region_threshold` (default:
        half of the frame's maximum), scaled to the frame size (docs/design.md §11).
    progress: a bar over the videos on stderr (off with AEDFAST_PROGRESS=0, `aedfast.progress`).
    Returns an `EvalResult` (micro_auc, macro_auc, pixel_auc, pixel_auc_error_bound, rbdc,
    tbdc, fps, frames, per_video, ...; it also reads as the dict it used to be).
    """
    from .detector import Detector

    if protocol not in ("paper", "official"):
        raise ValueError(f"unknown protocol {protocol!r}: 'paper' or 'official'")
    if isinstance(detector_or_checkpoint, Detector):
        det = detector_or_checkpoint
        if det.protocol != protocol:
            raise ValueError(f"the detector runs protocol {det.protocol!r}, asked for {protocol!r}")
    else:
        det = Detector(detector_or_checkpoint, protocol=protocol)
    if labels is not None:
        missing = [v.name for v in dataset.test if v.name not in labels]
        if missing:
            raise ValueError(f"the ground truth has no labels for test video {missing[0]!r}")
    videos = [v for v in dataset.test if labels is not None or v.labels is not None]
    if not videos:
        raise ValueError(f"{dataset.root}: no labelled test videos to evaluate")
    if tracks is not None and protocol != "paper":
        raise ValueError("box-track RBDC / TBDC need the maps of protocol 'paper'")
    gt_boxes = None if tracks is None else region_metrics.match_tracks(
        tracks, [v.name for v in videos])
    boxes: dict[str, np.ndarray] = {}
    want_maps = protocol == "paper" and (localization or overlay is not None
                                         or tracks is not None)
    scores, y, names = [], [], []
    pixels, regions = metrics.PixelAUC(), metrics.MaskDetectionAccumulator()
    located = False
    frames = seconds = 0.0
    bar = progress_bar(videos, enabled=progress, desc="eval", unit="video")
    for v in bar:
        has_masks = v.masks is not None
        res = det.score_video(_source(v), return_maps=want_maps and (
            has_masks or bool(overlay) or tracks is not None))
        if len(res.scores) != len(v):
            raise RuntimeError(f"{v.name}: {len(res.scores)} scores for {len(v)} frames")
        lab = np.asarray(v.labels if labels is None else labels[v.name]).reshape(-1)
        if lab.shape[0] != len(v):
            raise ValueError(f"{v.name}: {lab.shape[0]} frame labels for {len(v)} frames")
        scores.append(np.asarray(res.scores, dtype=np.float64))
        y.append(lab)
        names.append(v.name)
        frames += res.frames
        seconds += res.seconds
        if localization and has_masks and res.maps is not None:
            _localize(pixels, regions, res.maps, v.masks)
            located = True
        if tracks is not None and res.maps is not None:
            rel = None if region_threshold is not None else 0.5
            boxes[v.name] = region_metrics.detections_from_maps(
                res.maps, threshold=region_threshold, relative=rel, frame_size=v.shape)
        if plots:
            report.plot_scores(Path(plots) / f"{v.name}.png", scores[-1], y[-1],
                               title=f"{v.name} ({protocol})")
        if overlay and res.maps is not None:
            report.write_overlay_video(Path(overlay) / f"{v.name}_overlay.avi", v.frames(),
                                       iter(res.maps), fps=25.0)
        bar.set_postfix(fps=f"{res.fps:.0f}")
        logger.debug("%s: %d frames at %.1f frames/s", v.name, res.frames, res.fps)
        del res  # this video's maps go before the next video is scored
        if callable(getattr(v, "close", None)):
            v.close()  # a video file's decoder and frame cache
    micro, macro = metrics.micro_macro_auc(scores, y)
    # a single video's macro AUC is its own padded AUC (docs/design.md §5)
    per_video = [metrics.micro_macro_auc([s], [lab])[1] for s, lab in zip(scores, y)]
    out = EvalResult(
        protocol=protocol, dataset=getattr(dataset, "kind", None), videos=len(videos),
        frames=int(frames), fps=frames / seconds if seconds else float("nan"),
        micro_auc=micro, macro_auc=macro, per_video=dict(zip(names, per_video)),
        device=str(det.device),
    )
    if located:
        out.pixel_auc, out.pixel_auc_error_bound = pixels.result(), pixels.error_bound()
        out.mask_rbdc, out.mask_tbdc = regions.result()
    if gt_boxes is not None:
        out.rbdc, out.tbdc = region_metrics.rbdc_tbdc(
            gt_boxes, boxes, {n: len(s) for n, s in zip(names, scores)})
    logger.debug("evaluated %d videos (%s protocol): micro AUC %.4f, macro AUC %.4f",
                out.videos, protocol, micro, macro)
    if json_path:
        report.write_json(json_path, out.as_dict())
    return out


def format_report(result: EvalResult | dict) -> str:
    """A short table of an `evaluate` result (an EvalResult, or its `as_dict()`)."""

    def f(v):
        return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.4f}"

    lines = [
        f"protocol {result['protocol']}, {result['videos']} videos, {result['frames']} frames, "
        f"{result['fps']:.1f} frames/s on {result.get('device', '?')}",
        f"micro AUC {f(result['micro_auc'])}   macro AUC {f(result['macro_auc'])}   "
        f"pixel AUC {f(result['pixel_auc'])}   RBDC {f(result['rbdc'])}   "
        f"TBDC {f(result['tbdc'])}   (mask-derived: RBDC {f(result.get('mask_rbdc'))}   "
        f"TBDC {f(result.get('mask_tbdc'))})",
    ]
    for name, auc in result["per_video"].items():
        lines.append(f"  {name:24s} AUC {f(auc)}")
    return "\n".join(lines)

