"""Two-stage training of the AED-MAE (SPEC §1-§4).

Stage 1 trains the encoder, the teacher decoder and the cls head: the motion-weighted
reconstruction loss on 4-channel targets (SPEC §2 step 8, §3) plus `cls_weight` x binary cross
entropy of the cls head against "this sample has a pasted anomaly". Stage 2 freezes everything
but the student branch (frozen modules in eval mode, so their BatchNorm statistics stay put)
and trains it to reproduce the detached teacher on the masked tokens (SPEC §3).

Data path (each frame decoded at most once per epoch):

- An epoch is a random permutation of the training videos, concatenated and cut into
  `streams x world_size` contiguous stretches ("streams"; cuts snap to a video boundary when one
  lies within 10% of the ideal cut, else they split a video and the <= 6 frames around the cut
  are read by both streams). Rank r owns streams r*S .. r*S+S-1.
- A stream reads its stretch in order, a "pool" of consecutive frames at a time (sized by
  `pool_memory`), decoded and resized to the model's size once, the next pool decoded in a
  background thread. The pool's samples (centre frames) are shuffled; each step takes
  batch_size / streams samples from every stream, so a batch mixes S places of the data set.
- A sample is frames t-3, t-1, t, t+1, t+3 (a missing neighbour is replaced by frame t), with
  synthetic anomalies pasted with probability `anomaly_prob` (aedfast.anomalies; cut-outs come
  from the pool's own frames). DataLoader workers run the streams; the batch is put together in
  the main process in stream order, so the data (and the result) do not depend on `workers`.
- On the device: the 9-channel input (t-3, t, t+3, BGR, (v - 127.5) / 127.5), the token
  weights from the motion op (aedfast.kernels.motion_token_weights on frames t-1, t+1 with the
  pasted object's mask as anomaly map) and the target (clean frame t + mask channel).

Everything random is a pure function of (seed, stage, epoch, stream, position) or (seed, rank,
step): model init, data order, anomalies, masking noise and dropout. So a run is reproducible
and `resume=True` continues a killed run exactly from its last checkpoint (weights, optimizer
state and step, written atomically every `checkpoint_every` steps and at the end of each stage).

Distributed: launched by torchrun (env RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR), DDP over
NCCL on GPUs or gloo on CPUs, one or several machines; `batch_size` is per process. Example:
``torchrun --nproc-per-node 8 -m aedfast train DATA --dataset avenue --preset avenue --out run``.

Outputs in `out`: ``<name>.safetensors`` (final weights + config, `AEDMAE.load`),
``checkpoint.pt`` (resume state, loaded with weights_only=True) and ``train_log.jsonl`` (one
JSON object per logged step: losses, lr, grad norm, frames/s).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pickle
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .anomalies import SAMPLE_OFFSETS, AnomalyPaster, CutoutSource, make_sources
from .checkpoint import CheckpointError, atomic_torch_save, torch_load
from .frames import resize_frame
from .model import AEDMAE, AEDConfig, get_preset, patchify

__all__ = [
    "PRESET_DEFAULTS", "TrainConfig", "TrainingDataError", "TrainingError",
    "add_train_arguments", "run_from_args", "train",
]

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "train_log.jsonl"
_FORMAT = "aedfast-train-1"


class TrainingError(RuntimeError):
    """Training cannot go on as asked: the message says why."""


class TrainingDataError(ValueError):
    """The training data cannot be used: the message names the video/frame and the problem."""


# ----------------------------------------------------------------------------- configuration


@dataclass
class TrainConfig:
    """Everything that defines a training run. `PRESET_DEFAULTS` fills the fields left None.

    Stage lengths: `teacher_steps` / `student_steps`, else `teacher_epochs` /
    `student_epochs`, else `steps` or `epochs` for the whole run, split with
    `student_fraction` going to stage 2 (SPEC §4: 200 epochs, student from epoch 100).
    """

    preset: str = "tiny"
    model_overrides: dict = field(default_factory=dict)  # AEDConfig fields (tests, variants)
    name: str | None = None  # final file <name>.safetensors; default "aed_<preset>"
    epochs: float | None = None
    steps: int | None = None
    teacher_epochs: float | None = None
    student_epochs: float | None = None
    teacher_steps: int | None = None
    student_steps: int | None = None
    student_fraction: float = 0.5
    batch_size: int | None = None  # per process
    lr: float | None = None
    weight_decay: float = 0.05  # none on biases, norms, cls/mask tokens
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int | None = None
    lr_schedule: str | None = None  # "constant" (official) or "cosine" (to 1% of lr)
    clip_grad: float = 1.0  # max gradient norm; 0 = off
    cls_weight: float = 1.0
    anomalies: str = "procedural"  # see aedfast.anomalies.make_sources
    anomaly_prob: float = 0.25
    median: bool = True  # 3x3 median before differencing (SPEC §3)
    streams: int = 8
    workers: int | None = None  # DataLoader workers per process; default from the CPU count
    pool_memory: float = 2.0  # GiB of decoded frames per process (two pools per stream)
    allow_mixed_sizes: bool = False  # training videos of different resolutions (all resized)
    seed: int = 0
    device: str | None = None
    amp: bool | None = None  # bf16 autocast; default on CUDA
    compile: bool | None = None  # torch.compile the step; default on CUDA
    checkpoint_every: int | None = None  # steps between checkpoints (and at each stage's end)
    log_every: int | None = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d


# SPEC §4 for the official presets (200 epochs, the student from epoch 100). tiny: about 5
# minutes on 2 CPU cores for 2,000 frames of 64 x 128 (measured: 276 s, ~100 frames/s in
# stage 1, ~270 in stage 2; the synthetic benchmark then scores micro AUC 0.82).
_OFFICIAL = dict(batch_size=100, lr=1e-4, teacher_epochs=100, student_epochs=100,
                 warmup_steps=0, lr_schedule="constant", log_every=50, checkpoint_every=500)
PRESET_DEFAULTS: dict[str, dict] = {
    "avenue": dict(_OFFICIAL),
    "shanghaitech": dict(_OFFICIAL),
    "tiny": dict(batch_size=32, lr=1e-3, teacher_epochs=20, student_epochs=4, warmup_steps=50,
                 lr_schedule="cosine", log_every=10, checkpoint_every=200),
}
_FALLBACK = dict(batch_size=32, lr=1e-4, teacher_epochs=25, student_epochs=25, warmup_steps=0,
                 lr_schedule="constant", log_every=20, checkpoint_every=500)
_LENGTH_FIELDS = ("epochs", "steps", "teacher_epochs", "student_epochs", "teacher_steps",
                  "student_steps")


def resolve_config(config: TrainConfig | None = None, **overrides) -> TrainConfig:
    """`config` with `overrides` applied and the preset's defaults filled in where a field is
    None (the default stage lengths only when no length was given)."""
    cfg = dataclasses.replace(config or TrainConfig(), **overrides)
    defaults = PRESET_DEFAULTS.get(cfg.preset, _FALLBACK)
    total_given = cfg.epochs is not None or cfg.steps is not None
    changes = {}
    for k, v in defaults.items():
        if getattr(cfg, k) is not None:
            continue
        if k in _LENGTH_FIELDS:  # a stage's default length, unless that stage or the
            stage = k.split("_")[0]  # whole run has a length already
            if total_given or getattr(cfg, f"{stage}_steps") is not None:
                continue
        changes[k] = v
    cfg = dataclasses.replace(cfg, **changes)
    if cfg.batch_size is None or cfg.batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {cfg.batch_size}")
    if cfg.lr is None or cfg.lr <= 0:
        raise ValueError(f"lr must be positive, got {cfg.lr}")
    if cfg.lr_schedule not in ("constant", "cosine"):
        raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {cfg.lr_schedule!r}")
    if not 0 <= cfg.student_fraction < 1:
        raise ValueError("student_fraction must be in [0, 1)")
    if cfg.checkpoint_every is None or cfg.checkpoint_every < 1:
        raise ValueError("checkpoint_every must be >= 1")
    if cfg.streams < 1:
        raise ValueError("streams must be >= 1")
    for k in _LENGTH_FIELDS:
        v = getattr(cfg, k)
        if v is not None and v < 0:
            raise ValueError(f"{k} must be >= 0, got {v}")
    cfg.betas = tuple(float(b) for b in cfg.betas)
    return cfg


def _model_config(cfg: TrainConfig) -> AEDConfig:
    return get_preset(cfg.preset, **dict(cfg.model_overrides))


# ----------------------------------------------------------------------------- data plan


def _mix(*parts: int) -> list[int]:
    return [int(p) & 0xFFFFFFFF for p in parts]


def _cuts(lengths: list[int], n_lanes: int, rng: np.random.Generator) -> tuple[np.ndarray,
                                                                                list[int]]:
    """(video order, cut positions in the concatenated centre-frame sequence)."""
    order = rng.permutation(len(lengths))
    ends = np.cumsum([lengths[v] for v in order])
    total = int(ends[-1])
    bounds = np.concatenate([[0], ends])
    cuts = [0]
    for k in range(1, n_lanes):
        ideal = k * total / n_lanes
        b = int(bounds[np.argmin(np.abs(bounds - ideal))])
        c = b if abs(b - ideal) <= 0.1 * total / n_lanes else int(round(ideal))
        cuts.append(max(c, cuts[-1]))
    cuts.append(total)
    return order, cuts


@dataclass
class _EpochPlan:
    """One epoch of one stage: each global stream's stretch as (video, start, stop) segments of
    centre frames, and the number of steps (min over streams of samples // micro-batch)."""

    lanes: list[list[tuple[int, int, int]]]
    steps: int


class _Plan:
    """Deterministic data plan shared by every rank and worker (pure function of its inputs)."""

    def __init__(self, lengths: list[int], streams: int, world: int, batch: int, seed: int,
                 pool_frames: int):
        self.lengths = list(lengths)
        self.streams = min(streams, batch)
        self.world = world
        self.batch = batch
        self.seed = seed
        self.mb = [batch // self.streams + (1 if i < batch % self.streams else 0)
                   for i in range(self.streams)]
        self.pool = [max(m, (pool_frames // m) * m) for m in self.mb]  # multiple of micro-batch
        self._cache: dict[tuple[int, int], _EpochPlan] = {}
        self._counts: dict[int, list[int]] = {}

    def epoch(self, stage: int, epoch: int) -> _EpochPlan:
        key = (stage, epoch)
        if key not in self._cache:
            n_lanes = self.streams * self.world
            rng = np.random.default_rng(_mix(self.seed, stage, epoch, 0xE90C))
            order, cuts = _cuts(self.lengths, n_lanes, rng)
            starts = np.concatenate([[0], np.cumsum([self.lengths[v] for v in order])])
            lanes = []
            for k in range(n_lanes):
                a, b = cuts[k], cuts[k + 1]
                segs = []
                for i, v in enumerate(order):
                    s, e = max(a, starts[i]), min(b, starts[i + 1])
                    if s < e:
                        segs.append((int(v), int(s - starts[i]), int(e - starts[i])))
                lanes.append(segs)
            steps = min(sum(e - s for _, s, e in segs) // self.mb[k % self.streams]
                        for k, segs in enumerate(lanes))
            self._cache[key] = _EpochPlan(lanes, int(steps))
            if len(self._cache) > 8:
                self._cache.pop(next(iter(self._cache)))
        return self._cache[key]

    def epoch_start(self, stage: int, epoch: int) -> int:
        """Stage-local step at which `epoch` starts (epoch step counts are kept for good)."""
        counts = self._counts.setdefault(stage, [])
        while len(counts) < epoch:
            n = self.epoch(stage, len(counts)).steps
            if n <= 0:
                raise TrainingDataError(
                    f"{sum(self.lengths)} training frames cannot fill one batch of "
                    f"{self.batch} split over {self.streams * self.world} streams: lower "
                    "batch_size or streams")
            counts.append(n)
        return sum(counts[:epoch])

    def locate(self, stage: int, step: int) -> tuple[int, int]:
        """(epoch, step within the epoch) of stage-local step `step`."""
        counts = self._counts.setdefault(stage, [])
        epoch, start = 0, 0
        while True:
            if epoch == len(counts):
                self.epoch_start(stage, epoch + 1)
            if step < start + counts[epoch]:
                return epoch, step - start
            start += counts[epoch]
            epoch += 1

    def steps_for_epochs(self, stage: int, epochs: float) -> int:
        whole = int(math.floor(epochs))
        total = self.epoch_start(stage, whole)
        return total + int(round((epochs - whole) * self.epoch(stage, whole).steps))


# ----------------------------------------------------------------------------- streams


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

    def __init__(self, owner: _StreamDataset, lane: int, executor: ThreadPoolExecutor):
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
        rng = np.random.default_rng(_mix(self.o.seed, self.o.stage, epoch, self.glane, pool, 1))
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
            clean[k] = frames[k, SAMPLE_OFFSETS.index(0)]
            if self.o.paster is not None:
                rng = np.random.default_rng(
                    _mix(self.o.seed, self.o.stage, epoch, self.glane, first + k, 2))
                res = self.o.paster.apply(frames[k], rng, cutouts=p.cutouts)
                if res.label:
                    frames[k] = res.frames
                    mask[k] = res.masks[SAMPLE_OFFSETS.index(0)]
                    label[k] = 1.0
        return {"frames": frames, "clean": clean, "mask": mask, "label": label, "index": index}


class _StreamDataset(torch.utils.data.IterableDataset):
    """Yields (step, stream, micro-batch) for stage-local steps start..stop-1, the streams of
    this rank split over the DataLoader workers (stream l -> worker l mod workers)."""

    def __init__(self, videos: Sequence, lengths: list[int], source_sizes: list[tuple[int, int]],
                 plan: _Plan, stage: int, start: int, stop: int, rank: int,
                 size: tuple[int, int], seed: int, paster: AnomalyPaster | None,
                 use_cutouts: bool):
        super().__init__()
        self.videos = list(videos)
        self.lengths = lengths
        self.source_sizes = source_sizes
        self.plan = plan
        self.stage = stage
        self.start, self.stop = start, stop
        self.rank = rank
        self.size = size
        self.seed = seed
        self.paster = paster
        self.use_cutouts = use_cutouts and paster is not None

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


# Fork starts workers at once and shares the videos without pickling. OpenCV's thread pool
# does not survive a fork (a forked child that touches it deadlocks), so the parent's pool is
# switched off while the workers are forked (`_batches`) and the children never use one.
_FORK = sys.platform.startswith("linux")


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


# ----------------------------------------------------------------------------- device side


def prepare_batch(batch: dict[str, torch.Tensor], config: AEDConfig, device: torch.device,
                  median: bool = True, targets: bool = True) -> tuple[torch.Tensor | None, ...]:
    """A loader batch -> (x [B, 9, H, W], target [B, L, p*p*4], weights [B, L], label [B]).

    batch: frames uint8 [B, 5, H, W, 3] (offsets -3, -1, 0, 1, 3; BGR, anomalies pasted),
    clean uint8 [B, H, W, 3] (frame t without them), mask uint8 [B, H, W] (0/1 pasted
    pixels at t), label float [B], index int [B, 2] (video, frame). All float outputs are
    float32. targets=False (the student stage) skips target and weights (None).
    """
    nb = device.type == "cuda"
    frames = batch["frames"].to(device, non_blocking=nb)
    clean = batch["clean"].to(device, non_blocking=nb)
    amap = batch["mask"].to(device, non_blocking=nb).float()
    label = batch["label"].to(device, non_blocking=nb).float()
    B, _, H, W, _ = frames.shape
    x = frames[:, [0, 2, 4]].permute(0, 1, 4, 2, 3).reshape(B, 9, H, W).float()
    x = (x - 127.5) / 127.5
    if not targets:
        return x, None, None, label
    from .kernels import motion_token_weights

    weights = motion_token_weights(frames[:, 1], frames[:, 3], config.patch_size, median=median,
                                   anomaly_map=amap)
    tgt = torch.cat([clean.permute(0, 3, 1, 2).float(), amap[:, None] * 255.0], dim=1)
    target = patchify((tgt - 127.5) / 127.5, config.patch_size)
    return x, target, weights, label


class _Objective(nn.Module):
    """Stage 1: sum_L w * MSE(teacher, target) (mean over the batch) + cls_weight * BCE.
    Stage 2: mean over masked tokens of the squared student - teacher.detach() difference.
    Returns (loss, detached parts): stage 1 (reconstruction, cls), stage 2 (student,)."""

    def __init__(self, model: AEDMAE, stage: int, cls_weight: float):
        super().__init__()
        self.model = model
        self.stage = stage
        self.cls_weight = float(cls_weight)

    def forward(self, x, target, weights, label, noise):
        out = self.model(x, noise=noise)
        if self.stage == 1:
            per_token = (out.teacher.float() - target).pow(2).mean(-1)
            rec = (per_token * weights).sum(1).mean()
            cls = F.binary_cross_entropy_with_logits(out.cls_logit.float(), label)
            return rec + self.cls_weight * cls, torch.stack([rec.detach(), cls.detach()])
        per_token = (out.student.float() - out.teacher.detach().float()).pow(2).mean(-1)
        mask = out.mask.float()
        loss = (per_token * mask).sum() / mask.sum().clamp_min(1.0)
        return loss, loss.detach()[None]


def _student_modules(model: AEDMAE) -> list[nn.Module]:
    return [model.decoder_student_block, model.decoder_student_norm, model.decoder_student_pred]


def _is_student(name: str) -> bool:
    return name.startswith("decoder_student_")


def _set_stage(model: AEDMAE, stage: int) -> list[tuple[str, nn.Parameter]]:
    """requires_grad and train/eval modes for a stage; returns the trainable parameters.
    Stage 1: all but the student train (the student sits in eval mode, untouched). Stage 2:
    only the student trains; the rest is in eval mode so its BatchNorm statistics and dropout
    stay off."""
    model.train(stage == 1)
    for m in _student_modules(model):
        m.train(stage == 2)
    params = []
    for n, p in model.named_parameters():
        p.requires_grad_(_is_student(n) == (stage == 2))
        if p.requires_grad:
            params.append((n, p))
    return params


def _optimizer(params: list[tuple[str, nn.Parameter]], cfg: TrainConfig) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for n, p in params:
        skip = p.ndim <= 1 or n.endswith(".bias") or n in ("cls_token", "mask_token")
        (no_decay if skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def _lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    """Learning rate at stage-local step `step` of `total`."""
    warm = cfg.warmup_steps or 0
    if warm and step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.lr_schedule == "cosine" and total > warm:
        frac = (step - warm) / max(1, total - warm)
        return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))
    return cfg.lr


def _step_seed(seed: int, rank: int, step: int) -> int:
    return int(np.random.SeedSequence(_mix(seed, rank, step, 0x5EED)).generate_state(1)[0])


# ----------------------------------------------------------------------------- checkpoints


def _load_checkpoint(path: Path, model_cfg: AEDConfig, cfg: TrainConfig, world: int) -> dict:
    ck = torch_load(path)
    if not isinstance(ck, dict) or ck.get("format") != _FORMAT:
        raise CheckpointError(f"{path}: not an aedfast training checkpoint")
    theirs = ck["config"]
    mine = model_cfg.to_dict()
    if theirs != mine:
        diff = sorted(k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k))
        raise CheckpointError(
            f"{path}: this checkpoint trains preset {theirs.get('name')!r} "
            f"({', '.join(f'{k}={theirs.get(k)}' for k in diff)}), but this run asks for "
            f"preset {mine['name']!r} ({', '.join(f'{k}={mine.get(k)}' for k in diff)}); "
            "resume with the same preset or choose another output folder")
    old = ck.get("train", {})
    keys = ("seed", "batch_size", "streams", "anomalies", "anomaly_prob", "lr", "cls_weight",
            "median", "clip_grad", "weight_decay", "lr_schedule", "warmup_steps")
    changed = [k for k in keys if k in old and old[k] != cfg.to_dict()[k]]
    if ck.get("world_size", 1) != world:
        changed.append(f"world_size ({ck.get('world_size')} -> {world})")
    if changed:
        warnings.warn(f"resuming {path} with different settings ({', '.join(changed)}): the run "
                      "continues but will not equal an uninterrupted one", stacklevel=3)
    return ck


# ----------------------------------------------------------------------------- progress


class _Progress:
    """tqdm bar on a terminal; elsewhere (log files) one line every `every` steps."""

    def __init__(self, enabled: bool, total: int, initial: int, every: int):
        self.enabled = enabled
        self.total, self.every = total, max(1, every)
        self.bar = None
        self.tty = enabled and sys.stderr.isatty()
        self.t0, self.s0 = time.perf_counter(), initial
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                            file=sys.stderr)

    def update(self, step: int, stage: int, losses: dict, fps: float) -> None:
        if not self.enabled:
            return
        text = " ".join(f"{k} {v:.4f}" for k, v in losses.items())
        if self.bar is not None:
            self.bar.set_description(f"stage {stage}", refresh=False)
            self.bar.set_postfix_str(f"{text} {fps:.0f} frames/s", refresh=False)
            self.bar.update(step - self.bar.n)
        else:
            rate = (step - self.s0) / max(1e-9, time.perf_counter() - self.t0)
            eta = (self.total - step) / rate if rate > 0 else float("nan")
            print(f"stage {stage} step {step}/{self.total} {text} {fps:.1f} frames/s "
                  f"ETA {_hms(eta)}", file=sys.stderr, flush=True)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _hms(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(s)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


# ----------------------------------------------------------------------------- the run


def _open_videos(data, dataset: str) -> list:
    if isinstance(data, (str, os.PathLike)):
        from .data import open_dataset

        videos = open_dataset(data, dataset).train
        where = str(data)
    elif hasattr(data, "train"):
        videos, where = data.train, str(getattr(data, "root", "data set"))
    else:
        videos, where = list(data), "the given videos"
    if not videos:
        raise TrainingDataError(f"{where}: no training videos")
    return list(videos)


def _probe(videos: list, allow_mixed: bool) -> tuple[list[int], list[tuple[int, int]]]:
    lengths, sizes = [], []
    for v in videos:
        name = getattr(v, "name", repr(v))
        n = len(v)
        if n < 1:
            raise TrainingDataError(f"training video {name!r} has no frames")
        try:
            f = v[0]
        except Exception as e:  # noqa: BLE001
            raise TrainingDataError(f"training video {name!r}: cannot read frame 0: {e}") from e
        if not isinstance(f, np.ndarray) or f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
            raise TrainingDataError(f"training video {name!r}: frame 0 is not uint8 [H, W, 3]")
        lengths.append(n)
        sizes.append(tuple(int(s) for s in f.shape[:2]))
    distinct = sorted(set(sizes))
    if len(distinct) > 1 and not allow_mixed:
        ex = {s: next(getattr(v, "name", "?") for v, z in zip(videos, sizes) if z == s)
              for s in distinct}
        raise TrainingDataError(
            "training videos have mixed resolutions: "
            + ", ".join(f"{w}x{h} (e.g. {ex[(h, w)]!r})" for h, w in distinct[:6])
            + "; every frame is resized to the model's input, which distorts some of them: "
            "pass allow_mixed_sizes=True (--allow-mixed-sizes) to train anyway")
    return lengths, sizes


def _default_workers(streams: int, world: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(0, min(streams, cpus // max(1, world) - 1))


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False

    @property
    def on(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.on:
            torch.distributed.barrier()


def _init_dist(device: torch.device | None) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    owned = False
    if not dist.is_initialized():
        cuda = torch.cuda.is_available() and (device is None or device.type == "cuda")
        dist.init_process_group("nccl" if cuda else "gloo")
        owned = True
    return _Dist(dist.get_rank(), dist.get_world_size(),
                 int(os.environ.get("LOCAL_RANK", "0")), owned)


def _resolve_device(spec: str | None, d: _Dist) -> torch.device:
    if spec:
        dev = torch.device(spec)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", d.local_rank)
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda", d.local_rank)
    return torch.device("cpu")


def train(data, *, dataset: str = "auto", out: str | os.PathLike = "aedfast_run",
          config: TrainConfig | None = None, resume: bool = False, progress: bool = True,
          callback: Callable[[dict], None] | None = None, **overrides) -> Path:
    """Train an AED-MAE on normal videos; returns the path of ``out/<name>.safetensors``.

    data: a data set root (opened with `aedfast.data.open_dataset(data, dataset)`), an opened
        data set (its `.train` is used) or a list of videos (`len(v)`, `v[i]` -> uint8
        [H, W, 3] BGR, `v.frames(start, stop)`).
    config / overrides: a `TrainConfig` and field overrides (preset="tiny", epochs=..., ...);
        fields left None take the preset's defaults (`PRESET_DEFAULTS`; SPEC §4).
    resume: continue from ``out/checkpoint.pt`` (exactly, given the same settings); without it
        an existing checkpoint in `out` is an error (nothing is overwritten by accident).
    callback: called after every step with a dict (step, stage, total_steps, losses, model).
    Under torchrun every process calls this; rank 0 writes the files.
    """
    cfg = resolve_config(config, **overrides)
    out = Path(out)
    model_cfg = _model_config(cfg)
    device_hint = torch.device(cfg.device) if cfg.device else None
    dist_info = _init_dist(device_hint)
    try:
        return _run(data, dataset, out, cfg, model_cfg, resume, progress, callback, dist_info)
    finally:
        if dist_info.owned:
            torch.distributed.destroy_process_group()


def _run(data, dataset: str, out: Path, cfg: TrainConfig, model_cfg: AEDConfig, resume: bool,
         progress: bool, callback, d: _Dist) -> Path:
    device = _resolve_device(cfg.device, d)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    amp = (device.type == "cuda") if cfg.amp is None else bool(cfg.amp)
    use_compile = (device.type == "cuda") if cfg.compile is None else bool(cfg.compile)
    lead = d.rank == 0
    show = progress and lead

    ck_path = out / CHECKPOINT_NAME
    if ck_path.exists() and not resume:
        raise TrainingError(f"{out} already holds a training checkpoint ({ck_path.name}): pass "
                            "resume=True (--resume) to continue it, or choose another output "
                            "folder")
    ck = None
    if resume and ck_path.exists():
        ck = _load_checkpoint(ck_path, model_cfg, cfg, d.world)

    videos = _open_videos(data, dataset)
    lengths, src_sizes = _probe(videos, cfg.allow_mixed_sizes)
    H, W = model_cfg.img_size
    streams = min(cfg.streams, cfg.batch_size)
    pool_frames = int(cfg.pool_memory * 2**30 / (2 * streams * H * W * 3))
    plan = _Plan(lengths, streams, d.world, cfg.batch_size, cfg.seed, max(1, pool_frames))
    plan.locate(1, 0)  # raises a clear error when one batch cannot be filled
    s1, s2 = _stage_lengths(cfg, plan)
    total = s1 + s2
    if total < 1:
        raise TrainingError("the schedule has no steps: give epochs/steps > 0")

    sources, use_cutouts = make_sources(cfg.anomalies)
    paster = None
    if (sources or use_cutouts) and cfg.anomaly_prob > 0:
        paster = AnomalyPaster(sources=sources, prob=cfg.anomaly_prob)

    torch.manual_seed(cfg.seed)
    model = AEDMAE(model_cfg).to(device)
    step = 0
    if ck is not None:
        model.load_state_dict(ck["model"])
        step = int(ck["step"])
        if step > total:
            raise TrainingError(f"{ck_path} is at step {step}, past this schedule's {total} "
                                "steps")
        ck_s1 = int(ck.get("stage_steps", [s1])[0])
        if (ck["stage"] == 2 and ck_s1 != s1) or (ck["stage"] == 1 and step > s1):
            raise TrainingError(
                f"{ck_path} is at step {step} in stage {ck['stage']} of a run whose stage 1 "
                f"had {ck_s1} steps, but this schedule's stage 1 has {s1}: keep the stage-1 "
                "length of the interrupted run (give --teacher-steps/--teacher-epochs "
                "explicitly when extending it)")
    workers = _default_workers(streams, d.world) if cfg.workers is None else int(cfg.workers)
    log_every = cfg.log_every or 10
    log = _Log(out / LOG_NAME, lead, step if ck is not None else 0)
    bar = _Progress(show, total, step, log_every)
    if show:
        bar.message(f"training {model_cfg.name} ({sum(p.numel() for p in model.parameters()):,}"
                    f" parameters) on {len(videos)} videos / {sum(lengths)} frames, device "
                    f"{device}{' bf16' if amp else ''}{' compiled' if use_compile else ''}, "
                    f"{d.world} process(es), batch {cfg.batch_size}, {workers} workers; "
                    f"stage 1 {s1} steps, stage 2 {s2} steps"
                    + (f"; resuming at step {step}" if ck is not None else ""))

    common = dict(videos=videos, lengths=lengths, src_sizes=src_sizes, plan=plan, cfg=cfg,
                  model_cfg=model_cfg, device=device, amp=amp, use_compile=use_compile,
                  workers=workers, paster=paster, use_cutouts=use_cutouts, d=d, log=log,
                  bar=bar, callback=callback, out=out, total=total, log_every=log_every,
                  stage_steps=[s1, s2])
    try:
        for stage, (first, length) in ((1, (0, s1)), (2, (s1, s2))):
            if step >= first + length or length == 0:
                continue
            opt_state = ck["optimizer"] if (ck is not None and ck["stage"] == stage
                                            and step > first) else None
            step = _train_stage(model, stage, first, length, step, opt_state, **common)
    finally:
        bar.close()
    final = out / f"{cfg.name or 'aed_' + model_cfg.name}.safetensors"
    if lead:
        model.eval()
        model.save(final, extra={"train": cfg.to_dict(), "steps": total, "stage_steps": [s1, s2],
                                 "frames": sum(lengths), "videos": len(videos),
                                 "world_size": d.world})
        bar.message(f"wrote {final}")
    d.barrier()
    return final


def _stage_lengths(cfg: TrainConfig, plan: _Plan) -> tuple[int, int]:
    f = cfg.student_fraction

    def length(stage: int, steps: int | None, epochs: float | None, share: float) -> int:
        if steps is not None:
            return int(steps)
        if epochs is not None:
            return plan.steps_for_epochs(stage, epochs)
        if cfg.steps is not None:
            return int(round(cfg.steps * share))
        if cfg.epochs is not None:
            return plan.steps_for_epochs(stage, cfg.epochs * share)
        return 0

    s1 = length(1, cfg.teacher_steps, cfg.teacher_epochs, 1 - f)
    s2 = length(2, cfg.student_steps, cfg.student_epochs, f)
    if cfg.steps is not None and cfg.teacher_steps is None and cfg.student_steps is None \
            and cfg.teacher_epochs is None and cfg.student_epochs is None:
        s2 = int(cfg.steps) - s1
    return max(0, s1), max(0, s2)


class _Log:
    """JSON-lines loss log; on resume, records past the resumed step are dropped."""

    def __init__(self, path: Path, active: bool, keep_until: int):
        self.path, self.active = path, active
        if not active:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if keep_until > 0 and path.exists():
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill
                if rec.get("step", 0) <= keep_until:
                    kept.append(line)
        path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        if self.active:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")


def _train_stage(model: AEDMAE, stage: int, first: int, length: int, step: int,
                 opt_state: dict | None, *, videos, lengths, src_sizes, plan: _Plan,
                 cfg: TrainConfig, model_cfg: AEDConfig, device: torch.device, amp: bool,
                 use_compile: bool, workers: int, paster, use_cutouts: bool, d: _Dist,
                 log: _Log, bar: _Progress, callback, out: Path, total: int,
                 log_every: int, stage_steps: list[int]) -> int:
    params = _set_stage(model, stage)
    opt = _optimizer(params, cfg)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    objective: nn.Module = _Objective(model, stage, cfg.cls_weight)
    if d.on:
        from torch.nn.parallel import DistributedDataParallel as DDP

        objective = DDP(objective, device_ids=[device.index] if device.type == "cuda" else None)
    run = torch.compile(objective) if use_compile else objective
    compiled_ok = False
    trainable = [p for _, p in params]

    local0 = step - first
    ds = _StreamDataset(videos, lengths, src_sizes, plan, stage, local0, length, d.rank,
                        tuple(model_cfg.img_size), cfg.seed, paster, use_cutouts)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=None, num_workers=workers, pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers > 0 else None,
        multiprocessing_context=_loader_context() if workers > 0 else None)
    names = ["rec", "cls"] if stage == 1 else ["student"]
    acc = torch.zeros(len(names) + 2, device=device)  # parts..., loss, grad norm
    n_acc, frames_acc, t_win = 0, 0, time.perf_counter()
    B = cfg.batch_size
    L = model_cfg.num_tokens
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp)
    for batch in _batches(loader, plan.streams, local0):
        x, target, weights, label = prepare_batch(batch, model_cfg, device, cfg.median,
                                                  targets=stage == 1)
        torch.manual_seed(_step_seed(cfg.seed, d.rank, step))
        noise = torch.rand(B, L, device=device)
        for g in opt.param_groups:
            g["lr"] = _lr_at(cfg, step - first, length)
        with autocast:
            if run is not objective and not compiled_ok:
                try:  # the first call compiles; a backend that cannot compile falls back
                    loss, parts = run(x, target, weights, label, noise)
                    compiled_ok = True
                except Exception as e:  # noqa: BLE001
                    warnings.warn(f"torch.compile failed ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0] if str(e) else ''}); training "
                                  "eagerly", stacklevel=2)
                    run = objective
                    torch.manual_seed(_step_seed(cfg.seed, d.rank, step))
                    loss, parts = run(x, target, weights, label, noise)
            else:
                loss, parts = run(x, target, weights, label, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip_grad > 0:
            gn = torch.nn.utils.clip_grad_norm_(trainable, cfg.clip_grad)
        else:
            gn = torch.zeros((), device=device)
        opt.step()
        step += 1
        acc += torch.cat([parts.float(), loss.detach().float()[None], gn.float()[None]])
        n_acc += 1
        frames_acc += B * d.world
        local = step - first
        if local == length and d.on:
            # DDP broadcasts rank 0's buffers before each forward; the last forward left each
            # rank with its own BatchNorm statistics: make them rank 0's everywhere.
            for b in model.buffers():
                torch.distributed.broadcast(b, 0)
        if local % log_every == 0 or local == length or step % cfg.checkpoint_every == 0:
            vals = acc / n_acc
            if d.on:
                torch.distributed.all_reduce(vals)
                vals /= d.world
            vals = vals.tolist()
            if not math.isfinite(vals[-2]):
                raise TrainingError(f"the loss is {vals[-2]} at step {step} (stage {stage}): "
                                    "lower the learning rate or check the data")
            dt = time.perf_counter() - t_win
            fps = frames_acc / max(dt, 1e-9)
            losses = dict(zip(names, vals[:-2]))
            losses = {"loss": vals[-2], **losses} if stage == 1 else losses
            log.write({"step": step, "stage": stage, **losses, "grad_norm": vals[-1],
                       "lr": opt.param_groups[0]["lr"], "frames_per_s": fps,
                       "time": time.time()})
            bar.update(step, stage, losses, fps)
            acc.zero_()
            n_acc, frames_acc, t_win = 0, 0, time.perf_counter()
        if callback is not None:
            callback({"step": step, "stage": stage, "total_steps": total,
                      "loss": float(loss.detach()), "model": model})
        if step % cfg.checkpoint_every == 0 or local == length:
            _save_checkpoint(out / CHECKPOINT_NAME, model, opt, step, stage, cfg, model_cfg, d,
                             stage_steps)
    return step


def _save_checkpoint(path: Path, model: AEDMAE, opt: torch.optim.Optimizer, step: int,
                     stage: int, cfg: TrainConfig, model_cfg: AEDConfig, d: _Dist,
                     stage_steps: list[int]) -> None:
    if d.rank == 0:
        state = {
            "format": _FORMAT,
            "config": model_cfg.to_dict(),
            "train": cfg.to_dict(),
            "step": step,
            "stage": stage,
            "world_size": d.world,
            "stage_steps": list(stage_steps),
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": opt.state_dict(),
        }
        atomic_torch_save(state, path)
    d.barrier()


# ----------------------------------------------------------------------------- CLI glue


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of `aedfast train` (the caller adds --quiet and --json)."""
    p.add_argument("data_root", metavar="DATA_ROOT", help="data set root folder")
    p.add_argument("--dataset", default="auto",
                   help="layout: avenue, shanghaitech, ped2, official, folder, auto (default)")
    p.add_argument("--preset", default="tiny", help="model preset: tiny (default), avenue, "
                   "shanghaitech")
    p.add_argument("--out", "-o", default="aedfast_run", help="output folder")
    p.add_argument("--name", help="final checkpoint name (OUT/NAME.safetensors; default "
                   "aed_<preset>)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--epochs", type=float, help="epochs in all (student_fraction go to stage 2)")
    g.add_argument("--steps", type=int, help="steps in all (student_fraction go to stage 2)")
    p.add_argument("--teacher-epochs", type=float, help="stage 1 length in epochs")
    p.add_argument("--student-epochs", type=float, help="stage 2 length in epochs")
    p.add_argument("--teacher-steps", type=int, help="stage 1 length in steps")
    p.add_argument("--student-steps", type=int, help="stage 2 length in steps")
    p.add_argument("--student-fraction", type=float, default=0.5,
                   help="share of --epochs/--steps for the student stage (default 0.5)")
    p.add_argument("--batch-size", type=int, help="samples per step and process")
    p.add_argument("--lr", type=float, help="learning rate (AdamW)")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--lr-schedule", choices=["constant", "cosine"])
    p.add_argument("--clip-grad", type=float, default=1.0, help="max gradient norm (0: off)")
    p.add_argument("--cls-weight", type=float, default=1.0, help="weight of the cls-head BCE")
    p.add_argument("--anomalies", default="procedural",
                   help="synthetic anomaly source: procedural (default), shapes, cutouts, none, "
                   "or a folder of object sequences (UBnormal or frames/+masks/ per object)")
    p.add_argument("--anomaly-prob", type=float, default=0.25)
    p.add_argument("--no-median", action="store_true",
                   help="motion gradients without the 3x3 median filter")
    p.add_argument("--streams", type=int, default=8, help="data streams per process")
    p.add_argument("--workers", type=int, help="data loading workers per process")
    p.add_argument("--pool-memory", type=float, default=2.0,
                   help="GiB of decoded frames held per process")
    p.add_argument("--allow-mixed-sizes", action="store_true",
                   help="accept training videos of different resolutions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when available)")
    p.add_argument("--no-amp", action="store_true", help="no bf16 autocast on the GPU")
    cg = p.add_mutually_exclusive_group()
    cg.add_argument("--compile", dest="compile", action="store_true", default=None,
                    help="torch.compile the training step (default on CUDA)")
    cg.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    p.add_argument("--log-every", type=int, help="steps between log lines")
    p.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pt")


def run_from_args(args: argparse.Namespace) -> Path:
    """Run `train` from parsed `aedfast train` arguments; returns the final checkpoint path."""
    overrides = dict(
        preset=args.preset, name=args.name, epochs=args.epochs, steps=args.steps,
        teacher_epochs=args.teacher_epochs, student_epochs=args.student_epochs,
        teacher_steps=args.teacher_steps, student_steps=args.student_steps,
        student_fraction=args.student_fraction, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, warmup_steps=args.warmup_steps,
        lr_schedule=args.lr_schedule, clip_grad=args.clip_grad, cls_weight=args.cls_weight,
        anomalies=args.anomalies, anomaly_prob=args.anomaly_prob, median=not args.no_median,
        streams=args.streams, workers=args.workers, pool_memory=args.pool_memory,
        allow_mixed_sizes=args.allow_mixed_sizes, seed=args.seed, device=args.device,
        amp=False if args.no_amp else None, compile=args.compile, log_every=args.log_every,
    )
    if args.checkpoint_every is not None:
        overrides["checkpoint_every"] = args.checkpoint_every
    return train(args.data_root, dataset=args.dataset, out=args.out, resume=args.resume,
                 progress=not getattr(args, "quiet", False), **overrides)
