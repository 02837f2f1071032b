"""Joining the process group ``torchrun`` describes in the environment, for any command that
runs on several processes: training (:mod:`cyclegan.training.distributed` adds the gradient
all-reduce and the rest) and folder translation (:mod:`cyclegan.inference.sharded`).

``torchrun --nproc_per_node N -m cyclegan COMMAND ...`` starts N copies of the command with RANK,
WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/MASTER_PORT in their environment. :func:`process_group`
turns those into a process group (NCCL on GPUs, gloo on CPU); without them (or with
WORLD_SIZE=1) nothing here does anything.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterator
import torch
import torch.distributed as dist

from cyclegan.core.devices import pick_device

__all__ = ["DEFAULT_TIMEOUT_S", "DistInfo", "broadcast_object", "device_for", "gather_objects", "info",
           "launched_by_torchrun", "process_group", "shared_counter"]

log = logging.getLogger("cyclegan.distributed")

#: How long a collective may wait for a missing rank before the job fails (seconds). Long enough
#: for rank 0 to write a checkpoint or a preview while the others wait; override with
#: CYCLEGAN_DIST_TIMEOUT.
DEFAULT_TIMEOUT_S = 600


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def info() -> DistInfo:
    """This process's place in the current process group (rank 0 of 1 when there is none)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return DistInfo()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def device_for(name: str, local: int) -> str:
    """The device a rank uses: cuda:LOCAL_RANK when ``name`` is auto or a bare cuda."""
    if name in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{local}"
    return name


def _import_what_would_pin_the_group() -> None:
    """Import, before the process group exists, the torch modules that capture it at import.

    torch.distributed.nn.functional takes ``group=group.WORLD`` as a default argument,
    evaluated when the module is imported; torch.optim imports torch._dynamo,
    and with it those modules, when the first optimizer is built. Imported after
    init_process_group, the defaults hold the default group past destroy_process_group, so gloo's
    worker threads live until interpreter exit, where one of them freeing a tensor aborts the
    process (SIGABRT, "terminate called without an active exception") after a finished run.
    Imported first, the defaults are None."""
    for name in ("torch._dynamo", "torch.distributed.nn.functional"):
        importlib.import_module(name)


@contextlib.contextmanager
def process_group(device: str = "auto") -> Iterator[DistInfo]:
    """Join the process group torchrun described in the environment (a no-op without one) and
    leave it at the end. NCCL when this rank trains on CUDA, gloo otherwise. Collectives fail after
    CYCLEGAN_DIST_TIMEOUT seconds instead of hanging when a rank is gone."""
    if not launched_by_torchrun() or (dist.is_available() and dist.is_initialized()):
        yield info()
        return
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    local = int(os.environ.get("LOCAL_RANK", 0))
    dev = pick_device(device_for(device, local))
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        # Fail fast (and let torchrun tear the job down) when a collective times out or errors.
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    timeout = timedelta(seconds=float(os.environ.get("CYCLEGAN_DIST_TIMEOUT", DEFAULT_TIMEOUT_S)))
    _import_what_would_pin_the_group()
    dist.init_process_group(backend, timeout=timeout, **({"device_id": dev} if dev.type == "cuda" else {}))
    me = info()
    if not me.is_main:  # one voice: other ranks only report problems
        logging.getLogger("cyclegan").setLevel(logging.WARNING)
    log.info("process group: %s, %d ranks, timeout %s", backend, me.world_size, timeout)
    try:
        yield me
    finally:
        dist.destroy_process_group()


def gather_objects(obj, world_size: int) -> list:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if world_size <= 1:
        return [obj]
    out = [None] * world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, world_size: int):
    """Rank 0's ``obj`` (picklable) on every rank."""
    if world_size <= 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shared_counter(name: str):
    """A counter every rank can add to and read without waiting for the others (the process
    group's key-value store, which torchrun's rendezvous already runs): ``add(n)`` returns the new
    total. None without a process group or where this torch has no default store."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    try:
        from torch.distributed.distributed_c10d import _get_default_store

        store = _get_default_store()
    except Exception:  # a private helper: a torch without it runs without the shared count
        return None
    key = f"cyclegan/{name}"
    return lambda n: int(store.add(key, int(n)))
