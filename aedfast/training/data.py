"""The streaming training data: each frame decoded at most once per epoch.

- A stream reads its stretch of the epoch (`aedfast.training.plan`) in order, a "pool" of
  consecutive frames at a time (sized by `pool_memory`), decoded and resized to the model's size
  once (`aedfast.frames.resize_frame`), the next pool decoded in a background thread. The pool's
  samples (centre frames) are shuffled; each step takes batch_size / streams samples from every
  stream, so a batch mixes S places of the data set.
- A sample is frames t-3, t-1, t, t+1, t+3 (a missing neighbour is replaced by frame t), with
  synthetic anomalies pasted with probability `anomaly_prob` (aedfast.anomalies; cut-outs come
  from the pool's own frames), after the optional gain jitter of `jitter_gains` (`photometric`;
  off by default, as in the paper). DataLoader workers run the streams; the batch is put together in
  the main process in stream order, so the data (and the result) do not depend on `workers`.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..anomalies import SAMPLE_OFFSETS, AnomalyPaster, CutoutSource, make_sources
from ..frames import resize_frame
from .config import TrainConfig
from .errors import TrainingDataError
from .plan import Plan, mix

__all__ = ["StreamDataset", "TrainingData", "default_workers", "jitter_gains", "make_paster",
           "stage_batches"]

# Fork starts workers at once and shares the videos without pickling. OpenCV's thread pool
# does not survive a fork (a forked child that touches it deadlocks), so the parent's pool is
# switched off while the workers are forked (`_batches`) and the children never use one.
_FORK = sys.platform.startswith("linux")


@dataclass
class TrainingData:
    """The training videos and what the streams need to read them: frame counts, each video's
    source (H, W), the plan, the model's input size (H, W), the seed and the anomaly paster
    (None: no anomalies; `use_cutouts`: its cut-outs come from the pools' frames) and the gain
    jitter sigma (`jitter_gains`; 0: off)."""

    videos: list
    lengths: list[int]
    source_sizes: list[tuple[int, int]]
    plan: Plan
    size: tuple[int, int]
    seed: int
    paster: AnomalyPaster | None = None
    use_cutouts: bool = False
    photometric: float = 0.0


def jitter_gains(frames: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """A sample's frames under lighting changes: uint8 [T, H, W, 3] -> a new uint8 array of
    the same shape, frame q multiplied by g0 * exp(N(0, sigma)) with one g0 = exp(N(0, 2 sigma))
    per sample (the scene's brightness) and the per-frame factor a flicker, then rounded and
    clipped to 0..255. The target is frame t as jittered, so the model learns to reconstruct
    a frame at its own brightness from neighbours at others (docs/design.md §4)."""
    if frames.ndim != 4 or frames.dtype != np.uint8:
        raise ValueError(f"expected frames uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    if not 0.0 <= sigma <= 0.5:
        raise ValueError(f"gain jitter sigma must be in [0, 0.5], got {sigma}")
    gains = np.exp(rng.normal(0.0, 2.0 * sigma) + rng.normal(0.0, sigma, len(frames)))
    out = frames.astype(np.float32) * gains.astype(np.float32)[:, None, None, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def make_paster(cfg: TrainConfig) -> tuple[AnomalyPaster | None, bool]:
    """(the anomaly paster of `cfg.anomalies` / `cfg.anomaly_prob` / `cfg.anomaly_size` or
    None, whether it takes cut-outs from the training frames)."""
    sources, use_cutouts = make_sources(cfg.anomalies)
    paster = None
    if (sources or use_cutouts) and cfg.anomaly_prob > 0:
        paster = AnomalyPaster(sources=sources, prob=cfg.anomaly_prob,
                               size=tuple(cfg.anomaly_size))
    return paster, use_cutouts


def default_workers(streams: int, world: int) -> int:
    """DataLoader workers per process: one per stream, at most the process's share of the
    CPUs less one (for the main process)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(0, min(streams, cpus // max(1, world) - 1))


class _Pool:
    """Decoded frames of one pool: per video, (first index, uint8 [n, H, W, 3])."""

    def __init__(self, frames: dict[int, tuple[int, np.ndarray]], samples: list[tuple[int, int]],
                 cutouts: CutoutSource | None):
        self.frames = frames
        self.samples = samples
        self.cutouts = cutouts

    def frame(self, v: int, i: int) -> np.ndarray:
        a, arr = self.frames[v]
        return arr[i - a]


class _Lane:
    """One stream of one rank inside one worker: loads pools (next one in the background) and
    produces its micro-batch of each step."""

    def __init__(self, owner: StreamDataset, lane: int, executor: ThreadPoolExecutor):
        self.o = owner
        self.lane = lane  # index within the rank
        self.glane = owner.rank * owner.plan.streams + lane
        self.mb = owner.plan.mb[lane]
        self.P = owner.plan.pool[lane]
        self.videos: dict[int, object] = {}  # private copies: one decoder position per stream
        self.executor = executor
        self.current: tuple[tuple[int, int], _Pool] | None = None
        self.pending: tuple[tuple[int, int], Future] | None = None

    # -- plan
    def _positions(self, epoch: int, pool: int) -> list[tuple[int, int]]:
        segs = self.o.plan.epoch(self.o.stage, epoch).lanes[self.glane]
        lo, hi = pool * self.P, (pool + 1) * self.P
        out, pos = [], 0
        for v, s, e in segs:
            n = e - s
            a, b = max(lo, pos), min(hi, pos + n)
            if a < b:
                out += [(v, s + (k - pos)) for k in range(a, b)]
            pos += n
        return out

    def _next_pool(self, epoch: int, pool: int) -> tuple[int, int] | None:
        n_l = sum(e - s for _, s, e in self.o.plan.epoch(self.o.stage, epoch).lanes[self.glane])
        used = self.o.plan.epoch(self.o.stage, epoch).steps * self.mb
        if (pool + 1) * self.P < min(n_l, used):
            return epoch, pool + 1
        return epoch + 1, 0

    def _used(self, key: tuple[int, int]) -> bool:
        """Whether pool `key` = (epoch, pool) feeds a step before the stage's stop."""
        epoch, pool = key
        return self.o.plan.epoch_start(self.o.stage, epoch) + pool * self.P // self.mb < self.o.stop

    # -- decoding
    def _video(self, v: int):
        if v not in self.videos:
            self.videos[v] = pickle.loads(pickle.dumps(self.o.videos[v]))
        return self.videos[v]

    def _load(self, key: tuple[int, int], prev: _Pool | None) -> _Pool:
        epoch, pool = key
        samples = self._positions(epoch, pool)
        ranges: dict[int, list[int]] = {}
        for v, t in samples:
            r = ranges.setdefault(v, [t, t])
            r[0], r[1] = min(r[0], t), max(r[1], t)
        H, W = self.o.size
        frames: dict[int, tuple[int, np.ndarray]] = {}
        for v, (lo, hi) in ranges.items():
            n = self.o.lengths[v]
            a, b = max(0, lo - 3), min(n, hi + 4)
            arr = np.empty((b - a, H, W, 3), np.uint8)
            k = a
            if prev is not None and v in prev.frames:  # frames shared with the previous pool
                pa, parr = prev.frames[v]
                while pa <= k < pa + len(parr) and k < b:
                    arr[k - a] = parr[k - pa]
                    k += 1
            if k < b:
                video = self._video(v)
                name = getattr(video, "name", str(v))
                for i, f in zip(range(k, b), video.frames(k, b)):
                    arr[i - a] = self._check(f, v, name, i)
                    k = i + 1
                if k < b:
                    raise TrainingDataError(f"video {name!r}: frames {k}..{b - 1} missing "
                                            f"(its length says {n})")
            frames[v] = (a, arr)
        rng = np.random.default_rng(mix(self.o.seed, self.o.stage, epoch, self.glane, pool, 1))
        order = rng.permutation(len(samples))
        samples = [samples[i] for i in order]
        cutouts = None
        if self.o.use_cutouts:
            clips = [arr for _, arr in frames.values()]
            cutouts = CutoutSource.from_frames(clips, rng)
        return _Pool(frames, samples, cutouts)

    def _check(self, f: np.ndarray, v: int, name: str, i: int) -> np.ndarray:
        if not isinstance(f, np.ndarray) or f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
            raise TrainingDataError(f"video {name!r} frame {i}: expected uint8 [H, W, 3] BGR, "
                                    f"got {getattr(f, 'dtype', type(f))} "
                                    f"{getattr(f, 'shape', '')}")
        want = self.o.source_sizes[v]
        if f.shape[:2] != want:
            raise TrainingDataError(
                f"video {name!r} frame {i}: size {f.shape[1]}x{f.shape[0]} differs from its "
                f"first frame's {want[1]}x{want[0]} (mixed resolutions inside one video)")
        return resize_frame(f, self.o.size)

    def pool(self, key: tuple[int, int]) -> _Pool:
        if self.current is not None and self.current[0] == key:
            return self.current[1]
        prev = self.current[1] if self.current is not None else None
        if self.pending is not None and self.pending[0] == key:
            p = self.pending[1].result()
        else:
            if self.pending is not None:
                self.pending[1].result()  # never leave a decode running behind
            p = self._load(key, prev)
        self.current, self.pending = (key, p), None
        nxt = self._next_pool(*key)
        if self._used(nxt):
            self.pending = (nxt, self.executor.submit(self._load, nxt, p))
        return p

    # -- samples
    def micro_batch(self, step: int) -> dict[str, np.ndarray]:
        epoch, j = self.o.plan.locate(self.o.stage, step)
        first = j * self.mb
        pool_idx, off = divmod(first, self.P)
        p = self.pool((epoch, pool_idx))
        H, W = self.o.size
        T = len(SAMPLE_OFFSETS)
        frames = np.empty((self.mb, T, H, W, 3), np.uint8)
        clean = np.empty((self.mb, H, W, 3), np.uint8)
        mask = np.zeros((self.mb, H, W), np.uint8)
        label = np.zeros(self.mb, np.float32)
        index = np.zeros((self.mb, 2), np.int64)
        for k in range(self.mb):
            v, t = p.samples[off + k]
            index[k] = v, t
            n = self.o.lengths[v]
            for q, d in enumerate(SAMPLE_OFFSETS):
                s = t + d
                frames[k, q] = p.frame(v, s if 0 <= s < n else t)
            if self.o.photometric:
                frames[k] = jitter_gains(frames[k], np.random.default_rng(
                    mix(self.o.seed, self.o.stage, epoch, self.glane, first + k, 3)),
                    self.o.photometric)
            clean[k] = frames[k, SAMPLE_OFFSETS.index(0)]
            if self.o.paster is not None:
                rng = np.random.default_rng(
                    mix(self.o.seed, self.o.stage, epoch, self.glane, first + k, 2))
                res = self.o.paster.apply(frames[k], rng, cutouts=p.cutouts)
                if res.label:
                    frames[k] = res.frames
                    mask[k] = res.masks[SAMPLE_OFFSETS.index(0)]
                    label[k] = 1.0
        return {"frames": frames, "clean": clean, "mask": mask, "label": label, "index": index}



class StreamDataset(torch.utils.data.IterableDataset):
    """Yields (step, stream, micro-batch) for stage-local steps start..stop-1, the streams of
    this rank split over the DataLoader workers (stream l -> worker l mod workers). A
    micro-batch is a dict of numpy arrays: frames uint8 [mb, 5, H, W, 3], clean uint8
    [mb, H, W, 3], mask uint8 [mb, H, W], label float32 [mb], index int64 [mb, 2] (video,
    frame); a stream that fails yields {"error": message} and stops."""

    def __init__(self, data: TrainingData, stage: int, start: int, stop: int, rank: int):
        super().__init__()
        self.videos = list(data.videos)
        self.lengths = data.lengths
        self.source_sizes = data.source_sizes
        self.plan = data.plan
        self.stage = stage
        self.start, self.stop = start, stop
        self.rank = rank
        self.size = data.size
        self.seed = data.seed
        self.paster = data.paster
        self.photometric = data.photometric
        self.use_cutouts = data.use_cutouts and data.paster is not None

    def __iter__(self) -> Iterator[tuple[int, int, dict]]:
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        if info is not None and not _FORK:  # a forked worker inherits cv2's setting (0)
            cv2.setNumThreads(1)
        mine = [lane for lane in range(self.plan.streams) if lane % nw == wid]
        executor = ThreadPoolExecutor(max_workers=max(1, len(mine)),
                                      thread_name_prefix="aedfast-decode")
        lanes = [_Lane(self, lane, executor) for lane in mine]
        try:
            for step in range(self.start, self.stop):
                for ln in lanes:
                    try:
                        mb = ln.micro_batch(step)
                    except Exception as e:  # noqa: BLE001 - reported by the main process
                        yield step, ln.lane, {"error": f"{type(e).__name__}: {e}"}
                        return
                    yield step, ln.lane, mb
        finally:
            for ln in lanes:
                if ln.pending is not None:
                    ln.pending[1].cancel()
            executor.shutdown(wait=True, cancel_futures=True)


def stage_batches(data: TrainingData, stage: int, start: int, stop: int, rank: int,
                  workers: int, pin_memory: bool) -> Iterator[dict[str, torch.Tensor]]:
    """The batches of this rank for stage-local steps start..stop-1, read by `workers`
    DataLoader processes (0: in this process): frames uint8 [B, 5, H, W, 3], clean uint8
    [B, H, W, 3], mask uint8 [B, H, W], label float32 [B], index int64 [B, 2]."""
    ds = StreamDataset(data, stage, start, stop, rank)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=None, num_workers=workers, pin_memory=pin_memory,
        prefetch_factor=4 if workers > 0 else None,
        multiprocessing_context=_loader_context() if workers > 0 else None)
    return _batches(loader, data.plan.streams, start)


def _loader_context() -> str | None:
    return "fork" if _FORK else None


def _batches(loader: torch.utils.data.DataLoader, streams: int, start: int
             ) -> Iterator[dict[str, torch.Tensor]]:
    """Reassemble the streams' micro-batches into batches, in stream order, step by step."""
    pending: dict[int, dict[int, dict]] = {}
    step = start
    if loader.num_workers > 0 and _FORK:
        threads = cv2.getNumThreads()
        cv2.setNumThreads(0)
        try:
            it = iter(loader)  # forks the workers
        finally:
            cv2.setNumThreads(threads)
    else:
        it = iter(loader)
    for s, lane, mb in it:
        if "error" in mb:
            raise TrainingDataError(mb["error"])
        pending.setdefault(int(s), {})[int(lane)] = mb
        while step in pending and len(pending[step]) == streams:
            parts = pending.pop(step)
            yield {k: torch.cat([parts[i][k] for i in range(streams)]) for k in parts[0]}
            step += 1

