"""Calibration without labels: alarm thresholds for false-alarm rates, measured on normal video.

The Detector scores videos known to be normal; for each asked rate r (false alarms per hour
of video at its frame rate) the threshold is the lowest score level above which the normal
videos raise at most r events per hour under the event rule of `aedfast.alarms`
(docs/design.md §13). Calibrated scores are `VideoResult.scores` (the smoothed frame scores,
not normalised per video, so comparable across videos); the official ShanghaiTech protocol
min-max normalises each video and is refused. The calibration is a JSON file, by default
beside the checkpoint (`calibration_path`: CK.calibration.json), which the Detector loads by
itself; it records what made the scores, and a Detector refuses one made for another scorer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .alarms import EventRule
from .checkpoint import atomic_write, package_version

__all__ = [
    "FORMAT", "Calibration", "calibrate", "calibrate_scores", "calibration_path",
    "container_fps", "detector_signature", "event_count_curve", "model_fingerprint",
    "parse_rate", "resolve_calibration",
]

FORMAT = "aedfast-calibration-1"
_UNITS = {"s": 3600.0, "sec": 3600.0, "min": 60.0, "h": 1.0, "hour": 1.0, "d": 1 / 24,
          "day": 1 / 24}
_CURVE_MIN_EVENTS = 200  # the stored curve reaches at least this many events (or its end)


def parse_rate(rate: str | float) -> tuple[str, float]:
    """A false-alarm rate -> (label, events per hour): "1/h", "10/h", "5/min", "0.5/s",
    "2/day", or a number (per hour, labelled "<n>/h"). Raises ValueError naming the text."""
    if isinstance(rate, (int, float)) and not isinstance(rate, bool):
        value, label = float(rate), f"{float(rate):g}/h"
    else:
        m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*(?:/\s*([a-z]+))?\s*", str(rate))
        unit = (m.group(2) or "h") if m else None
        if m is None or unit not in _UNITS:
            raise ValueError(f"bad false-alarm rate {rate!r}: write it as N/h, N/min, N/s or "
                             "N/day (e.g. '1/h')")
        try:
            value = float(m.group(1)) * _UNITS[unit]
        except ValueError:
            raise ValueError(f"bad false-alarm rate {rate!r}: {m.group(1)!r} is not a "
                             "number") from None
        label = f"{m.group(1)}/{unit}"
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"a false-alarm rate must be positive and finite, got {rate!r}")
    return label, value


def event_count_curve(videos: Sequence[np.ndarray], rule: EventRule
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Events of the normal videos at every threshold: (levels float64 [K], counts int64
    [K]), levels the distinct scores in decreasing order and counts[k] the number of events
    when the frames with score >= levels[k] are the alarm frames, i.e. for any threshold in
    [levels[k+1], levels[k]) with the rule "score > threshold".

    Exact and in one pass: frames are switched on from the highest score down; each joins
    the groups of alarm frames within merge_gap + 1 frames of it (union-find over frame
    positions; videos are laid end to end with merge_gap + 1 empty frames between them, so
    no group crosses two videos), and a group counts as an event while it spans >=
    min_length frames. O(T (merge_gap + log T)) for T frames."""
    gap, min_len = rule.merge_gap, rule.min_length
    parts, pos = [], []
    offset = 0
    for i, s in enumerate(videos):
        s = np.asarray(s, dtype=np.float64).reshape(-1)
        if not np.isfinite(s).all():
            raise ValueError(f"normal video {i}: scores contain NaN or inf")
        parts.append(s)
        pos.append(np.arange(offset, offset + len(s)))
        offset += len(s) + gap + 1
    if not parts or sum(len(s) for s in parts) == 0:
        raise ValueError("no normal frames to calibrate on")
    scores, positions = np.concatenate(parts), np.concatenate(pos)
    order = np.argsort(-scores, kind="stable")
    vals, where = scores[order].tolist(), positions[order].tolist()
    active = bytearray(offset)
    parent = list(range(offset))
    first, last = list(range(offset)), list(range(offset))

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def join(a: int, b: int) -> int:  # roots a, b -> change in the event count
        if a == b:
            return 0
        before = (last[a] - first[a] + 1 >= min_len) + (last[b] - first[b] + 1 >= min_len)
        parent[b] = a
        first[a], last[a] = min(first[a], first[b]), max(last[a], last[b])
        return int(last[a] - first[a] + 1 >= min_len) - before

    levels, counts = [], []
    count, i, n = 0, 0, len(vals)
    while i < n:
        v = vals[i]
        while i < n and vals[i] == v:
            t = where[i]
            active[t] = 1
            count += int(min_len <= 1)
            p = active.rfind(1, max(0, t - gap - 1), t)
            if p >= 0:
                count += join(root(p), t)
            q = active.find(1, t + 1, t + gap + 2)
            if q >= 0:
                count += join(root(t), root(q))
            i += 1
        levels.append(v)
        counts.append(count)
    return np.asarray(levels, dtype=np.float64), np.asarray(counts, dtype=np.int64)


