"""Distributed training (torchrun) and the device each process trains on.

Launched by torchrun (env RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR), DDP over NCCL on GPUs
or gloo on CPUs, one or several machines; `batch_size` is per process. Example:
``torchrun --nproc-per-node 8 -m aedfast train DATA --dataset avenue --preset avenue --out run``.
Without torchrun (WORLD_SIZE unset or 1) every call here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn as nn

__all__ = ["Dist", "init_dist", "resolve_device"]


@dataclass
class Dist:
    """This process's place in the run: rank, world size, local rank, and whether `train`
    started the process group (and so ends it)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False

    @property
    def on(self) -> bool:
        """Whether more than one process trains."""
        return self.world > 1

    def barrier(self) -> None:
        """Wait for every process (distributed only)."""
        if self.on:
            torch.distributed.barrier()

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        """`module` in DDP when distributed, else itself."""
        if not self.on:
            return module
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(module, device_ids=[device.index] if device.type == "cuda" else None)

    def average_(self, t: torch.Tensor) -> torch.Tensor:
        """`t` (float, any shape) replaced in place by its mean over the processes."""
        if self.on:
            torch.distributed.all_reduce(t)
            t /= self.world
        return t

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Give every process rank 0's buffers (BatchNorm statistics) of `module`."""
        if self.on:
            for b in module.buffers():
                torch.distributed.broadcast(b, 0)

    def close(self) -> None:
        """End the process group if `init_dist` started it."""
        if self.owned:
            torch.distributed.destroy_process_group()


def init_dist(device: torch.device | None) -> Dist:
    """This process's `Dist` from the torchrun environment; starts the process group (NCCL
    when training on CUDA, else gloo) unless one is running already."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    owned = False
    if not dist.is_initialized():
        cuda = torch.cuda.is_available() and (device is None or device.type == "cuda")
        dist.init_process_group("nccl" if cuda else "gloo")
        owned = True
    return Dist(dist.get_rank(), dist.get_world_size(),
                int(os.environ.get("LOCAL_RANK", "0")), owned)


def resolve_device(spec: str | None, d: Dist) -> torch.device:
    """The device of `spec` ("cuda" means this process's local GPU); by default the local GPU
    when CUDA is available, else the CPU."""
    if spec:
        dev = torch.device(spec)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", d.local_rank)
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda", d.local_rank)
    return torch.device("cpu")
