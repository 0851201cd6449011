"""Live streams: many cameras scored frame by frame, with the same scores as offline.

`DetectorStream` (made by `Detector.stream`) keeps a frame store of each stream's last 7
frames, runs the detector's model step (`aedfast.step.StepRunner`) on the frames whose t+3
has arrived, and feeds the maps to a `StreamingSmoother`, the streaming form of
`aedfast.kernels.smoothing.smooth_scores`.

Streaming delay (docs/design.md §9): frame t's model input needs frame t+3, so its map exists
3 frames after it arrives; the 3D filter then needs window[0]//2 further frames and the
temporal Gaussian support//2 more. `DetectorStream.delay` = 3 + window[0]//2 + support//2
frames (15 frames with the defaults: 0.6 s at 25 fps).

Results are typed: each final score is a `FrameScore` (frame, score), a named tuple, and a
step returns a `StreamStep`, a read-only mapping {stream id: [FrameScore, ...]} that also
carries the step's dropped-frame errors.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch

from .alarms import Event, StreamAlarms
from .frames import check_frames_array
from .kernels.smoothing import parse_window, window_weights
from .kernels.temporal import parse_temporal, temporal_weights
from .scoring import check_floor, subtract_floor
from .step import OFFSET, stack_indices

if TYPE_CHECKING:
    from .detector import Detector

__all__ = ["DetectorStream", "FrameScore", "StreamStep", "StreamingSmoother"]


# ----------------------------------------------------------------------------- results


class FrameScore(NamedTuple):
    """One frame's final score from a stream. A tuple: ``t, s = item`` and ``item[1]`` work
    as with the plain (frame, score) tuples of earlier versions."""

    frame: int  # the frame's index in its stream (0 = the stream's first frame)
    score: float  # its smoothed anomaly score (float32 precision)

    @property
    def pred_score(self) -> float:
        """`score` under anomalib's name."""
        return self.score


@dataclass(eq=False)
class StreamStep(Mapping):
    """What a stream step returns: {stream id: [FrameScore, ...]} for every stream fed (lists
    empty while a stream's delay is not yet filled), read-only; ``==`` compares it with any
    mapping, e.g. a plain dict of lists of (frame, score) tuples.

    scores: the mapping itself. errors: {stream id: message} of the frames dropped in this
    step (`DetectorStream` with strict=False; empty otherwise). events: {stream id:
    [`aedfast.alarms.Event`, ...]} closed in this step, for a calibrated Detector
    (docs/design.md §13; empty otherwise).
    """

    scores: dict[Hashable, list[FrameScore]]
    errors: dict[Hashable, str] = field(default_factory=dict)
    events: dict[Hashable, list[Event]] = field(default_factory=dict)

    def __getitem__(self, stream_id: Hashable) -> list[FrameScore]:
        return self.scores[stream_id]

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self.scores)

    def __len__(self) -> int:
        return len(self.scores)

    def as_dict(self) -> dict[Hashable, list[tuple[int, float]]]:
        """{stream id: [(frame, score), ...]} with plain tuples (for JSON and old callers)."""
        return {sid: [(int(t), float(v)) for t, v in items] for sid, items in self.scores.items()}

    @property
    def pred_score(self) -> dict[Hashable, list[float]]:
        """{stream id: [score, ...]}: the scores alone, under anomalib's name."""
        return {sid: [v.score for v in items] for sid, items in self.scores.items()}


# ----------------------------------------------------------------------------- smoother


class _Stream:
    """One stream's state: its row in the smoother's rings (maps on the device, filtered frame
    maxima on the host) and its counters of absolute frame indices."""

    def __init__(self, slot: int) -> None:
        self.slot = slot   # row of the rings
        self.n_in = 0      # frames received
        self.n_max = 0     # frames whose filtered max is known
        self.n_out = 0     # frames whose score was emitted
        self.floor: float | None = None  # the score floor after frame n_out - 1


