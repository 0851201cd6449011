"""The errors training raises on purpose: their messages say what went wrong and what to do."""

from __future__ import annotations

__all__ = ["TrainingDataError", "TrainingError"]


class TrainingError(RuntimeError):
    """Training cannot go on as asked: the message says why."""


class TrainingDataError(ValueError):
    """The training data cannot be used: the message names the video/frame and the problem."""