def _threshold_at(levels: np.ndarray, counts: np.ndarray, budget: float) -> tuple[float, int]:
    """The lowest threshold whose event count, and that of every higher threshold, stays
    within `budget`: the level where the count first exceeds it (alarm = score > level),
    and the count just above it. Every frame an alarm (never over budget): just below the
    lowest level."""
    over = np.flatnonzero(counts > budget)
    if over.size == 0:
        return float(np.nextafter(levels[-1], -np.inf)), int(counts[-1])
    k = int(over[0])
    return float(levels[k]), int(counts[k - 1]) if k > 0 else 0


@dataclass
class Calibration:
    """Thresholds for false-alarm rates, measured on normal video (docs/design.md §13).

    thresholds / rates / observed: per rate label ("1/h"): the threshold (alarm: score >
        threshold), the asked events per hour, and the events the calibration videos raise
        at that threshold.
    rule: the event rule used (and to be used with these thresholds).
    hours, frames, videos, fps: the normal video (hours = sum of frames / fps / 3600).
    curve: [[level, events], ...] where the event count on the calibration videos changes,
        levels decreasing, up to at least 200 events (complete: whether it reaches the
        lowest score); `threshold(rate)` reads other rates from it.
    distribution: frame-score quantiles, mean, std, min, max of the normal videos.
    detector: what made the scores (preset, protocol, smoothing, seed, model fingerprint):
        a Detector refuses a calibration made for another scorer.
    """

    thresholds: dict[str, float]
    rates: dict[str, float]
    observed: dict[str, int]
    rule: EventRule
    hours: float
    frames: int
    videos: int
    fps: list[float]
    curve: list[list[float]]
    complete: bool
    distribution: dict
    detector: dict
    info: dict = field(default_factory=dict)

    def threshold(self, rate: str | float | None = None) -> float:
        """The threshold of a calibrated rate label, of the first one (None), or of any rate
        the stored curve covers (e.g. 3.5 per hour)."""
        if rate is None:
            return self.thresholds[next(iter(self.thresholds))]
        if isinstance(rate, str) and rate in self.thresholds:
            return self.thresholds[rate]
        label, per_hour = parse_rate(rate)
        for k, v in self.rates.items():
            if math.isclose(v, per_hour):
                return self.thresholds[k]
        budget = per_hour * self.hours
        _check_budget(label, budget, self.hours, self.frames)
        levels = np.asarray([c[0] for c in self.curve], dtype=np.float64)
        counts = np.asarray([c[1] for c in self.curve], dtype=np.int64)
        if not self.complete and not (counts > budget).any():
            raise ValueError(f"rate {label} is beyond the stored calibration curve (up to "
                             f"{int(counts[-1])} events): calibrate again with this rate")
        return _threshold_at(levels, counts, budget)[0]

    def mismatch(self, signature: Mapping) -> list[str]:
        """The settings in which a scorer's `detector_signature` differs from the one this
        calibration was made with, as "name: calibration value vs this value" lines."""
        mine, theirs = _flat(self.detector), _flat(json.loads(json.dumps(dict(signature))))
        return [f"{k}: {mine.get(k)!r} (calibration) vs {theirs.get(k)!r}"
                for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]

    def to_dict(self) -> dict:
        """The JSON content (format "aedfast-calibration-1")."""
        d = dataclasses.asdict(self)
        return {"format": FORMAT, **d}

    @classmethod
    def from_dict(cls, d: Mapping, source: str = "calibration") -> Calibration:
        """Read `to_dict`'s content back; ValueError naming `source` and the bad field."""
        if d.get("format") != FORMAT:
            raise ValueError(f"{source}: not an aedfast calibration (format "
                             f"{d.get('format')!r}, expected {FORMAT!r})")
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in d and n != "info"]
        if missing:
            raise ValueError(f"{source}: missing fields {missing}")
        kw = {n: d[n] for n in names if n in d}
        kw["rule"] = EventRule(**kw["rule"])
        if list(kw["thresholds"]) != list(kw["rates"]) or not kw["thresholds"]:
            raise ValueError(f"{source}: 'thresholds' and 'rates' must name the same rates")
        return cls(**kw)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the calibration as JSON, atomically."""
        text = json.dumps(self.to_dict(), indent=1) + "\n"
        return atomic_write(path, lambda tmp: tmp.write_text(text))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"no calibration file {path}") from None
        except ValueError as e:
            raise ValueError(f"{path}: not JSON: {e}") from None
        return cls.from_dict(d, source=str(path))


def _flat(d: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _check_budget(label: str, budget: float, hours: float, frames: int) -> None:
    if budget < 1:
        raise ValueError(
            f"rate {label} cannot be calibrated on {hours:.4g} h of normal video ({frames} "
            f"frames): it expects {budget:.3g} events there, and a rate below one event in "
            f"all the normal video ({1 / hours:.4g} per hour here) cannot be measured; "
            "give more normal video or ask for a higher rate")
    if budget < 10:
        warnings.warn(f"rate {label}: about {budget:.1f} events in the normal video, so the "
                      f"threshold is uncertain (Poisson relative error ~{budget ** -0.5:.0%}); "
                      "more normal video makes it reliable", RuntimeWarning, stacklevel=3)


def calibrate_scores(scores: Sequence[np.ndarray], fps: Sequence[float],
                     rates: Sequence[str | float] = ("1/h",), rule: EventRule | None = None,
                     detector: Mapping | None = None) -> Calibration:
    """A `Calibration` from the frame scores of normal videos (float [T_i] each) at their
    frame rates `fps` (one per video). `detector`: the scorer's `detector_signature`."""
    rule = rule or EventRule()
    if len(scores) != len(fps):
        raise ValueError(f"{len(scores)} score sequences but {len(fps)} frame rates")
    bad = [f for f in fps if not (f and math.isfinite(f) and f > 0)]
    if bad:
        raise ValueError(f"frame rates must be positive, got {bad[0]!r}")
    arrays = [np.asarray(s, dtype=np.float64).reshape(-1) for s in scores]
    frames = sum(len(s) for s in arrays)
    hours = sum(len(s) / f for s, f in zip(arrays, fps)) / 3600.0
    parsed = [parse_rate(r) for r in rates]
    if not parsed:
        raise ValueError("no false-alarm rates to calibrate")
    levels, counts = event_count_curve(arrays, rule)
    thresholds, asked, observed = {}, {}, {}
    for label, per_hour in parsed:
        budget = per_hour * hours
        _check_budget(label, budget, hours, frames)
        thresholds[label], observed[label] = _threshold_at(levels, counts, budget)
        asked[label] = per_hour
        if not (counts > budget).any():
            warnings.warn(f"rate {label}: the normal video never raises that many events at "
                          f"any level (at most {int(counts.max())}, {budget:.3g} asked): the "
                          "threshold is below every score", RuntimeWarning, stacklevel=2)
    # the curve where the count changes, down to a few times the largest budget
    keep = np.flatnonzero(np.diff(np.concatenate(([-1], counts))) != 0)
    limit = max(_CURVE_MIN_EVENTS, 4 * max(asked.values()) * hours)
    stop = np.flatnonzero(counts[keep] > limit)
    keep = keep[:stop[0] + 1] if stop.size else np.union1d(keep, [len(levels) - 1])
    allv = np.concatenate(arrays)
    qs = [0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999, 1.0]
    dist = {"quantiles": {f"{q:g}": float(np.quantile(allv, q)) for q in qs},
            "mean": float(allv.mean()), "std": float(allv.std()),
            "video_max": [float(s.max()) for s in arrays if len(s)]}
    return Calibration(
        thresholds=thresholds, rates=asked, observed=observed, rule=rule, hours=hours,
        frames=int(frames), videos=len(arrays), fps=[float(f) for f in fps],
        curve=[[float(levels[k]), int(counts[k])] for k in keep],
        complete=bool(not stop.size), distribution=dist,
        detector=json.loads(json.dumps(dict(detector or {}))),
        info={"aedfast_version": package_version(),
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def container_fps(source) -> float | None:
    """The frame rate a video file's container announces (OpenCV), or None (folders,
    arrays, cameras, files without one)."""
    if not isinstance(source, (str, os.PathLike)) or not Path(source).is_file():
        return None
    import cv2

    cap = cv2.VideoCapture(str(source))
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS)) if cap.isOpened() else 0.0
    finally:
        cap.release()
    return fps if math.isfinite(fps) and fps > 0 else None


