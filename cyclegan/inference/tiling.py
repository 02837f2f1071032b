"""Tiled inference: instance norm statistics of the whole image, tiles planned along each axis
and blended with feathered ramps."""

from __future__ import annotations

import math
from copy import deepcopy
from dataclasses import dataclass
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def pad_to_multiple(x: Tensor, multiple: int, minimum: int = 1) -> tuple[Tensor, tuple[int, int, int, int]]:
    """Pad H and W up to a multiple, and at least ``minimum``, split over both sides, by
    reflection (replication where an image is too small to reflect). Returns the padded tensor
    and (left, right, top, bottom)."""
    h, w = x.shape[-2:]
    ph, pw = max(minimum - h, (-h) % multiple), max(minimum - w, (-w) % multiple)
    ph, pw = ph + (-(h + ph)) % multiple, pw + (-(w + pw)) % multiple
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if not any(pad):
        return x, pad
    mode = "reflect" if max(pad[0], pad[1]) < w and max(pad[2], pad[3]) < h else "replicate"
    return F.pad(x, pad, mode=mode), pad


def crop_padding(x: Tensor, pad: tuple[int, int, int, int]) -> Tensor:
    left, right, top, bottom = pad
    return x[..., top: x.shape[-2] - bottom, left: x.shape[-1] - right]


class StopForward(Exception):
    """Raised by a statistics-collecting norm layer: the rest of the forward pass is not needed."""


@dataclass
class TileContext:
    window: tuple[int, int] = (0, 0)          # this tile's input height and width
    core: tuple[int, int, int, int] = (0, 0, 0, 0)  # y0, y1, x0, x1 of its core, in the tile


class WholeImageInstanceNorm(nn.Module):
    """InstanceNorm whose statistics come from the whole image, gathered tile by tile.

    InstanceNorm normalises each channel by its mean and variance over the *whole* image, so a
    generator run on tiles, each with its own statistics, changes colour and contrast from tile
    to tile (visible seams). This layer first accumulates sums over each tile's core (the tiles'
    cores partition the image, so each pixel counts once) and raises :class:`StopForward`;
    once frozen it normalises every tile with the whole image's statistics.
    """

    def __init__(self, norm: nn.InstanceNorm2d, ctx: TileContext) -> None:
        super().__init__()
        self.eps = norm.eps
        self.weight, self.bias = norm.weight, norm.bias  # affine parameters, if any
        self.ctx = ctx
        self.reset()

    def reset(self) -> None:
        self.mean: Tensor | None = None
        self.inv_std: Tensor | None = None
        self._sum: Tensor | None = None
        self._sumsq: Tensor | None = None
        self._count = 0

    def forward(self, x: Tensor) -> Tensor:
        if self.mean is None:
            (wh, ww), (y0, y1, x0, x1) = self.ctx.window, self.ctx.core
            sy, sx = wh // x.shape[-2], ww // x.shape[-1]
            if sy * x.shape[-2] != wh or sx * x.shape[-1] != ww:
                raise RuntimeError("tile sizes must be multiples of the generator's downsampling")
            core = x[..., y0 // sy: y1 // sy, x0 // sx: x1 // sx].double()
            s, sq = core.sum(dim=(0, 2, 3)), core.square().sum(dim=(0, 2, 3))
            self._sum = s if self._sum is None else self._sum + s
            self._sumsq = sq if self._sumsq is None else self._sumsq + sq
            self._count += core[:, 0].numel()
            raise StopForward
        y = (x.float() - self.mean) * self.inv_std
        if self.weight is not None:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y

    @property
    def frozen(self) -> bool:
        return self.mean is not None

    @property
    def collected(self) -> bool:
        return self._count > 0

    def freeze(self) -> None:
        assert self._sum is not None and self._sumsq is not None
        mean = self._sum / self._count
        var = (self._sumsq / self._count - mean.square()).clamp(min=0)  # biased, as InstanceNorm
        self.mean = mean.float().view(1, -1, 1, 1)
        self.inv_std = torch.rsqrt(var + self.eps).float().view(1, -1, 1, 1)


def whole_image_norm_copy(net: nn.Module, ctx: TileContext) -> tuple[nn.Module, list[WholeImageInstanceNorm]]:
    """A copy of ``net`` whose per-image InstanceNorms are :class:`WholeImageInstanceNorm`s."""
    net = deepcopy(net)
    replaced: list[WholeImageInstanceNorm] = []
    for parent in list(net.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.InstanceNorm2d) and not child.track_running_stats:
                new = WholeImageInstanceNorm(child, ctx)
                parent.register_module(child_name, new)
                replaced.append(new)
    return net, replaced


def plan_axis(length: int, tile: int, overlap: int, multiple: int) -> list[tuple[int, int, int, int]]:
    """Split one axis into tiles: (window start, window end, core start, core end), all multiples
    of ``multiple``; the cores partition [0, length) and each window is its core plus up to
    ``overlap`` of context on either side."""
    if length <= tile:
        return [(0, length, 0, length)]
    core = tile - 2 * overlap
    n = math.ceil(length / core)
    bounds = [min(length, round(i * length / n / multiple) * multiple) for i in range(n + 1)]
    bounds[-1] = length
    return [(max(0, a - overlap), min(length, b + overlap), a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def feather_ramp(window: tuple[int, int, int, int], length: int, feather: int) -> Tensor:
    """Blend weights along one axis for one tile's window: 1 over its core, falling linearly to
    0 across a band of 2*feather pixels centred on each core edge shared with a neighbour. The
    neighbours' ramps are mirror images, so the weights of all tiles sum to exactly 1."""
    w0, w1, c0, c1 = window
    p = torch.arange(w0, w1, dtype=torch.float32) + 0.5
    weight = torch.ones(w1 - w0)
    if feather > 0:
        if c0 > 0:
            weight = weight * ((p - (c0 - feather)) / (2 * feather)).clamp(0, 1)
        if c1 < length:
            weight = weight * (((c1 + feather) - p) / (2 * feather)).clamp(0, 1)
    else:
        weight = ((p >= c0) & (p < c1)).float()
    return weight
