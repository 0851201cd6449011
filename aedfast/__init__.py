"""aedfast: fast self-distilled masked auto-encoder video anomaly detection."""

__version__ = "0.1.0"

from .model import (  # noqa: E402
    AEDMAE,
    PRESETS,
    AEDConfig,
    AEDOutput,
    CheckpointError,
    official_frame_scores,
    patchify,
    unpatchify,
)

__all__ = [
    "AEDMAE", "PRESETS", "AEDConfig", "AEDOutput", "CheckpointError", "official_frame_scores",
    "patchify", "unpatchify", "__version__",
]
