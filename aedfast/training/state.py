"""The resumable training state, ``checkpoint.pt``: written, read back and checked.

The state (weights, optimizer state, step, stage, settings) is written atomically every
`checkpoint_every` steps and at the end of each stage through `aedfast.checkpoint`, and read
with ``torch.load(weights_only=True)``. Since everything random is a pure function of the seed
and the step, `resume=True` then continues a killed run exactly from its last checkpoint.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, atomic_torch_save, torch_load
from ..model import AEDMAE, AEDConfig
from .config import TrainConfig
from .dist import Dist
from .errors import TrainingError

__all__ = ["CHECKPOINT_NAME", "open_resume_state", "resume_step", "save_checkpoint",
           "stage_optimizer_state"]

CHECKPOINT_NAME = "checkpoint.pt"
_FORMAT = "aedfast-train-1"
# settings whose change makes a resumed run differ from an uninterrupted one
_WATCHED = ("seed", "batch_size", "streams", "anomalies", "anomaly_prob", "anomaly_size",
            "motion_strength", "photometric", "lr", "cls_weight", "median", "clip_grad",
            "weight_decay", "lr_schedule", "warmup_steps")


def open_resume_state(out: Path, resume: bool, model_cfg: AEDConfig, cfg: TrainConfig,
                      world: int) -> dict | None:
    """The state to resume from ``out/checkpoint.pt``, or None to start afresh.

    Without `resume` an existing checkpoint is a `TrainingError` (nothing is overwritten by
    accident). A file that is not a training checkpoint, or one of another model, is a
    `CheckpointError`; other changed settings (and world size) only warn.
    """
    path = out / CHECKPOINT_NAME
    if path.exists() and not resume:
        raise TrainingError(f"{out} already holds a training checkpoint ({path.name}): pass "
                            "resume=True (--resume) to continue it, or choose another output "
                            "folder")
    if not (resume and path.exists()):
        return None
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
    changed = [k for k in _WATCHED if k in old and old[k] != cfg.to_dict()[k]]
    if ck.get("world_size", 1) != world:
        changed.append(f"world_size ({ck.get('world_size')} -> {world})")
    if changed:
        warnings.warn(f"resuming {path} with different settings ({', '.join(changed)}): the run "
                      "continues but will not equal an uninterrupted one", stacklevel=3)
    return ck


def resume_step(ck: dict, path: Path, stage_steps: tuple[int, int]) -> int:
    """The global step a loaded state resumes at, checked against this schedule's
    (stage 1, stage 2) steps: past the end, or with stage 1 of another length once it matters,
    is a `TrainingError`."""
    s1, total = stage_steps[0], sum(stage_steps)
    step = int(ck["step"])
    if step > total:
        raise TrainingError(f"{path} is at step {step}, past this schedule's {total} steps")
    ck_s1 = int(ck.get("stage_steps", [s1])[0])
    if (ck["stage"] == 2 and ck_s1 != s1) or (ck["stage"] == 1 and step > s1):
        raise TrainingError(
            f"{path} is at step {step} in stage {ck['stage']} of a run whose stage 1 "
            f"had {ck_s1} steps, but this schedule's stage 1 has {s1}: keep the stage-1 "
            "length of the interrupted run (give --teacher-steps/--teacher-epochs "
            "explicitly when extending it)")
    return step


def stage_optimizer_state(ck: dict | None, stage: int, step: int, first: int) -> dict | None:
    """The optimizer state to continue `stage` (starting at global step `first`) with at
    `step`: the saved one when it was saved inside that stage, else None (a fresh optimizer)."""
    if ck is not None and ck["stage"] == stage and step > first:
        return ck["optimizer"]
    return None


def save_checkpoint(path: Path, model: AEDMAE, opt: torch.optim.Optimizer, *, step: int,
                    stage: int, cfg: TrainConfig, model_cfg: AEDConfig, dist: Dist,
                    stage_steps: tuple[int, int]) -> None:
    """Write the state at global `step` (rank 0, atomically; weights as CPU tensors), then wait
    for every process."""
    if dist.rank == 0:
        state = {
            "format": _FORMAT,
            "config": model_cfg.to_dict(),
            "train": cfg.to_dict(),
            "step": step,
            "stage": stage,
            "world_size": dist.world,
            "stage_steps": list(stage_steps),
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": opt.state_dict(),
        }
        atomic_torch_save(state, path)
    dist.barrier()
