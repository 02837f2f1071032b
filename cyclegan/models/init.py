"""Weight initialisation of the original release, and switching gradients of whole networks."""

from __future__ import annotations

from typing import Iterable
from torch import nn


# --------------------------------------------------------------------------------------------
# Networks helpers: requires_grad switching and weight init
# --------------------------------------------------------------------------------------------


def set_requires_grad(nets: nn.Module | Iterable[nn.Module], flag: bool) -> None:
    """Switch gradients of every parameter of ``nets`` on or off (D is frozen during G's step, so
    G's backward pass does not accumulate into D's gradients or spend time on them)."""
    if isinstance(nets, nn.Module):
        nets = [nets]
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")


def init_weights(net: nn.Module, init_type: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialise conv/linear weights as in the original release: N(0, gain) by default, or
    xavier-normal(gain), kaiming-normal (fan_in), orthogonal(gain); biases 0. BatchNorm weights
    are drawn from N(1, gain) and biases set to 0."""
    if init_type not in INIT_TYPES:
        raise ValueError(f"unknown init type {init_type!r}; choose one of: {', '.join(INIT_TYPES)}")

    def init(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Conv1d, nn.ConvTranspose1d)):
            if init_type == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)

    net.apply(init)
    return net
