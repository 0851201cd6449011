"""Two-stage training of the AED-MAE (docs/design.md §1 to §4): `train`, its settings, its CLI.

Stage 1 trains the encoder, the teacher decoder and the cls head; stage 2 only the student
branch. The modules, one job each:

- `config`: `TrainConfig`, the presets' defaults (`PRESET_DEFAULTS`), `resolve_config`;
- `videos`, `plan`, `data`: the training videos, the per-epoch data plan, the streaming loader;
- `objective`: the device-side batch (`prepare_batch`), the loss, what each stage trains;
- `loop`: `train` and the stage loop; `state`: the resumable ``checkpoint.pt``;
- `progress`: progress bar and ``train_log.jsonl``; `dist`: torchrun/DDP and the device;
- `cli`: the `aedfast train` arguments; `errors`: `TrainingError`, `TrainingDataError`.
"""

from __future__ import annotations

from .cli import add_train_arguments, run_from_args
from .config import PRESET_DEFAULTS, TrainConfig, resolve_config
from .errors import TrainingDataError, TrainingError
from .loop import train
from .objective import prepare_batch
from .progress import LOG_NAME
from .state import CHECKPOINT_NAME

__all__ = [
    "CHECKPOINT_NAME", "LOG_NAME", "PRESET_DEFAULTS", "TrainConfig", "TrainingDataError",
    "TrainingError", "add_train_arguments", "prepare_batch", "resolve_config", "run_from_args",
    "train",
]