class StreamingSmoother:
    """`smooth_scores` for live cameras: N streams, maps fed frame by frame.

    Frame f's score needs maps up to f + window[0]//2 (3D filter) and frame maxima up to
    f + support//2 (temporal Gaussian), so it comes out `delay = window[0]//2 + support//2`
    frames after it went in: the step that feeds frame f + delay returns it. Each score
    equals the offline `smooth_scores` result for the whole stream (start borders handled as
    offline: replicated, or zeros for the official protocol), up to float rounding; `flush`
    ends a stream with the offline end borders.

    Memory: one ring of maps on `device`, [slots, window[0], h, w] float32 (a stream's last
    window[0] maps; slots grow by doubling as streams join and are reused when they leave),
    and a host ring of each stream's last support + window[0]//2 + 2 frame maxima. A step's
    work is O(window[0]) batched ops whatever the number of streams: the new maps go into the
    ring with one index_copy_, the temporal part of the separable 3D filter is a weighted sum
    of window[0] index_selects (temporaries: one [h, w] map per stream), the spatial part and
    the frame max run as one `aedfast::filter_frame_max` call (Triton on CUDA), and the
    temporal Gaussian of every stream's ready frame is one float64 matrix-vector product on
    the host. With `floor` (frames), each stream's scores then go above its own causal score
    floor (`aedfast.scoring.subtract_floor`, state carried from step to step).
    """

    def __init__(self, h: int, w: int, *, window: tuple[int, int, int] | int | None = (9, 9, 9),
                 window_kind: str = "box", sigma: float | None = 11.0,
                 support: int | None = 37, protocol: str = "centered",
                 floor: float | None = None,
                 device: torch.device | str | None = None) -> None:
        if h < 1 or w < 1:
            raise ValueError(f"h and w must be positive, got {h}, {w}")
        self.floor = check_floor(floor)
        self.h, self.w = int(h), int(w)
        self.window = parse_window(window, window_kind)
        self.window_kind = window_kind
        self.temporal = parse_temporal(sigma, support, protocol)
        self.protocol = protocol
        self.support = int(support) if self.temporal else 1
        self.weights = (temporal_weights(self.support, float(sigma), protocol)
                        if self.temporal else [1.0])
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.rt = self.window[0] // 2
        self.half = self.support // 2
        self.delay = self.rt + self.half
        self._wt = window_weights(self.window[0], window_kind)
        self._streams: dict[Hashable, _Stream] = {}
        self._ring = torch.empty(0, self.window[0], self.h, self.w, device=self.device)
        # frame maxima ring: wide enough for a flush (window[0]//2 + 1 new maxima at once)
        self._R = self.support + self.rt + 2
        self._mx = np.zeros((0, self._R), dtype=np.float64)
        self._w = np.asarray(self.weights, dtype=np.float64)
        self._free: list[int] = []

    @property
    def streams(self) -> list[Hashable]:
        """The ids of the open streams."""
        return list(self._streams)

    def add_stream(self, stream_id: Hashable) -> None:
        """Open a new stream (its first frame will be frame 0)."""
        if stream_id in self._streams:
            raise ValueError(f"stream {stream_id!r} already exists")
        if not self._free:
            n = self._ring.shape[0]
            grown = self._ring.new_empty((max(4, 2 * n), *self._ring.shape[1:]))
            grown[:n] = self._ring
            self._ring = grown
            self._mx = np.concatenate([self._mx, np.zeros((grown.shape[0] - n, self._R))])
            self._free = list(range(grown.shape[0] - 1, n - 1, -1))
        self._streams[stream_id] = _Stream(self._free.pop())

    def remove_stream(self, stream_id: Hashable, flush: bool = True) -> list[FrameScore]:
        """Close a stream. With flush (the default) its remaining scores are computed with the
        offline end borders and returned, as `flush` does; flush=False drops them."""
        out = self.flush(stream_id) if flush else []
        self._free.append(self._streams.pop(stream_id).slot)
        return out

    def flush(self, stream_id: Hashable) -> list[FrameScore]:
        """Finish a stream at its end: every not yet emitted score, with end borders exactly
        as offline. The stream stays open but takes no further frames (remove it next)."""
        st = self._get(stream_id)
        if st.n_in < 0:
            return []
        self._filter_ready([st], final=True)
        out = self._emit([st], final=True)[0]
        st.n_in = -1  # closed for input
        return out

    def step(self, maps: Mapping[Hashable, torch.Tensor] | torch.Tensor,
             ids: Sequence[Hashable] | None = None) -> StreamStep:
        """Feed frames and collect the scores that became final.

        maps: {id: [h, w] or [k, h, w] (k consecutive frames)} or a batched [S, h, w] tensor
            with `ids` naming its S streams. Streams not named do not advance.
        Returns a `StreamStep` {id: [FrameScore(frame_index, score), ...]} for every stream
        fed (lists may be empty during the first `delay` frames).
        """
        if isinstance(maps, torch.Tensor):
            # the batched form: one frame per stream, checked and converted in one go
            if ids is None or maps.dim() != 3 or maps.shape[0] != len(ids) \
                    or tuple(maps.shape[1:]) != (self.h, self.w):
                raise ValueError(f"a batched step needs maps [S, {self.h}, {self.w}] and ids of "
                                 "length S")
            if len(set(ids)) != len(ids):
                raise ValueError("a batched step names a stream twice")
            sub = [(sid, self._open(sid)) for sid in ids]
            frames = maps.detach().to(self.device, torch.float32)
            self._check_finite([sid for sid, _ in sub], frames)
            subs = [(sub, frames)] if sub else []
            fed_ids = list(ids)
        else:
            fed: dict[Hashable, tuple[_Stream, torch.Tensor]] = {}
            for sid, m in maps.items():  # check every stream before any state changes
                st = self._open(sid)
                if not isinstance(m, torch.Tensor) or m.dim() not in (2, 3) \
                        or tuple(m.shape[-2:]) != (self.h, self.w):
                    raise ValueError(f"stream {sid!r}: maps must be [{self.h}, {self.w}] or "
                                     f"[k, {self.h}, {self.w}]")
                fed[sid] = (st, m.detach().to(self.device, torch.float32)
                            .reshape(-1, self.h, self.w))
            # one frame per stream at a time (the ring holds exactly the window a frame
            # needs); each sub-step's frames are stacked once and checked in one pass
            subs = []
            for j in range(max((f.shape[0] for _, f in fed.values()), default=0)):
                sub = [(sid, st) for sid, (st, f) in fed.items() if f.shape[0] > j]
                frames = torch.stack([fed[sid][1][j] for sid, _ in sub])
                self._check_finite([sid for sid, _ in sub], frames)
                subs.append((sub, frames))
            fed_ids = list(fed)
        out: dict[Hashable, list[FrameScore]] = {sid: [] for sid in fed_ids}
        kt = self.window[0]
        for sub, frames in subs:
            pos = torch.tensor([st.slot * kt + st.n_in % kt for _, st in sub],
                               dtype=torch.int64, device=self.device)
            self._ring.view(-1, self.h, self.w).index_copy_(0, pos, frames)
            for _, st in sub:
                st.n_in += 1
            streams = [st for _, st in sub]
            self._filter_ready(streams, final=False)
            for (sid, _), scores in zip(sub, self._emit(streams, final=False)):
                out[sid] += scores
        return StreamStep(out)

    # -- internals -----------------------------------------------------------------------

    def _open(self, stream_id: Hashable) -> _Stream:
        st = self._get(stream_id)
        if st.n_in < 0:
            raise ValueError(f"stream {stream_id!r} was flushed; add a new stream")
        return st

    @staticmethod
    def _check_finite(ids: Sequence[Hashable], frames: torch.Tensor) -> None:
        finite = torch.isfinite(frames).flatten(1).all(1)
        if not bool(finite.all()):
            bad = ids[int((~finite).nonzero()[0, 0])]
            raise ValueError(f"stream {bad!r}: maps contain NaN or inf")

    def _get(self, stream_id: Hashable) -> _Stream:
        if stream_id not in self._streams:
            raise KeyError(f"unknown stream {stream_id!r}; call add_stream first")
        return self._streams[stream_id]

    def _filter_ready(self, streams: Sequence[_Stream], final: bool) -> None:
        """Filtered maxima of every frame whose temporal window is complete, all streams at
        once. The window's frames (indices clamped to the stream = replicate borders) are read
        from the ring, weighted and summed (the temporal pass of the separable filter), then
        one filter_frame_max call runs the spatial passes and the max."""
        kt = self.window[0]
        slot, frame, last = [], [], []
        for st in streams:
            ready = st.n_in if final else st.n_in - self.rt
            for f in range(st.n_max, ready):
                slot.append(st.slot)
                frame.append(f)
                last.append(st.n_in - 1)
        if not frame:
            return
        slot_a, f_a = np.asarray(slot), np.asarray(frame)
        j = np.clip(f_a[:, None] + np.arange(kt) - self.rt, 0, np.asarray(last)[:, None])
        idx = torch.from_numpy(np.ascontiguousarray((slot_a[:, None] * kt + j % kt).T))
        idx = idx.to(self.device)
        ring = self._ring.view(-1, self.h, self.w)
        acc = ring.index_select(0, idx[0]).mul_(self._wt[0])
        for k in range(1, kt):
            acc.add_(ring.index_select(0, idx[k]), alpha=self._wt[k])
        maxima = torch.ops.aedfast.filter_frame_max(acc, [1] * len(frame), [1, *self.window[1:]],
                                                    self.window_kind, True, True)
        self._mx[slot_a, f_a % self._R] = maxima.double().cpu().numpy()
        for st in streams:
            st.n_max = max(st.n_max, st.n_in if final else st.n_in - self.rt)

    def _emit(self, streams: Sequence[_Stream], final: bool) -> list[list[FrameScore]]:
        """The scores that became final, per stream: the temporal Gaussian of each ready
        frame's maxima (replicated borders for "centered", zeros for "official"), all
        streams' frames in one float64 product, rounded to float32."""
        slot, frame, last, owner = [], [], [], []
        for i, st in enumerate(streams):
            ready = st.n_max if final else st.n_max - self.half
            for g in range(st.n_out, ready):
                slot.append(st.slot)
                frame.append(g)
                last.append(st.n_max - 1)
                owner.append(i)
            st.n_out = max(st.n_out, ready)
        out: list[list[FrameScore]] = [[] for _ in streams]
        if not frame:
            return out
        g_a, last_a = np.asarray(frame), np.asarray(last)[:, None]
        j = g_a[:, None] + np.arange(self.support) - self.half
        vals = self._mx[np.asarray(slot)[:, None], np.clip(j, 0, last_a) % self._R]
        if self.protocol != "centered" and self.temporal:
            vals = np.where((j >= 0) & (j <= last_a), vals, 0.0)  # zero padding
        scores = (vals @ self._w).astype(np.float32)
        if self.floor is not None:
            scores = self._above_floor(streams, np.asarray(owner), scores)
        for i, g, sc in zip(owner, frame, scores.tolist()):
            out[i].append(FrameScore(int(g), sc))
        return out

    def _above_floor(self, streams: Sequence[_Stream], owner: np.ndarray, scores: np.ndarray
                     ) -> np.ndarray:
        """`subtract_floor` of each stream's new scores, all streams in one call: a [S, k]
        matrix (row = stream, NaN where a stream has fewer than k new frames; each stream's
        frames are consecutive in `scores`)."""
        rows, inv = np.unique(owner, return_inverse=True)
        starts = np.searchsorted(inv, np.arange(len(rows)))
        rank = np.arange(len(inv)) - starts[inv]
        mat = np.full((len(rows), int(rank.max()) + 1), np.nan)
        mat[inv, rank] = scores
        prev = np.array([np.nan if streams[i].floor is None else streams[i].floor
                         for i in rows])
        out, last = subtract_floor(mat, self.floor, prev)
        for i, b in zip(rows, last.tolist()):
            streams[i].floor = None if b != b else b
        return out[inv, rank]