def calibrate(detector, sources: Sequence, *, rates: Sequence[str | float] = ("1/h",),
              fps: float | None = None, rule: EventRule | None = None,
              out: str | os.PathLike | None = None, decode: str = "opencv",
              progress: bool = False) -> Calibration:
    """Score normal videos with `detector` (an `aedfast.Detector`) and calibrate thresholds
    for the false-alarm `rates` (docs/design.md §13); written to `out` (JSON, atomically)
    when given.

    sources: what `Detector.score_video` reads (files, frame folders, arrays), all normal.
    fps: their frame rate; default: each video file's container rate (a folder or an array
        has none: then `fps` is required).
    """
    from .progress import progress_bar

    if detector.protocol == "official" and detector.official_dataset == "shanghaitech":
        raise ValueError("the shanghaitech official protocol min-max normalises each video, "
                         "so its scores are not comparable across videos: calibrate a "
                         "Detector with protocol 'paper' or official_dataset 'avenue'")
    if not len(sources):
        raise ValueError("no normal videos to calibrate on")
    rates_f, scores = [], []
    for i, src in enumerate(progress_bar(sources, enabled=progress, desc="calibrate",
                                         unit="video")):
        rate = float(fps) if fps is not None else container_fps(src)
        name = src if isinstance(src, (str, os.PathLike)) else f"source {i}"
        if rate is None:
            raise ValueError(f"{name}: its frame rate is unknown (not a video file with one): "
                             "pass fps= (--fps)")
        scores.append(detector.score_video(src, decode=decode).scores)
        rates_f.append(rate)
    cal = calibrate_scores(scores, rates_f, rates, rule, detector_signature(detector))
    if out is not None:
        cal.save(out)
    return cal


