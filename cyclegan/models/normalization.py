"""Normalisation layers of the networks: the norm factories (by name), whether a conv before a
norm carries a bias, spectral normalisation, and dropping the stale InstanceNorm statistics of old
checkpoints.

Instance normalization: Ulyanov, Vedaldi, Lempitsky, "Instance Normalization: The Missing Ingredient
for Fast Stylization", arXiv:1607.08022.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import partial

import torch
from torch import nn
from torch.nn.modules.instancenorm import _InstanceNorm

NormFactory = Callable[[int], nn.Module]

NORM_LAYERS: tuple[str, ...] = ("instance", "batch", "none")


def get_norm_layer(norm: str) -> NormFactory:
    """Return a factory ``num_features -> nn.Module`` for the named normalization.

    * ``"instance"``: :class:`~torch.nn.InstanceNorm2d` without affine
      parameters and without running statistics (as in the original release).
    * ``"batch"``: :class:`~torch.nn.BatchNorm2d` with affine parameters and
      running statistics.
    * ``"none"``: :class:`~torch.nn.Identity`, kept as a module so that
      ``nn.Sequential`` indices (and hence parameter names) do not shift.
    """
    if norm == "instance":
        return partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if norm == "batch":
        return partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if norm == "none":
        return lambda num_features: nn.Identity()
    raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORM_LAYERS)}")


def conv_bias(norm: str) -> bool:
    """Whether convolutions followed by ``norm`` carry a bias.

    BatchNorm's affine shift makes a conv bias redundant, so it is dropped (as
    in the original). InstanceNorm here has no affine parameters and the
    original keeps the bias; with no norm a bias is needed.
    """
    get_norm_layer(norm)  # validate the name
    return norm != "batch"


def add_spectral_norm(net: nn.Module) -> nn.Module:
    """Spectral normalisation (Miyato et al. 2018) on every conv and linear layer of ``net``, in
    place: each weight is divided by its largest singular value (one power iteration per forward),
    bounding D's Lipschitz constant. Call after weight init; state dicts then hold
    ``parametrizations.weight.original`` and the power-iteration vectors."""
    from torch.nn.utils.parametrizations import spectral_norm

    for module in list(net.modules()):
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            spectral_norm(module)
    return net


# Checkpoints from PyTorch < 0.4 carry these for InstanceNorm layers, which no longer track them.
_RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")


def strip_running_stats(
    state_dict: Mapping[str, torch.Tensor], model: nn.Module
) -> dict[str, torch.Tensor]:
    """Return a copy of ``state_dict`` without stale InstanceNorm running statistics.

    Checkpoints saved with PyTorch < 0.4 carry ``running_mean``/``running_var``
    (and sometimes ``num_batches_tracked``) for InstanceNorm layers, which no
    longer track them; the original release patches them out in
    ``__patch_instance_norm_state_dict``. Only entries of InstanceNorm layers
    of ``model`` without running stats are removed; BatchNorm (and
    InstanceNorm with ``track_running_stats=True``) entries are kept. The
    input is not modified; its ``_metadata`` (if any) is carried over.
    """
    drop = {
        f"{prefix}.{stat}" if prefix else stat
        for prefix, module in model.named_modules()
        if isinstance(module, _InstanceNorm) and not module.track_running_stats
        for stat in _RUNNING_STATS
    }
    out: dict[str, torch.Tensor] = OrderedDict(
        (k, v) for k, v in state_dict.items() if k not in drop
    )
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        out._metadata = metadata  # type: ignore[attr-defined]
    return out


def fill_batch_counts(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """``state_dict`` with a zero ``num_batches_tracked`` for every BatchNorm of ``model`` whose
    weights are there but whose counter is not: files saved by PyTorch before 0.4.1 (the original
    release's published pix2pix generators) lack it, and it only matters for momentum None.
    The input is not modified."""
    out = OrderedDict(state_dict)
    for prefix, module in model.named_modules():
        key = f"{prefix}.num_batches_tracked" if prefix else "num_batches_tracked"
        if (isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats
                and key not in out and f"{prefix}.running_mean" in out):
            out[key] = torch.tensor(0, dtype=torch.long)
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        out._metadata = metadata  # type: ignore[attr-defined]
    return out