# ----------------------------------------------------------------------------- streams


class _StreamState:
    __slots__ = ("row", "received", "processed")

    def __init__(self, row: int):
        self.row = row  # row of the frame store (7 slots per stream)
        self.received = 0  # frames received
        self.processed = 0  # frames through the model


class DetectorStream:
    """Live scoring of many streams (cameras): one frame per stream per `step`.

    `step(frames)` takes {stream_id: frame} (or a sequence / [S, H, W, 3] batch aligned with
    `ids`); each frame is uint8 [H, W, 3] BGR (grey / BGRA accepted as in `score_video`), in
    host or device memory, any size (resized on the device; a stream may change size). It
    returns a `StreamStep` {stream_id: [FrameScore(frame_index, score), ...]} with the scores
    that became final (and the step's dropped-frame errors).
    Streams that get no frame in a step do not advance. With a calibrated Detector each
    `StreamStep.events` holds the events that closed in it (merge_gap + 1 frames below the
    threshold after their last alarm, or the stream's end), the same as `score_video`'s;
    `last_events` keeps those of the last step or removal.

    Delay: frame t of a stream is scored when frame t + `delay` arrives, `delay` =
    3 (frame t+3 is part of t's model input) + window[0]//2 (3D filter) + support//2
    (temporal Gaussian); `remove` / `close` flush the rest with the offline end borders, so
    a stream's scores equal `Detector.score_video` on the same frames (same seed).

    Bad input: a frame that is not uint8 [H, W, 1|3|4] or [H, W], or a frame for an unknown
    stream, is dropped (that stream does not advance), a RuntimeWarning names it, and
    `last_errors` holds {stream_id: message} for the step; the other streams keep going. With
    strict=True the step raises ValueError/TypeError/KeyError instead, before any state
    changes.
    """

    SLOTS = 2 * OFFSET + 1  # frames t-3 .. t+3 per stream

    def __init__(self, detector: Detector, n_streams: int = 0, *,
                 max_streams: int | None = None, strict: bool = False):
        if n_streams < 0:
            raise ValueError(f"n_streams must be >= 0, got {n_streams}")
        self.runner = detector.runner
        self.preprocess = detector.preprocess
        self.img_size = tuple(detector.config.img_size)
        self.device = detector.device
        self.strict = bool(strict)
        sm = detector.smoothing
        if detector.protocol == "official" and detector.official_dataset == "shanghaitech":
            raise ValueError("the shanghaitech official protocol normalises each whole video "
                             "(min-max); streams cannot: use protocol='paper' or "
                             "official_dataset='avenue'")
        h, w = detector.map_size
        window = None if detector.protocol == "official" else sm.window
        self.smoother = StreamingSmoother(h, w, window=window, window_kind=sm.window_kind,
                                          sigma=sm.sigma, support=sm.support,
                                          protocol=sm.temporal, floor=sm.floor,
                                          device=detector.device)
        self.delay = OFFSET + self.smoother.delay
        self.alarms = None if detector.calibration is None else StreamAlarms(
            detector.alarm_threshold, detector.calibration.rule,
            w if detector.protocol == "paper" else None)
        self.last_events: dict[Hashable, list[Event]] = {}
        self._states: dict[Hashable, _StreamState] = {}
        self._free_rows: list[int] = []
        cap = max(int(max_streams or 0), n_streams, 1)
        self._alloc(cap)
        self._next_id = 0
        self.last_errors: dict[Hashable, str] = {}
        self.frames_in = 0
        for _ in range(n_streams):
            self.add()

    # -- streams --------------------------------------------------------------------------

    def _alloc(self, rows: int) -> None:
        H, W = self.img_size
        new = torch.empty(rows * self.SLOTS, 3, H, W, dtype=torch.uint8, device=self.device)
        old = getattr(self, "store", None)
        start = 0
        if old is not None:
            new[:old.shape[0]] = old
            start = old.shape[0] // self.SLOTS
            self._finalizer()  # the graphs captured on the old store
        self.store = new
        # the runner's CUDA graphs on this store go when the store goes
        self._finalizer = self.runner.track(self, new)
        self._free_rows.extend(range(start, rows))
        self._free_rows.sort(reverse=True)

    @property
    def ids(self) -> list[Hashable]:
        """The open streams, in the order they were added."""
        return list(self._states)

    def __len__(self) -> int:
        return len(self._states)

    def add(self, stream_id: Hashable | None = None) -> Hashable:
        """Open a stream (its first frame is frame 0); returns its id (the next integer when
        none is given)."""
        if stream_id is None:
            while self._next_id in self._states:
                self._next_id += 1
            stream_id = self._next_id
            self._next_id += 1
        if stream_id in self._states:
            raise ValueError(f"stream {stream_id!r} already exists")
        if not self._free_rows:
            self._alloc(2 * (self.store.shape[0] // self.SLOTS))
        self._states[stream_id] = _StreamState(self._free_rows.pop())
        self.smoother.add_stream(stream_id)
        return stream_id

    @torch.inference_mode()
    def remove(self, stream_id: Hashable) -> list[FrameScore]:
        """Close a stream: its remaining frames are scored (end borders as offline) and
        returned as [FrameScore(frame_index, score), ...]."""
        return self.remove_many([stream_id])[stream_id]

    @torch.inference_mode()
    def remove_many(self, stream_ids: Iterable[Hashable]) -> StreamStep:
        """Close several streams at once (one batched model step); a `StreamStep`
        {id: [FrameScore(t, score), ...]}."""
        sts = {}
        for sid in stream_ids:
            if sid not in self._states:
                raise KeyError(f"unknown stream {sid!r}")
            sts[sid] = self._states[sid]
        jobs = []
        for sid, st in sts.items():
            t = np.arange(st.processed, st.received, dtype=np.int64)
            jobs.append((sid, st, t, st.received - 1))
        out = self._score(jobs)
        for sid, st in sts.items():
            out[sid] = out.get(sid, []) + self.smoother.remove_stream(sid, flush=True)
            del self._states[sid]
            self._free_rows.append(st.row)
        events = {} if self.alarms is None else self.alarms.feed(out)
        for sid in events:
            events[sid] += self.alarms.close(sid)
        self.last_events = events
        return StreamStep(out, events=events)

    def close(self) -> StreamStep:
        """Close every stream; {id: [FrameScore(frame_index, score), ...]} of their remaining
        frames."""
        return self.remove_many(list(self._states))

    # -- steps ----------------------------------------------------------------------------

    def _validate(self, sid, frame) -> torch.Tensor:
        if sid not in self._states:
            raise KeyError(f"unknown stream {sid!r}; add it first")
        if isinstance(frame, np.ndarray):
            frame = torch.from_numpy(np.ascontiguousarray(frame))
        if not isinstance(frame, torch.Tensor):
            raise TypeError(f"stream {sid!r}: a frame must be a numpy array or a tensor, got "
                            f"{type(frame).__name__}")
        check_frames_array(frame[None], what=f"stream {sid!r}: frame")
        return frame

    @torch.inference_mode()
    def step(self, frames: Mapping[Hashable, object] | Sequence | np.ndarray | torch.Tensor,
             ids: Sequence[Hashable] | None = None) -> StreamStep:
        """Ingest one frame per named stream; returns a `StreamStep` {id: [FrameScore(
        frame_index, score), ...]} for the streams fed (empty lists while their delay is not
        yet filled), with `errors` = `last_errors`."""
        if isinstance(frames, Mapping):
            items = list(frames.items())
        else:
            names = self.ids if ids is None else list(ids)
            if len(frames) != len(names):
                raise ValueError(f"got {len(frames)} frames for {len(names)} streams; pass a "
                                 "dict {stream_id: frame} or `ids`")
            items = list(zip(names, frames))
        self.last_errors = {}
        good: list[tuple[Hashable, torch.Tensor]] = []
        for sid, fr in items:
            try:
                good.append((sid, self._validate(sid, fr)))
            except (TypeError, ValueError, KeyError) as e:
                if self.strict:
                    raise
                msg = str(e).strip("'\"")
                self.last_errors[sid] = msg
                warnings.warn(f"frame dropped: {msg}", RuntimeWarning, stacklevel=2)
        if len({sid for sid, _ in good}) != len(good):
            raise ValueError("a stream got more than one frame in one step")
        # upload: one batched pre-processing per (size, channels, device) group
        groups: dict[tuple, list[tuple[Hashable, torch.Tensor]]] = {}
        for sid, fr in good:
            groups.setdefault((tuple(fr.shape), fr.device), []).append((sid, fr))
        for members in groups.values():
            batch = torch.stack([fr for _, fr in members])
            x = self.preprocess(batch)
            rows = np.array([self._states[s].row * self.SLOTS
                             + self._states[s].received % self.SLOTS for s, _ in members])
            self.store.index_copy_(0, torch.from_numpy(rows).to(self.device), x)
        jobs = []
        for sid, _ in good:
            st = self._states[sid]
            st.received += 1
            t = st.received - 1 - OFFSET  # the frame whose t+3 just arrived
            if t >= 0:
                jobs.append((sid, st, [t], None))
        self.frames_in += len(good)
        scored = self._score(jobs)
        out = {sid: scored.get(sid, []) for sid, _ in good}
        self.last_events = {} if self.alarms is None else self.alarms.feed(out)
        return StreamStep(out, dict(self.last_errors), self.last_events)

    def _score(self, jobs: list) -> dict[Hashable, list[FrameScore]]:
        """Model + maps for the given (stream, state, frame indices, last frame) jobs, then the
        streaming smoother. Index arithmetic is vectorised over all jobs (no per-stream numpy
        calls: at 1,000 streams those were most of a step's host time)."""
        jobs = [(sid, st, list(t), last) for sid, st, t, last in jobs if len(t)]
        if not jobs:
            return {}
        slots = self.SLOTS
        t_list: list[int] = []
        base_list: list[int] = []
        last_list: list[int] = []
        for _sid, st, t, last in jobs:
            lastf = st.received - 1 if last is None else last
            t_list += t
            base_list += [st.row * slots] * len(t)
            last_list += [lastf] * len(t)
            st.processed = int(t[-1]) + 1
        tids = np.asarray(t_list, dtype=np.int64)
        bases = np.asarray(base_list, dtype=np.int64)
        idx = stack_indices(tids, np.asarray(last_list, dtype=np.int64),
                                     lambda f: bases + f % slots)
        maps, _raw = self.runner.run(self.store, idx, tids)
        if self.alarms is not None:  # each frame's map peak, kept until its score is final
            self.alarms.locate([sid for sid, _, t, _ in jobs for _ in t], tids, maps)
        if len(tids) == len(jobs):  # one frame per stream: the smoother's batched form
            return dict(self.smoother.step(maps, ids=[sid for sid, *_ in jobs]).scores)
        per = {}
        i = 0
        for sid, _st, t, _ in jobs:
            per[sid] = maps[i:i + len(t)]
            i += len(t)
        return dict(self.smoother.step(per).scores)
