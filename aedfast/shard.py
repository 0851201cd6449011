"""Scoring many videos on many GPUs and machines: the videos sharded across torch.distributed
ranks (torchrun), each rank scoring its share with its own Detector (docs/design.md §14).

    torchrun --nproc_per_node=8 -m aedfast score-many VIDEOS... --checkpoint CK --out DIR

Every result is written as soon as it is scored to OUT/parts/<key>.npz (atomically), by the
rank that scored it; a run that is interrupted and started again with the same command
skips the videos whose part file is there and was made by the same scorer (same model,
protocol, smoothing, seed and alarm threshold), and scores the rest. The results travel to
rank 0 over torch.distributed (gather_object), not through the file system, so machines need
no shared folder; rank 0 writes OUT/results.json (and OUT/events.csv for a calibrated
Detector) once, atomically. Without torchrun the same call runs in one process.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .alarms import events_csv
from .calibration import detector_signature
from .checkpoint import atomic_write
from .training.dist import Dist, init_dist, resolve_device

__all__ = ["ShardRun", "VideoScores", "dataset_sources", "expand_sources", "score_many",
           "video_key"]

logger = logging.getLogger(__name__)
PARTS = "parts"
RESULTS = "results.json"


@dataclass
class VideoScores:
    """One video's result: scores / raw_scores float32 [T] (`VideoResult`), its events
    (dicts of `aedfast.alarms.Event`, None without a calibration), the rank that scored it,
    the seconds it took, and whether this run reused it from its part file."""

    key: str
    name: str
    source: str
    scores: np.ndarray
    raw_scores: np.ndarray
    seconds: float
    rank: int
    events: list[dict] | None = None
    reused: bool = False

    def as_dict(self) -> dict:
        return {"key": self.key, "name": self.name, "source": self.source,
                "frames": int(len(self.scores)), "seconds": self.seconds, "rank": self.rank,
                "reused": self.reused,
                "scores": self.scores.tolist(), "raw_scores": self.raw_scores.tolist(),
                "events": self.events}


@dataclass
class ShardRun:
    """What `score_many` returns on every rank. scored: the keys this rank scored in this
    run; reused: the keys whose part file this rank found finished and reused. results (in
    the order of the sources), path and metrics (micro/macro AUC with labels): rank 0 only,
    None elsewhere."""

    rank: int
    world: int
    scored: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    results: list[VideoScores] | None = None
    path: Path | None = None
    metrics: dict | None = None


def video_key(name: str, source) -> str:
    """A file-name-safe key, unique per source: the name plus 8 hex digits of the sha1 of
    the source's path as given (of the name for sources that are not paths), so that every
    rank of every machine, running the same command, computes the same keys."""
    ident = os.fspath(source) if isinstance(source, (str, os.PathLike)) else name
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80] or "video"
    return f"{safe}-{hashlib.sha1(ident.encode()).hexdigest()[:8]}"


def expand_sources(paths: Sequence[str | os.PathLike]) -> list[tuple[str, str]]:
    """(name, source) of the videos named: a video file or a folder of frames is one video;
    a folder of videos and / or frame folders is each of them (`open_dataset(kind="folder")`)."""
    from .data import open_dataset

    out = []
    for p in paths:
        if not Path(p).exists():
            raise FileNotFoundError(f"no such video file or folder: {p}")
        for v in open_dataset(p, "folder").test:
            out.append((v.name, v.source))
    return out


def dataset_sources(root: str | os.PathLike, kind: str, split: str = "test"
                    ) -> tuple[list[tuple[str, str]], dict[str, np.ndarray] | None]:
    """(name, source) of a data set's `split` ("test" or "train") videos and, for "test",
    their frame labels {name: uint8 [T]} (None when a video has none)."""
    from .data import open_dataset

    ds = open_dataset(root, kind)
    videos = ds.test if split == "test" else ds.train
    if not videos:
        raise ValueError(f"{root}: no {split} videos")
    pairs = [(v.name, v.source) for v in videos]
    labels = None
    if split == "test" and all(v.labels is not None for v in videos):
        labels = {v.name: np.asarray(v.labels) for v in videos}
    return pairs, labels


def _signature(det) -> dict:
    sig = detector_signature(det)
    if det.calibration is not None:
        sig["alarms"] = {"threshold": det.alarm_threshold,
                         "rule": [det.calibration.rule.min_length, det.calibration.rule.merge_gap]}
    return json.loads(json.dumps(sig))


def _write_part(path: Path, res: VideoScores, sig: dict) -> None:
    meta = {"key": res.key, "name": res.name, "source": res.source, "seconds": res.seconds,
            "rank": res.rank, "events": res.events, "signature": sig}

    def write(tmp: Path) -> None:
        buf = io.BytesIO()
        np.savez(buf, scores=res.scores, raw_scores=res.raw_scores,
                 meta=np.array(json.dumps(meta)))
        tmp.write_bytes(buf.getvalue())

    atomic_write(path, write)


def _read_part(path: Path, sig: dict) -> VideoScores | None:
    """The finished result in `path`, or None when it is missing, unreadable or made by
    another scorer (then it is scored again)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            scores, raw = z["scores"], z["raw_scores"]
    except (OSError, ValueError, KeyError) as e:
        logger.warning("%s: unreadable (%s); scoring this video again", path, e)
        return None
    if meta.get("signature") != sig:
        logger.warning("%s was made with other scoring settings; scoring this video again",
                       path)
        return None
    return VideoScores(meta["key"], meta["name"], meta["source"], scores, raw,
                       float(meta["seconds"]), int(meta["rank"]), meta.get("events"), True)


