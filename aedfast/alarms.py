"""Alarms from frame scores: events at a threshold, offline and in live streams.

An event (docs/design.md §13) is a run of frames whose score is above the threshold, runs
separated by at most `merge_gap` frames below it merged into one, kept when it spans at least
`min_length` frames; it reports its first and last frame, its peak frame and score, and the
(row, col) of the largest value of the peak frame's unfiltered anomaly map. `EventTracker`
is the one implementation of the rule: `find_events` runs it over a whole video and
`StreamAlarms` over live streams, so both raise the same events. The thresholds come from
`aedfast.calibration` (false-alarm rates measured on normal video).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .checkpoint import atomic_write

__all__ = [
    "EVENT_COLUMNS", "Event", "EventRule", "EventTracker", "StreamAlarms", "alarm_mask",
    "events_csv", "find_events", "video_alarms", "write_events",
]


@dataclass(frozen=True)
class EventRule:
    """How alarm frames become events: runs of frames above the threshold separated by at
    most `merge_gap` frames below it are one event, kept when it spans >= `min_length`
    frames (from its first to its last frame above the threshold)."""

    min_length: int = 1
    merge_gap: int = 25

    def __post_init__(self) -> None:
        if int(self.min_length) < 1 or int(self.merge_gap) < 0:
            raise ValueError(f"need min_length >= 1 and merge_gap >= 0, got "
                             f"{self.min_length}, {self.merge_gap}")
        object.__setattr__(self, "min_length", int(self.min_length))
        object.__setattr__(self, "merge_gap", int(self.merge_gap))


@dataclass(frozen=True)
class Event:
    """One alarm: frames start..end (inclusive, 0-based), the frame of its largest score
    (the first such frame on ties), that score, and the (row, col) of the largest value in
    the unfiltered anomaly map of the peak frame, in the map's grid (pixels of the preset's
    H x W, or tokens with resolution "token"); None where there are no maps (protocol
    "official")."""

    start: int
    end: int
    peak_frame: int
    peak_score: float
    peak_row: int | None = None
    peak_col: int | None = None

    @property
    def length(self) -> int:
        """Frames from start to end, inclusive."""
        return self.end - self.start + 1

    def as_dict(self) -> dict:
        """Plain values for JSON: the fields and `length`."""
        return {**dataclasses.asdict(self), "length": self.length}


class EventTracker:
    """Events of one score sequence fed in order, in pieces of any size: `push` returns the
    events that closed (merge_gap + 1 frames below the threshold after their last alarm
    frame), `finish` the one still open at the end. Offline (`find_events`) and streams use
    this one rule, so a stream raises the same events as `score_video`."""

    def __init__(self, threshold: float, rule: EventRule):
        self.threshold = float(threshold)
        self.rule = rule
        self.frames = 0  # frames seen
        self._open: list | None = None  # start, last, peak frame, peak score, row, col

    def push(self, scores: np.ndarray | Sequence[float],
             locations: np.ndarray | Sequence | None = None) -> list[Event]:
        """Feed the next frames' scores (float [n]) and optionally their map peaks
        ([n, 2] (row, col), rows may be None); returns the events that closed."""
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        if locations is not None and len(locations) != len(s):
            raise ValueError(f"{len(locations)} locations for {len(s)} scores")
        out: list[Event] = []
        gap, base = self.rule.merge_gap, self.frames
        for i in np.flatnonzero(s > self.threshold).tolist():
            t, v = base + i, float(s[i])
            loc = (None, None) if locations is None or locations[i] is None else \
                (int(locations[i][0]), int(locations[i][1]))
            o = self._open
            if o is not None and t - o[1] - 1 > gap:
                self._close(out)
                o = None
            if o is None:
                self._open = [t, t, t, v, *loc]
            else:
                o[1] = t
                if v > o[3]:
                    o[2:] = [t, v, *loc]
        self.frames += len(s)
        if self._open is not None and self.frames - 1 - self._open[1] > gap:
            self._close(out)
        return out

    def finish(self) -> list[Event]:
        """The end of the sequence: the open event, if any (and long enough)."""
        out: list[Event] = []
        if self._open is not None:
            self._close(out)
        return out

    def _close(self, out: list[Event]) -> None:
        start, last, pf, ps, row, col = self._open
        self._open = None
        if last - start + 1 >= self.rule.min_length:
            out.append(Event(start, last, pf, ps, row, col))


def find_events(scores: np.ndarray, threshold: float, rule: EventRule,
                locations: np.ndarray | None = None) -> list[Event]:
    """The events of one video: scores float [T], locations int [T, 2] (row, col) or None."""
    tracker = EventTracker(threshold, rule)
    return tracker.push(scores, locations) + tracker.finish()


def alarm_mask(events: Iterable[Event], frames: int) -> np.ndarray:
    """bool [frames]: True on the frames covered by an event (start..end inclusive)."""
    mask = np.zeros(int(frames), dtype=bool)
    for e in events:
        mask[e.start:e.end + 1] = True
    return mask


def video_alarms(scores: np.ndarray, threshold: float, rule: EventRule,
                 peaks: torch.Tensor | None, map_width: int) -> tuple[np.ndarray, list[Event]]:
    """(alarms bool [T], events) of one video; peaks: int [T] flat argmax of each frame's
    unfiltered map (row-major, `map_width` columns), or None (no locations)."""
    locs = None
    if peaks is not None:
        flat = peaks.cpu().numpy().astype(np.int64)
        locs = np.stack([flat // map_width, flat % map_width], axis=1)
    events = find_events(scores, threshold, rule, locs)
    return alarm_mask(events, len(scores)), events


class StreamAlarms:
    """Events of live streams: an `EventTracker` per stream, fed each final score as the
    stream emits it, and each frame's map peak (row, col), taken when its map is made and
    kept until its score is final (a stream's delay of frames at most)."""

    def __init__(self, threshold: float, rule: EventRule, map_width: int | None):
        self.threshold, self.rule, self.map_width = float(threshold), rule, map_width
        self._trackers: dict[Hashable, EventTracker] = {}
        self._peaks: dict[Hashable, dict[int, tuple[int, int]]] = {}

    def locate(self, ids: Sequence[Hashable], frames: np.ndarray, maps: torch.Tensor) -> None:
        """Record the map peaks of a model step: maps [n, h, w] of frames [n] of streams ids."""
        if self.map_width is None:
            return
        flat = maps.flatten(1).argmax(1).cpu().tolist()
        for sid, t, f in zip(ids, np.asarray(frames).tolist(), flat):
            self._peaks.setdefault(sid, {})[int(t)] = divmod(int(f), self.map_width)

    def feed(self, scores: Mapping[Hashable, Sequence[tuple[int, float]]]
             ) -> dict[Hashable, list[Event]]:
        """The events closed by these final scores {id: [(frame, score), ...]}."""
        out: dict[Hashable, list[Event]] = {}
        for sid, items in scores.items():
            tracker = self._trackers.setdefault(sid, EventTracker(self.threshold, self.rule))
            out[sid] = []
            if not items:
                continue
            if int(items[0][0]) != tracker.frames:
                raise RuntimeError(f"stream {sid!r}: score of frame {items[0][0]} arrived, "
                                   f"frame {tracker.frames} expected")
            peaks = self._peaks.get(sid, {})
            locs = [peaks.pop(int(t), None) for t, _ in items] if self.map_width else None
            out[sid] = tracker.push([s for _, s in items], locs)
        return out

    def close(self, stream_id: Hashable) -> list[Event]:
        """End a stream: its open event, if any; the stream's state is dropped."""
        self._peaks.pop(stream_id, None)
        tracker = self._trackers.pop(stream_id, None)
        return tracker.finish() if tracker is not None else []


EVENT_COLUMNS = ("start", "end", "length", "peak_frame", "peak_score", "peak_row", "peak_col")


def events_csv(events: Sequence[Event | Mapping], videos: Sequence[str] | None = None) -> str:
    """CSV text, one row per event (`EVENT_COLUMNS`, after a "video" column when `videos`
    names each event's video); an absent location is an empty field."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(("video",) * (videos is not None) + EVENT_COLUMNS)
    for i, e in enumerate(events):
        d = e.as_dict() if isinstance(e, Event) else e
        cells = ["" if d[c] is None else f"{d[c]:.6g}" if c == "peak_score" else str(d[c])
                 for c in EVENT_COLUMNS]
        out.writerow(([str(videos[i])] if videos is not None else []) + cells)
    return buf.getvalue()


def write_events(json_path: str | os.PathLike, csv_path: str | os.PathLike,
                 events: Sequence[Event], meta: Mapping) -> None:
    """Write one video's events as JSON ({**meta, "events": [...]}) and CSV (`events_csv`),
    both atomically."""
    from .report import write_json

    write_json(json_path, {**dict(meta), "events": [e.as_dict() for e in events]})
    text = events_csv(events)
    atomic_write(csv_path, lambda tmp: tmp.write_text(text))
