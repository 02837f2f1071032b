"""Picking the torch device: the one place that answers "auto"."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["cudnn_benchmark", "pick_device"]


def pick_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an unavailable explicit choice is an error; a
    :class:`torch.device` is taken as it is."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"--device {name}: MPS is not available on this machine; use --device cpu or auto")
    return device


@contextlib.contextmanager
def cudnn_benchmark(device: torch.device) -> Iterator[None]:
    """On CUDA, let cuDNN time its algorithms once per input shape and keep the fastest (for
    fixed shapes: training, benchmarks); the process-wide switch is restored on the way out.
    Not where deterministic algorithms were asked for (``torch.backends.cudnn.deterministic``):
    timings differ between processes, so the choice would, and with it the results."""
    before = torch.backends.cudnn.benchmark
    if device.type == "cuda" and not torch.backends.cudnn.deterministic:
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before
