"""The rank process of tests/test_shard.py, in a module of its own so that a spawned rank
imports only torch and aedfast.shard (not pytest and the test helpers)."""

from __future__ import annotations

import json
import os

import torch


def run_rank(rank: int, world: int, port: int, ck: str, sources: list, outs: list,
             kwargs: dict, log: str) -> None:
    """Join a gloo group of `world` ranks, run `score_many` into each folder of `outs` in turn
    (the group stays up between runs: score_many joins a running group) and write what this
    rank scored and reused to `log`.<rank> as JSON."""
    from aedfast.shard import score_many

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo")
    record = []
    for out in outs:
        run = score_many(ck, sources, out, detector_kwargs=kwargs)
        record.append({"scored": run.scored, "reused": run.reused, "world": run.world,
                       "has_results": run.results is not None})
    torch.distributed.destroy_process_group()
    with open(f"{log}.{rank}", "w") as f:
        json.dump(record, f)
