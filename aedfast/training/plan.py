"""The data plan: which frames each stream reads in each epoch, and the stages' step counts.

An epoch is a random permutation of the training videos, concatenated and cut into
`streams x world_size` contiguous stretches ("streams"; cuts snap to a video boundary when one
lies within 10% of the ideal cut, else they split a video and the <= 6 frames around the cut
are read by both streams). Rank r owns streams r*S .. r*S+S-1. The plan is a pure function of
(video lengths, streams, world size, batch size, seed), the same in every rank and worker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..model import AEDConfig
from .config import TrainConfig
from .errors import TrainingDataError

__all__ = ["EpochPlan", "Plan", "make_plan", "mix", "stage_lengths"]


def mix(*parts: int) -> list[int]:
    """Seed words for `np.random.default_rng` / `SeedSequence`: each part as uint32."""
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
class EpochPlan:
    """One epoch of one stage: each global stream's stretch as (video, start, stop) segments of
    centre frames, and the number of steps (min over streams of samples // micro-batch)."""

    lanes: list[list[tuple[int, int, int]]]
    steps: int


class Plan:
    """Deterministic data plan shared by every rank and worker (pure function of its inputs).

    `mb[l]`: the micro-batch of stream l (batch split over the streams, the first ones taking
    one more); `pool[l]`: its pool size in centre frames, a multiple of `mb[l]`.
    """

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
        self._cache: dict[tuple[int, int], EpochPlan] = {}
        self._counts: dict[int, list[int]] = {}

    def epoch(self, stage: int, epoch: int) -> EpochPlan:
        """The plan of `epoch` (0-based) of `stage` (1 or 2); the last 8 are cached."""
        key = (stage, epoch)
        if key not in self._cache:
            n_lanes = self.streams * self.world
            rng = np.random.default_rng(mix(self.seed, stage, epoch, 0xE90C))
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
            self._cache[key] = EpochPlan(lanes, int(steps))
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
        """Steps of `epochs` (fractional: the last epoch's steps, rounded) of `stage`."""
        whole = int(math.floor(epochs))
        total = self.epoch_start(stage, whole)
        return total + int(round((epochs - whole) * self.epoch(stage, whole).steps))


def make_plan(lengths: list[int], cfg: TrainConfig, model_cfg: AEDConfig, world: int) -> Plan:
    """The run's plan: pools sized so that two per stream of uint8 [H, W, 3] frames at the
    model's size fit in `cfg.pool_memory` GiB. Raises `TrainingDataError` when the frames
    cannot fill one batch."""
    H, W = model_cfg.img_size
    streams = min(cfg.streams, cfg.batch_size)
    pool_frames = int(cfg.pool_memory * 2**30 / (2 * streams * H * W * 3))
    plan = Plan(lengths, streams, world, cfg.batch_size, cfg.seed, max(1, pool_frames))
    plan.locate(1, 0)  # raises a clear error when one batch cannot be filled
    return plan


def stage_lengths(cfg: TrainConfig, plan: Plan) -> tuple[int, int]:
    """(stage 1 steps, stage 2 steps) of a resolved config (see `TrainConfig`)."""
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
