"""Data-parallel training over several processes, started by ``torchrun``.

``torchrun --nproc_per_node N -m cyclegan train ...`` starts N copies of the command with RANK,
WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/MASTER_PORT in their environment. :func:`process_group`
turns those into a process group (NCCL on GPUs, gloo on CPU), and the training loop then:

- gives each rank its own shard of every epoch (:class:`~cyclegan.data.EpochSampler`);
- averages the gradients of every optimizer step over the ranks (:func:`all_reduce_grads`,
  called by :meth:`~cyclegan.gan.GANModel._update`), so N processes with batch B step exactly
  as one process with batch N*B when the loss is a per-sample mean (instance norm is per sample;
  batch norm becomes SyncBatchNorm on GPUs);
- lets rank 0 alone log, write previews and write checkpoints.

Without those variables (or with WORLD_SIZE=1) nothing here does anything.
"""

from __future__ import annotations

import logging

import torch
import torch.distributed as dist

# the process group itself lives in core (translation joins one too); re-exported for the loop
from cyclegan.core.distributed import (DEFAULT_TIMEOUT_S, DistInfo, device_for, gather_objects, info,  # noqa: F401
                                       launched_by_torchrun, process_group)

log = logging.getLogger("cyclegan.distributed")


def average(t: torch.Tensor, world_size: int) -> torch.Tensor:
    """The mean of ``t`` over all ranks (every rank passes the same shape), on every rank."""
    if world_size <= 1:
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t.div_(world_size)


def any_rank(flag: bool, world_size: int) -> bool:
    """True on every rank when ``flag`` is true on any (e.g. a stop request seen by one rank)."""
    if world_size <= 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_module(module: torch.nn.Module, world_size: int) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if world_size <= 1:
        return
    with torch.no_grad():
        for t in module.state_dict().values():
            if isinstance(t, torch.Tensor):
                dist.broadcast(t, 0)


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def convert_sync_batchnorm(model, device: torch.device) -> bool:
    """Batch norm statistics over the global batch: SyncBatchNorm on CUDA. On CPU (gloo) torch has
    no SyncBatchNorm, so batch norm stays per process there (a warning says so). Parameters are
    kept as they are, so optimizers built before stay valid. Returns True when something changed."""
    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if not has_bn:
        return False
    if device.type != "cuda":
        log.warning("batch norm on %s: statistics stay per process (SyncBatchNorm needs CUDA)", device.type)
        return False
    for nets in (model.generators, model.discriminators):  # ModuleDicts: converted in place
        torch.nn.SyncBatchNorm.convert_sync_batchnorm(nets)
    return True