def _make_detector(detector, kwargs: Mapping | None, d: Dist):
    from .detector import Detector

    if isinstance(detector, Detector):
        return detector
    kw = dict(kwargs or {})
    kw["device"] = resolve_device(kw.get("device"), d)
    if kw["device"].type == "cuda":
        torch.cuda.set_device(kw["device"])
    return Detector(detector, **kw)


def score_many(detector, sources: Sequence, out: str | os.PathLike, *,
               names: Sequence[str] | None = None,
               labels: Mapping[str, np.ndarray] | None = None,
               detector_kwargs: Mapping | None = None, decode: str = "opencv",
               progress: bool = False) -> ShardRun:
    """Score `sources` across the ranks of a torch.distributed run (or in this process alone
    without torchrun) and write OUT/results.json once, on rank 0.

    detector: a checkpoint (each rank builds a Detector with `detector_kwargs` on its own
        device: its local GPU under torchrun, else the CPU; "device": "cuda" also means the
        local GPU), or a Detector this rank already built.
    sources: video files, frame folders, or (name, source) pairs; names: the names of plain
        sources (default: the file or folder name).
    labels: {name: 0/1 frame labels}: rank 0 adds micro / macro frame AUC (docs/design.md §5)
        to the results.
    Videos are dealt round-robin, in the order given, to the ranks; finished ones (a part
    file of the same scorer, seen by any rank) are skipped. Every rank returns a `ShardRun`.
    """
    pairs = []
    for i, s in enumerate(sources):
        if isinstance(s, tuple):
            pairs.append((str(s[0]), s[1]))
        elif names is not None:
            pairs.append((str(names[i]), s))
        elif isinstance(s, (str, os.PathLike)):
            pairs.append((Path(s).stem or str(s), s))
        else:
            raise ValueError(f"source {i} is not a path: give it a name (names= or (name, "
                             "source) pairs)")
    if not pairs:
        raise ValueError("no videos to score")
    keys = [video_key(n, s) for n, s in pairs]
    twice = sorted({pairs[i][0] for i, k in enumerate(keys) if keys.count(k) > 1})
    if twice:
        raise ValueError(f"videos named twice in the sources: {twice[:5]}")
    hint = (detector_kwargs or {}).get("device")
    d = init_dist(getattr(detector, "device", None) or (torch.device(hint) if hint else None))
    try:
        return _run(detector, pairs, keys, Path(out), labels, detector_kwargs, decode,
                    progress, d)
    finally:
        d.close()


def _run(detector, pairs, keys, out: Path, labels, detector_kwargs, decode, progress,
         d: Dist) -> ShardRun:
    from .progress import progress_bar

    det = _make_detector(detector, detector_kwargs, d)
    sig = _signature(det)
    parts = out / PARTS
    run = ShardRun(d.rank, d.world)
    held = {k: r for k in keys if (r := _read_part(parts / f"{k}.npz", sig)) is not None}
    seen = [sorted(held)]
    if d.on:  # which rank holds which finished video (machines may not share a disk)
        seen = [None] * d.world
        torch.distributed.all_gather_object(seen, sorted(held))
    owner: dict[str, int] = {}
    for rank, ks in enumerate(seen):
        for k in ks:
            owner.setdefault(k, rank)
    todo = [i for i, k in enumerate(keys) if k not in owner]
    mine = todo[d.rank::d.world]
    mine_results: dict[str, VideoScores] = {k: held[k] for k in keys if owner.get(k) == d.rank}
    run.reused = list(mine_results)
    for i in progress_bar(mine, enabled=progress and d.rank == 0, desc="score", unit="video"):
        name, src = pairs[i]
        res = det.score_video(src, decode=decode)
        events = None if res.events is None else [e.as_dict() for e in res.events]
        vs = VideoScores(keys[i], name, str(src) if isinstance(src, (str, os.PathLike))
                         else name, res.scores, res.raw_scores, res.seconds, d.rank, events)
        _write_part(parts / f"{keys[i]}.npz", vs, sig)
        mine_results[keys[i]] = vs
        run.scored.append(keys[i])
    gathered = [mine_results]
    if d.on:
        gathered = [None] * d.world if d.rank == 0 else None
        torch.distributed.gather_object(mine_results, gathered, dst=0)
    if d.rank == 0:
        merged: dict[str, VideoScores] = {}
        for part in gathered:
            merged.update(part)
        missing = [k for k in keys if k not in merged]
        if missing:
            raise RuntimeError(f"no result came back for {missing[:3]}")
        run.results = [merged[k] for k in keys]
        run.metrics = _metrics(run.results, labels)
        run.path = _write_results(out, run, det, sig)
    d.barrier()
    return run


def _metrics(results: list[VideoScores], labels) -> dict | None:
    if labels is None:
        return None
    from .metrics import micro_macro_auc

    scores = [r.scores.astype(np.float64) for r in results]
    y = [np.asarray(labels[r.name]).reshape(-1) for r in results]
    micro, macro = micro_macro_auc(scores, y)
    return {"micro_auc": micro, "macro_auc": macro}


def _write_results(out: Path, run: ShardRun, det, sig: dict) -> Path:
    from .report import write_json

    frames = sum(len(r.scores) for r in run.results)
    payload = {"videos": len(run.results), "frames": frames, "world_size": run.world,
               "detector": det.describe(), "signature": sig, "metrics": run.metrics,
               "results": [r.as_dict() for r in run.results]}
    path = write_json(out / RESULTS, payload)
    if det.calibration is not None:
        events = [(r.name, e) for r in run.results for e in r.events or []]
        text = events_csv([e for _, e in events], [n for n, _ in events])
        atomic_write(out / "events.csv", lambda tmp: tmp.write_text(text))
    return path
