"""Distributed training (aedfast.training.dist): two gloo ranks end with identical weights."""

from __future__ import annotations

import os
import socket
import sys

import pytest
import torch

from aedfast.training import CHECKPOINT_NAME, train

from .training_support import BASE, final_weights, make_videos


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str, result: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    final = {}

    def cb(info):
        final.update({k: v.detach().clone() for k, v in info["model"].state_dict().items()})

    train(make_videos(), out=out, teacher_steps=2, student_steps=1, progress=False,
            callback=cb, **dict(BASE, streams=2, batch_size=4))
    torch.save(final, f"{result}.{rank}")


def test_ddp_two_ranks_identical_weights(tmp_path):
    import torch.multiprocessing as mp

    if sys.platform == "win32":  # pragma: no cover
        pytest.skip("gloo DDP test runs on Linux/macOS")
    result = str(tmp_path / "w")
    ctx = mp.start_processes(_ddp_worker, args=(2, _free_port(), str(tmp_path / "o"), result),
                             nprocs=2, join=False, start_method="spawn")
    for _ in range(120):
        if ctx.join(timeout=1):
            break
    else:
        for p in ctx.processes:
            p.kill()
        pytest.fail("DDP run timed out")
    a = torch.load(f"{result}.0", weights_only=True)
    b = torch.load(f"{result}.1", weights_only=True)
    assert set(a) == set(b) and a
    for k in a:
        assert torch.equal(a[k], b[k]), f"ranks differ in {k}"
    saved = final_weights(tmp_path / "o" / "aed_tiny.safetensors")
    assert all(torch.equal(saved[k], a[k]) for k in a)
    # the ranks saw different data: one process alone gives other weights
    assert (tmp_path / "o" / CHECKPOINT_NAME).exists()