# ----------------------------------------------------------------------------- the Detector


def calibration_path(checkpoint) -> Path | None:
    """Where a checkpoint's calibration lives: CK.calibration.json beside the checkpoint
    file (CK without its suffix; the teacher file of an official pair); None for a model
    object."""
    if isinstance(checkpoint, (tuple, list)) and checkpoint:
        checkpoint = checkpoint[0]
    if not isinstance(checkpoint, (str, os.PathLike)):
        return None
    return Path(checkpoint).with_suffix(".calibration.json")


def model_fingerprint(model: torch.nn.Module) -> str:
    """sha256 (hex, first 16 digits) of a model's state dict: names, shapes, dtypes, bytes."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def detector_signature(detector) -> dict:
    """What decides a Detector's scores, for `Calibration.mismatch`: preset, protocol,
    official rule, smoothing (every field), seed and the model's fingerprint."""
    return json.loads(json.dumps({
        "preset": detector.config.name, "protocol": detector.protocol,
        "official_dataset": detector.official_dataset,
        "smoothing": dataclasses.asdict(detector.smoothing), "seed": detector.seed,
        "model": detector.fingerprint}))


def resolve_calibration(spec, checkpoint, signature: Mapping) -> Calibration | None:
    """The calibration a Detector uses. spec: "auto" (CK.calibration.json beside the
    checkpoint when it exists; one made for another scorer is skipped with a warning), None
    (none), a path, a dict or a `Calibration` (one made for another scorer: ValueError)."""
    if spec is None:
        return None
    if isinstance(spec, str) and spec == "auto":
        path = calibration_path(checkpoint)
        if path is None or not path.is_file():
            return None
        cal = Calibration.load(path)
        diff = cal.mismatch(signature)
        if diff:
            warnings.warn(f"{path} not used: it calibrates another scorer ({'; '.join(diff)})",
                          RuntimeWarning, stacklevel=3)
            return None
        return cal
    if isinstance(spec, Calibration):
        cal, source = spec, "the calibration"
    elif isinstance(spec, Mapping):
        cal, source = Calibration.from_dict(spec), "the calibration"
    elif isinstance(spec, (str, os.PathLike)):
        cal, source = Calibration.load(spec), str(spec)
    else:
        raise TypeError(f"calibration must be 'auto', None, a path, a dict or a Calibration, "
                        f"got {type(spec).__name__}")
    diff = cal.mismatch(signature)
    if diff:
        raise ValueError(f"{source} was made for another scorer: {'; '.join(diff)}")
    return cal
