"""aedfast: fast self-distilled masked auto-encoder video anomaly detection.

`aedfast.train` and `aedfast.evaluate` are functions that share their names with their
modules, so they are imported here, eagerly: importing the submodule later cannot then
replace the function with the module. The detector, streams, scoring and data readers load
on first use.
"""

__version__ = "0.1.0"

from .evaluate import evaluate  # noqa: E402
from .model import (  # noqa: E402
    AEDMAE,
    PRESETS,
    AEDConfig,
    AEDOutput,
    CheckpointError,
    patchify,
    unpatchify,
)
from .training import TrainConfig, train  # noqa: E402

_LAZY = {
    "Detector": ("detector", "Detector"),
    "VideoResult": ("detector", "VideoResult"),
    "DetectorStream": ("stream", "DetectorStream"),
    "Smoothing": ("scoring", "Smoothing"),
    "official_frame_scores": ("scoring", "official_frame_scores"),
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
    "__version__", "train", "TrainConfig", "evaluate", *_LAZY,
]
