"""aedfast: fast self-distilled masked auto-encoder video anomaly detection.

The model and its checkpoint errors load with the package; everything else (the detector,
streams, scoring, training, the data readers) loads on first use. `aedfast.evaluate` is a
function that shares its name with its module, so it is imported here, eagerly: importing
the submodule later cannot then replace the function with the module.
"""

from .evaluate import evaluate
from .model import (
    AEDMAE,
    PRESETS,
    AEDConfig,
    AEDOutput,
    CheckpointError,
    patchify,
    unpatchify,
)

__version__ = "0.1.0"

_LAZY = {
    "Detector": ("detector", "Detector"),
    "VideoResult": ("detector", "VideoResult"),
    "DetectorStream": ("stream", "DetectorStream"),
    "Smoothing": ("scoring", "Smoothing"),
    "official_frame_scores": ("scoring", "official_frame_scores"),
    "train": ("training", "train"),
    "TrainConfig": ("training", "TrainConfig"),
    "open_dataset": ("data", "open_dataset"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'aedfast' has no attribute {name!r}")


__all__ = [
    "AEDMAE", "PRESETS", "AEDConfig", "AEDOutput", "CheckpointError", "patchify", "unpatchify",
    "__version__", "evaluate", *_LAZY,
]
