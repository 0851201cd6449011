"""Evaluation on a labelled data set: frame AUC (micro, macro), pixel AUC, RBDC, TBDC, speed.

`evaluate(detector_or_checkpoint, dataset, protocol=...)` scores every test video with a
Detector and applies aedfast.metrics. Protocol "paper": pixel maps, 3D smoothing, frame
max, temporal Gaussian (docs/design.md §1); "official": the official token-mean frame scores and
docs/design.md §5's filter (checkpoints of the official implementation give its numbers).

Memory does not grow with the data set: each video's maps go, frame by frame, into the
streaming accumulators `metrics.PixelAUC` and `metrics.DetectionAccumulator` and are dropped
before the next video (docs/design.md §5); what is kept per video is its frame scores.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import metrics, report


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


def _localize(pixels: metrics.PixelAUC, regions: metrics.DetectionAccumulator,
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
             localization: bool = True) -> dict:
    """Score `dataset.test` and compute the metrics.

    detector_or_checkpoint: an aedfast.Detector, or anything Detector accepts.
    dataset: the object aedfast.data.open_dataset returns.
    plots: folder for one score plot per video (ground-truth intervals shaded).
    overlay: folder for overlay videos (anomaly heat map over the frames), paper protocol.
    localization: compute pixel AUC, RBDC and TBDC where the data set has pixel masks, streamed
        video by video: pixel AUC from `metrics.PixelAUC` (all pixels; within
        pixel_auc_error_bound of the exact value), RBDC / TBDC from `metrics.DetectionAccumulator`
        with its default thresholds (from the first video with masks, extended upwards).
    Returns a dict with micro_auc, macro_auc, pixel_auc, pixel_auc_error_bound, rbdc, tbdc, fps,
    frames, per_video.
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
    videos = [v for v in dataset.test if v.labels is not None]
    if not videos:
        raise ValueError(f"{dataset.root}: no labelled test videos to evaluate")
    want_maps = protocol == "paper" and (localization or overlay is not None)
    scores, labels, names = [], [], []
    pixels, regions = metrics.PixelAUC(), metrics.DetectionAccumulator()
    located = False
    frames = seconds = 0.0
    bar = tqdm(videos, desc="eval", unit="video", disable=not progress)
    for v in bar:
        has_masks = v.masks is not None
        res = det.score_video(_source(v), return_maps=want_maps and (has_masks or bool(overlay)))
        if len(res.scores) != len(v):
            raise RuntimeError(f"{v.name}: {len(res.scores)} scores for {len(v)} frames")
        scores.append(np.asarray(res.scores, dtype=np.float64))
        labels.append(np.asarray(v.labels))
        names.append(v.name)
        frames += res.frames
        seconds += res.seconds
        if localization and has_masks and res.maps is not None:
            _localize(pixels, regions, res.maps, v.masks)
            located = True
        if plots:
            report.plot_scores(Path(plots) / f"{v.name}.png", scores[-1], labels[-1],
                               title=f"{v.name} ({protocol})")
        if overlay and res.maps is not None:
            report.write_overlay_video(Path(overlay) / f"{v.name}_overlay.avi", v.frames(),
                                       iter(res.maps), fps=25.0)
        bar.set_postfix(fps=f"{res.fps:.0f}")
        del res  # this video's maps go before the next video is scored
        if callable(getattr(v, "close", None)):
            v.close()  # a video file's decoder and frame cache
    micro, macro = metrics.micro_macro_auc(scores, labels)
    # a single video's macro AUC is its own padded AUC (docs/design.md §5)
    per_video = [metrics.micro_macro_auc([s], [lab])[1] for s, lab in zip(scores, labels)]
    out = {
        "protocol": protocol,
        "dataset": getattr(dataset, "kind", None),
        "videos": len(videos),
        "frames": int(frames),
        "fps": frames / seconds if seconds else float("nan"),
        "micro_auc": micro,
        "macro_auc": macro,
        "pixel_auc": None,
        "pixel_auc_error_bound": None,
        "rbdc": None,
        "tbdc": None,
        "per_video": {n: a for n, a in zip(names, per_video)},
        "device": str(det.device),
    }
    if located:
        out["pixel_auc"], out["pixel_auc_error_bound"] = pixels.result(), pixels.error_bound()
        out["rbdc"], out["tbdc"] = regions.result()
    if json_path:
        report.write_json(json_path, out)
    return out


def format_report(result: dict) -> str:
    """A short table of an `evaluate` result."""

    def f(v):
        return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.4f}"

    lines = [
        f"protocol {result['protocol']}, {result['videos']} videos, {result['frames']} frames, "
        f"{result['fps']:.1f} frames/s on {result.get('device', '?')}",
        f"micro AUC {f(result['micro_auc'])}   macro AUC {f(result['macro_auc'])}   "
        f"pixel AUC {f(result['pixel_auc'])}   RBDC {f(result['rbdc'])}   TBDC {f(result['tbdc'])}",
    ]
    for name, auc in result["per_video"].items():
        lines.append(f"  {name:24s} AUC {f(auc)}")
    return "\n".join(lines)

