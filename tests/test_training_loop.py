"""The training loop (aedfast.training.loop): losses fall, each stage trains only its
parameters, runs are reproducible and independent of the loader workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aedfast.model import AEDMAE, get_preset, read_checkpoint
from aedfast.training import train

from .training_support import BASE, SMALL, final_weights, make_videos, read_log


@pytest.fixture(scope="module")
def videos():
    return make_videos()


def test_loss_decreases(videos, tmp_path):
    out = tmp_path / "run"
    path = train(videos, out=out, teacher_steps=40, student_steps=20, progress=False, **BASE)
    log = read_log(out)
    rec = [r["rec"] for r in log if r["stage"] == 1]
    cls = [r["cls"] for r in log if r["stage"] == 1]
    stu = [r["student"] for r in log if r["stage"] == 2]
    assert len(rec) == 40 and len(stu) == 20
    assert np.mean(rec[-5:]) < 0.6 * np.mean(rec[:5]), rec
    assert np.mean(stu[-5:]) < 0.8 * np.mean(stu[:5]), stu
    assert all(np.isfinite(cls))
    model = AEDMAE.load(path)
    assert model.config.img_size == (32, 64) and model.config.embed_dim == 32
    _, _, extra = read_checkpoint(path)
    assert extra["steps"] == 60 and extra["train"]["batch_size"] == 8


def test_stage2_changes_only_student(videos, tmp_path):
    snap = {}

    def cb(info):
        if info["step"] == 3:  # end of stage 1
            snap.update({k: v.clone() for k, v in info["model"].state_dict().items()})

    path = train(videos, out=tmp_path / "r", teacher_steps=3, student_steps=4, progress=False,
                   callback=cb, **BASE)
    final = final_weights(path)
    assert snap and set(snap) == set(final)
    student = [k for k in final if k.startswith("decoder_student_")]
    assert student
    for k, v in final.items():
        if k.startswith("decoder_student_"):
            continue
        # parameters and buffers (BatchNorm running statistics too) stay bit-identical
        assert torch.equal(v, snap[k]), f"stage 2 changed {k}"
    changed = [k for k in student if not torch.equal(final[k], snap[k])]
    params = {n for n, _ in AEDMAE(get_preset("tiny", **SMALL)).named_parameters()}
    assert set(changed) >= {k for k in student if k in params}, "student parameters must train"


def test_stage1_leaves_student_alone(videos, tmp_path):
    torch.manual_seed(BASE.get("seed", 0))
    init = AEDMAE(get_preset("tiny", **SMALL)).state_dict()
    path = train(videos, out=tmp_path / "r", teacher_steps=3, student_steps=0, progress=False,
                   **BASE)
    final = final_weights(path)
    for k, v in final.items():
        if k.startswith("decoder_student_"):
            assert torch.equal(v, init[k]), k
    assert not torch.equal(final["blocks.0.attn.proj.weight"], init["blocks.0.attn.proj.weight"])


def test_reproducible_and_independent_of_workers(videos, tmp_path):
    kw = dict(BASE, teacher_steps=3, student_steps=2)
    a = final_weights(train(videos, out=tmp_path / "a", progress=False, **kw))
    kw["workers"] = 2
    b = final_weights(train(videos, out=tmp_path / "b", progress=False, **kw))
    assert all(torch.equal(a[k], b[k]) for k in a)
    kw["seed"] = 1
    c = final_weights(train(videos, out=tmp_path / "c", progress=False, **kw))
    assert not all(torch.equal(a[k], c[k]) for k in a)
