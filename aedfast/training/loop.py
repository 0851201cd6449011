"""The training run: `train` sets it up, `train_stage` runs a stage step by step.

Everything random is a pure function of (seed, stage, epoch, stream, position) or (seed, rank,
step): model init, data order, anomalies, masking noise and dropout. So a run is reproducible
and `resume=True` continues a killed run exactly from its last checkpoint (`state`).

Outputs in `out`: ``<name>.safetensors`` (final weights + config, `AEDMAE.load`),
``checkpoint.pt`` (resume state) and ``train_log.jsonl`` (`progress`).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..model import AEDMAE, AEDConfig
from .config import TrainConfig, model_config, resolve_config
from .data import TrainingData, default_workers, make_paster, stage_batches
from .dist import Dist, init_dist, resolve_device
from .errors import TrainingError
from .objective import Objective, make_optimizer, prepare_batch, set_stage
from .plan import make_plan, mix, stage_lengths
from .progress import LOG_NAME, LossWindow, Progress, TrainLog
from .state import (
    CHECKPOINT_NAME,
    open_resume_state,
    resume_step,
    save_checkpoint,
    stage_optimizer_state,
)
from .videos import open_videos, probe_videos

__all__ = ["RunContext", "StageForward", "lr_at", "step_seed", "train", "train_stage"]


@dataclass
class RunContext:
    """What every step of a run reads: settings, data, device, processes and outputs."""

    cfg: TrainConfig
    model_cfg: AEDConfig
    data: TrainingData
    device: torch.device
    amp: bool  # bf16 autocast
    use_compile: bool
    workers: int  # DataLoader workers
    dist: Dist
    log: TrainLog
    bar: Progress
    out: Path
    stage_steps: tuple[int, int]
    callback: Callable[[dict], None] | None = None

    @property
    def total(self) -> int:
        """Steps of the whole run."""
        return sum(self.stage_steps)

    @property
    def log_every(self) -> int:
        """Steps between log records."""
        return self.cfg.log_every or 10

    def stage_span(self, stage: int) -> tuple[int, int]:
        """(global step at which `stage` starts, its length in steps)."""
        return (0, self.stage_steps[0]) if stage == 1 else self.stage_steps


def train(data, *, dataset: str = "auto", out: str | os.PathLike = "aedfast_run",
          config: TrainConfig | None = None, resume: bool = False, progress: bool = True,
          callback: Callable[[dict], None] | None = None, **overrides) -> Path:
    """Train an AED-MAE on normal videos; returns the path of ``out/<name>.safetensors``.

    data: a data set root (opened with `aedfast.data.open_dataset(data, dataset)`), an opened
        data set (its `.train` is used) or a list of videos (`len(v)`, `v[i]` -> uint8
        [H, W, 3] BGR, `v.frames(start, stop)`).
    config / overrides: a `TrainConfig` and field overrides (preset="tiny", epochs=..., ...);
        fields left None take the preset's defaults (`PRESET_DEFAULTS`; docs/design.md §4).
    resume: continue from ``out/checkpoint.pt`` (exactly, given the same settings); without it
        an existing checkpoint in `out` is an error (nothing is overwritten by accident).
    callback: called after every step with a dict (step, stage, total_steps, losses, model).
    Under torchrun every process calls this; rank 0 writes the files.
    """
    cfg = resolve_config(config, **overrides)
    out = Path(out)
    model_cfg = model_config(cfg)
    device_hint = torch.device(cfg.device) if cfg.device else None
    dist_info = init_dist(device_hint)
    try:
        return _run(data, dataset, out, cfg, model_cfg, resume, progress, callback, dist_info)
    finally:
        dist_info.close()


def _run(data, dataset: str, out: Path, cfg: TrainConfig, model_cfg: AEDConfig, resume: bool,
         progress: bool, callback, d: Dist) -> Path:
    device = resolve_device(cfg.device, d)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    amp = (device.type == "cuda") if cfg.amp is None else bool(cfg.amp)
    use_compile = (device.type == "cuda") if cfg.compile is None else bool(cfg.compile)
    lead = d.rank == 0
    show = progress and lead
    ck = open_resume_state(out, resume, model_cfg, cfg, d.world)

    videos = open_videos(data, dataset)
    lengths, src_sizes = probe_videos(videos, cfg.allow_mixed_sizes)
    plan = make_plan(lengths, cfg, model_cfg, d.world)
    s1, s2 = stage_lengths(cfg, plan)
    total = s1 + s2
    if total < 1:
        raise TrainingError("the schedule has no steps: give epochs/steps > 0")
    paster, use_cutouts = make_paster(cfg)

    torch.manual_seed(cfg.seed)
    model = AEDMAE(model_cfg).to(device)
    step = 0
    if ck is not None:
        model.load_state_dict(ck["model"])
        step = resume_step(ck, out / CHECKPOINT_NAME, (s1, s2))
    workers = default_workers(plan.streams, d.world) if cfg.workers is None else int(cfg.workers)
    log_every = cfg.log_every or 10
    ctx = RunContext(
        cfg=cfg, model_cfg=model_cfg, device=device, amp=amp, use_compile=use_compile,
        data=TrainingData(videos, lengths, src_sizes, plan, tuple(model_cfg.img_size),
                          cfg.seed, paster, use_cutouts, cfg.photometric),
        workers=workers, dist=d, log=TrainLog(out / LOG_NAME, lead, step if ck is not None else 0),
        bar=Progress(show, total, step, log_every), out=out, stage_steps=(s1, s2),
        callback=callback)
    if show:
        ctx.bar.message(f"training {model_cfg.name} ({sum(p.numel() for p in model.parameters()):,}"
                        f" parameters) on {len(videos)} videos / {sum(lengths)} frames, device "
                        f"{device}{' bf16' if amp else ''}{' compiled' if use_compile else ''}, "
                        f"{d.world} process(es), batch {cfg.batch_size}, {workers} workers; "
                        f"stage 1 {s1} steps, stage 2 {s2} steps"
                        + (f"; resuming at step {step}" if ck is not None else ""))
    try:
        for stage in (1, 2):
            first, length = ctx.stage_span(stage)
            if step >= first + length or length == 0:
                continue
            step = train_stage(ctx, model, stage, step,
                               stage_optimizer_state(ck, stage, step, first))
    finally:
        ctx.bar.close()
    final = out / f"{cfg.name or 'aed_' + model_cfg.name}.safetensors"
    if lead:
        model.eval()
        model.save(final, extra={"train": cfg.to_dict(), "steps": total, "stage_steps": [s1, s2],
                                 "frames": sum(lengths), "videos": len(videos),
                                 "world_size": d.world})
        ctx.bar.message(f"wrote {final}")
    d.barrier()
    return final


def train_stage(ctx: RunContext, model: AEDMAE, stage: int, step: int,
                opt_state: dict | None) -> int:
    """Train `stage` (1: teacher, 2: student) from global step `step` to the stage's end;
    returns the step reached. `opt_state`: the optimizer state to continue from (resume)."""
    cfg, d, device = ctx.cfg, ctx.dist, ctx.device
    first, length = ctx.stage_span(stage)
    params = set_stage(model, stage)
    opt = make_optimizer(params, cfg)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    forward = StageForward(model, stage, ctx)
    trainable = [p for _, p in params]
    window = LossWindow(["rec", "cls"] if stage == 1 else ["student"], device)
    B, L = cfg.batch_size, ctx.model_cfg.num_tokens
    for batch in stage_batches(ctx.data, stage, step - first, length, d.rank, ctx.workers,
                               pin_memory=device.type == "cuda"):
        x, target, weights, label = prepare_batch(batch, ctx.model_cfg, device, cfg.median,
                                                  targets=stage == 1,
                                                  motion_strength=cfg.motion_strength)
        seed = step_seed(cfg.seed, d.rank, step)
        torch.manual_seed(seed)
        noise = torch.rand(B, L, device=device)
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, step - first, length)
        loss, parts = forward(x, target, weights, label, noise, seed)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = _clip_gradients(trainable, cfg.clip_grad, device)
        opt.step()
        step += 1
        window.add(parts, loss, grad_norm, B * d.world)
        local = step - first
        if local == length:
            # DDP broadcasts rank 0's buffers before each forward; the last forward left each
            # rank with its own BatchNorm statistics: make them rank 0's everywhere.
            d.broadcast_buffers(model)
        if local % ctx.log_every == 0 or local == length or step % cfg.checkpoint_every == 0:
            _log_window(ctx, window, step, stage, opt.param_groups[0]["lr"])
        if ctx.callback is not None:
            ctx.callback({"step": step, "stage": stage, "total_steps": ctx.total,
                          "loss": float(loss.detach()), "model": model})
        if step % cfg.checkpoint_every == 0 or local == length:
            save_checkpoint(ctx.out / CHECKPOINT_NAME, model, opt, step=step, stage=stage,
                            cfg=cfg, model_cfg=ctx.model_cfg, dist=d,
                            stage_steps=ctx.stage_steps)
    return step


class StageForward:
    """The stage's `Objective` as each step calls it: in DDP under torchrun, compiled when
    asked (a backend that cannot compile falls back to eager on the first call, with a
    warning), under bf16 autocast when `amp`. Returns (loss, parts) as `Objective` does."""

    def __init__(self, model: AEDMAE, stage: int, ctx: RunContext):
        self.objective = ctx.dist.wrap(Objective(model, stage, ctx.cfg.cls_weight), ctx.device)
        self.fn = torch.compile(self.objective) if ctx.use_compile else self.objective
        self.compiled_ok = False
        self.autocast = torch.autocast(device_type=ctx.device.type, dtype=torch.bfloat16,
                                       enabled=ctx.amp)

    def __call__(self, x: torch.Tensor, target: torch.Tensor | None,
                 weights: torch.Tensor | None, label: torch.Tensor, noise: torch.Tensor,
                 seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward; `seed` (the step's) re-seeds the eager retry after a failed compile."""
        with self.autocast:
            if self.fn is not self.objective and not self.compiled_ok:
                try:  # the first call compiles; a backend that cannot compile falls back
                    loss, parts = self.fn(x, target, weights, label, noise)
                    self.compiled_ok = True
                except Exception as e:  # noqa: BLE001
                    warnings.warn(f"torch.compile failed ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0] if str(e) else ''}); training "
                                  "eagerly", stacklevel=3)
                    self.fn = self.objective
                    torch.manual_seed(seed)
                    loss, parts = self.fn(x, target, weights, label, noise)
            else:
                loss, parts = self.fn(x, target, weights, label, noise)
        return loss, parts


def lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    """Learning rate at stage-local step `step` of `total`: linear warm-up over
    `warmup_steps`, then constant or cosine down to 1% of `lr`."""
    warm = cfg.warmup_steps or 0
    if warm and step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.lr_schedule == "cosine" and total > warm:
        frac = (step - warm) / max(1, total - warm)
        return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))
    return cfg.lr


def step_seed(seed: int, rank: int, step: int) -> int:
    """The torch seed of global `step` on `rank` (masking noise and dropout)."""
    return int(np.random.SeedSequence(mix(seed, rank, step, 0x5EED)).generate_state(1)[0])


def _clip_gradients(params: list[nn.Parameter], max_norm: float, device: torch.device
                    ) -> torch.Tensor:
    """Clip to `max_norm` (0: off); returns the norm before clipping (float scalar, 0 when
    off)."""
    if max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    return torch.zeros((), device=device)


def _log_window(ctx: RunContext, window: LossWindow, step: int, stage: int, lr: float) -> None:
    """Log the means of the window ending at `step` (a JSONL record, the bar) and start a new
    one; a non-finite loss stops the run."""
    vals, fps = window.means(ctx.dist)
    if not math.isfinite(vals[-2]):
        raise TrainingError(f"the loss is {vals[-2]} at step {step} (stage {stage}): "
                            "lower the learning rate or check the data")
    losses = dict(zip(window.names, vals[:-2]))
    losses = {"loss": vals[-2], **losses} if stage == 1 else losses
    ctx.log.write({"step": step, "stage": stage, **losses, "grad_norm": vals[-1], "lr": lr,
                   "frames_per_s": fps, "time": time.time()})
    ctx.bar.update(step, stage, losses, fps)
    window.reset()
