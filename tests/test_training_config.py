"""Training settings (aedfast.training.config) and the stage lengths they give
(aedfast.training.plan)."""

from __future__ import annotations

import pytest

from aedfast.training import resolve_config
from aedfast.training.plan import Plan, stage_lengths

from .training_support import BASE, make_videos


@pytest.fixture(scope="module")
def videos():
    return make_videos()


def test_epochs_schedule(videos):
    cfg = resolve_config(epochs=2, **{k: v for k, v in BASE.items() if k != "log_every"})
    plan = Plan([len(v) for v in videos], cfg.streams, 1, cfg.batch_size, cfg.seed, 1000)
    s1, s2 = stage_lengths(cfg, plan)
    # 4 videos x 40 frames over 2 streams of micro-batch 4: 20 steps an epoch
    assert (s1, s2) == (20, 20)
    cfg = resolve_config(steps=30, student_fraction=0.2, **BASE)
    assert stage_lengths(cfg, plan) == (24, 6)
    tiny = resolve_config(preset="tiny")
    assert tiny.teacher_epochs and tiny.student_epochs and tiny.batch_size
    official = resolve_config(preset="avenue")
    assert (official.lr, official.batch_size, official.teacher_epochs, official.student_epochs,
            official.weight_decay, official.betas) == (1e-4, 100, 100, 100, 0.05, (0.9, 0.95))
    # one stage given: the other keeps its default; a total length replaces both
    one = resolve_config(preset="tiny", teacher_steps=5)
    assert one.teacher_epochs is None and one.student_epochs == tiny.student_epochs
    assert resolve_config(preset="tiny", epochs=3).teacher_epochs is None
