"""Data-parallel training with ``torchrun`` (env:// rendezvous) or ``mp.spawn``.

Launch: ``torchrun --nproc_per_node N -m training.cli --config ...``. Each rank trains on its own
shard of every step's batch (see ``training.trainer.batch_indices``); DDP averages gradients, so
all ranks hold identical weights. Only rank 0 logs and writes checkpoints. The backend is gloo on
CPU and nccl on CUDA. Without ``WORLD_SIZE`` > 1 in the environment everything is single-process.
"""

import datetime
import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the only rank that logs and checkpoints)."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def current() -> DistInfo:
    """The initialised process group's rank/world size, or a single-process ``DistInfo``."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(),
                        int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return DistInfo()


def init_from_env(device: str = "cpu", timeout_s: float = 120.0) -> DistInfo:
    """Join the process group described by torchrun's env vars (no-op if WORLD_SIZE <= 1).

    Args:
        device: ``cpu`` (gloo backend) or ``cuda`` (nccl; each rank uses GPU ``LOCAL_RANK``).
        timeout_s: collective timeout, seconds.

    Raises:
        RuntimeError: ``MASTER_ADDR``/``MASTER_PORT``/``RANK`` missing with WORLD_SIZE > 1.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if dist.is_initialized():
        return current()
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT", "RANK") if k not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE={world} but {', '.join(missing)} not set; launch with "
                           "torchrun --nproc_per_node N")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, init_method="env://",
                            timeout=datetime.timedelta(seconds=timeout_s))
    return current()


def shutdown() -> None:
    """Leave the process group if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap(module: nn.Module, device: str = "cpu",
         find_unused_parameters: bool = False) -> nn.Module:
    """``module`` in DistributedDataParallel when a group is running, else unchanged."""
    info = current()
    if not info.enabled:
        return module
    if not any(p.requires_grad for p in module.parameters()):
        return module
    ids = [info.local_rank] if device.startswith("cuda") else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids,
                                               find_unused_parameters=find_unused_parameters)


def all_true(flag: bool, device: str = "cpu") -> bool:
    """Logical AND of ``flag`` over all ranks (so every rank skips a bad step together)."""
    info = current()
    if not info.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], device=device if device.startswith("cuda") else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def barrier() -> None:
    """Wait for all ranks (no-op single-process)."""
    if current().enabled:
        dist.barrier()


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (in place)."""
    if not current().enabled:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=src)


def world_size_of(info: Optional[DistInfo] = None) -> int:
    """World size of ``info`` or of the current group."""
    return (info or current()).world_size
