"""Resumable training state (aedfast.training.state): a killed run resumes exactly, and a
checkpoint of another model or schedule is refused."""

from __future__ import annotations

import pytest
import torch

from aedfast.model import CheckpointError, read_checkpoint
from aedfast.training import CHECKPOINT_NAME, TrainingError, train

from .training_support import BASE, SMALL, final_weights, make_videos, read_log


@pytest.fixture(scope="module")
def videos():
    return make_videos()


class _Kill(Exception):
    pass


@pytest.mark.parametrize("kill_at", [3, 7])  # in stage 1 / in stage 2 (optimizer state too)
def test_resume_equals_uninterrupted(videos, tmp_path, kill_at):
    kw = dict(BASE, teacher_steps=4, student_steps=4, checkpoint_every=2)
    ref = final_weights(train(videos, out=tmp_path / "ref", progress=False, **kw))

    def die(info):
        if info["step"] == kill_at:
            raise _Kill

    out = tmp_path / "killed"
    with pytest.raises(_Kill):
        train(videos, out=out, progress=False, callback=die, **kw)
    ck = torch.load(out / CHECKPOINT_NAME, weights_only=True)
    assert ck["step"] == kill_at - 1  # the last checkpoint: at most checkpoint_every lost
    assert ck["stage"] == (1 if kill_at <= 4 else 2)
    assert not (out / "aed_tiny.safetensors").exists()
    with pytest.raises(TrainingError, match="resume"):
        train(videos, out=out, progress=False, **kw)
    got = final_weights(train(videos, out=out, progress=False, resume=True, **kw))
    for k in ref:
        assert torch.equal(ref[k], got[k]), f"{k} differs after resume"
    steps = [r["step"] for r in read_log(out)]
    assert steps == list(range(1, 9)), "the log keeps one record per step across the resume"


def test_resume_other_preset_is_an_error(videos, tmp_path):
    out = tmp_path / "r"
    train(videos, out=out, teacher_steps=1, student_steps=0, progress=False, **BASE)
    other = dict(BASE, model_overrides=dict(SMALL, embed_dim=64))
    with pytest.raises(CheckpointError, match="preset|embed_dim"):
        train(videos, out=out, teacher_steps=2, student_steps=0, progress=False, resume=True,
                **other)
    with pytest.raises(CheckpointError, match="preset 'avenue'"):
        train(videos, out=out, teacher_steps=2, student_steps=0, progress=False, resume=True,
                **dict(BASE, preset="avenue", model_overrides={}))


def test_resume_extends_or_refuses_moved_stage_boundary(videos, tmp_path):
    out = tmp_path / "r"
    train(videos, out=out, teacher_steps=2, student_steps=2, progress=False, **BASE)
    with pytest.raises(TrainingError, match="stage-1 length"):
        train(videos, out=out, teacher_steps=3, student_steps=3, progress=False, resume=True,
                **BASE)
    path = train(videos, out=out, teacher_steps=2, student_steps=4, progress=False,
                   resume=True, **BASE)  # a longer student stage continues the run
    assert torch.load(out / CHECKPOINT_NAME, weights_only=True)["step"] == 6
    assert read_checkpoint(path)[2]["steps"] == 6
