"""Training settings: `TrainConfig`, the presets' defaults and `resolve_config`.

`resolve_config` is the one place where defaults are filled in and settings are checked;
everything downstream reads a resolved `TrainConfig` (no field left None that has a default).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..anomalies import check_size_range
from ..model import AEDConfig, get_preset

__all__ = ["PRESET_DEFAULTS", "TrainConfig", "model_config", "resolve_config"]


@dataclass
class TrainConfig:
    """Everything that defines a training run. `PRESET_DEFAULTS` fills the fields left None.

    Stage lengths: `teacher_steps` / `student_steps`, else `teacher_epochs` /
    `student_epochs`, else `steps` or `epochs` for the whole run, split with
    `student_fraction` going to stage 2 (docs/design.md §4: 200 epochs, student from epoch
    100).
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
    anomaly_size: tuple[float, float] = (0.15, 0.5)  # pasted object height / frame height
    motion_strength: float = 1.0  # token weights (1 - s) / L + s * motion weights; 1: paper
    photometric: float = 0.0  # gain jitter sigma of training samples (data.jitter_gains); 0: off
    median: bool = True  # 3x3 median before differencing (docs/design.md §3)
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
        """The fields as plain JSON-able values (betas as a list)."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        d["anomaly_size"] = list(self.anomaly_size)
        return d


# docs/design.md §4 for the official presets (200 epochs, the student from epoch 100). tiny:
# about 5 minutes on 2 CPU cores for 2,000 frames of 64 x 128 (measured: 276 s, ~100 frames/s
# in stage 1, ~270 in stage 2; the synthetic benchmark then scores micro AUC 0.82).
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
    if not 0.0 <= cfg.motion_strength <= 1.0:
        raise ValueError(f"motion_strength must be in [0, 1], got {cfg.motion_strength}")
    if not 0.0 <= cfg.photometric <= 0.5:
        raise ValueError(f"photometric must be in [0, 0.5], got {cfg.photometric}")
    cfg.betas = tuple(float(b) for b in cfg.betas)
    cfg.anomaly_size = check_size_range(cfg.anomaly_size)
    return cfg


def model_config(cfg: TrainConfig) -> AEDConfig:
    """The model a run trains: its preset with `model_overrides` applied."""
    return get_preset(cfg.preset, **dict(cfg.model_overrides))
