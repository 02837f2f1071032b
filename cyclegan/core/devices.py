"""Picking the torch device: the one place that answers "auto"."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


# --------------------------------------------------------------------------------------------
# Device, mixed precision and the alternating update
# --------------------------------------------------------------------------------------------


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an unavailable explicit choice is an error."""
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


# --------------------------------------------------------------------------------------------
# Running a generator: padding, precision, tiles
# --------------------------------------------------------------------------------------------


#: inference calls it by this name; the same rule as training's
resolve_device = pick_device
