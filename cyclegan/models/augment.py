"""Differentiable augmentation of discriminator inputs (DiffAugment; Zhao et al. 2020,
"Differentiable Augmentation for Data-Efficient GAN Training").

D sees T(real) and T(fake) for random transforms T that gradients flow through, so G still
learns from D while D can no longer memorise the few real images it has. Here one draw of T per
training step is applied to every D input of that step: the real batch, the pooled fakes in D's
update and the fresh fakes in G's update (same translation, cutout and colour change for real and
fake, so D cannot tell them apart by the augmentation itself).

Images are in [-1, 1], (N, C, H, W); the magnitudes are the reference implementation's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

POLICIES = ("color", "translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    """``"translation,cutout,color"`` -> its parts, in the reference order (colour first)."""
    parts = {p.strip() for p in policy.split(",") if p.strip()}
    unknown = parts - set(POLICIES)
    if unknown:
        raise ValueError(f"unknown DiffAugment part(s) {', '.join(sorted(unknown))}; "
                         f"use a comma-separated subset of: {', '.join(POLICIES)}")
    return tuple(p for p in POLICIES if p in parts)


class DiffAugment:
    """Draws transform parameters from its own seeded generator (saved with the run, so a resumed
    run draws exactly what a straight one would) and applies them differentiably."""

    def __init__(self, policy: str, seed: int = 0, translation_ratio: float = 0.125, cutout_ratio: float = 0.5):
        self.parts = parse_policy(policy)
        self.translation_ratio = translation_ratio
        self.cutout_ratio = cutout_ratio
        self.rng = torch.Generator().manual_seed(seed)

    def __bool__(self) -> bool:
        return bool(self.parts)

    def sample(self, n: int, height: int, width: int) -> dict[str, Tensor | tuple[int, int]]:
        """Parameters of one transform per image of an ``n``-image batch (on the CPU)."""
        g, p = self.rng, {}
        if "color" in self.parts:
            p["brightness"] = torch.rand(n, 1, 1, 1, generator=g) - 0.5
            p["saturation"] = torch.rand(n, 1, 1, 1, generator=g) * 2
            p["contrast"] = torch.rand(n, 1, 1, 1, generator=g) + 0.5
        if "translation" in self.parts:
            sh, sw = int(height * self.translation_ratio + 0.5), int(width * self.translation_ratio + 0.5)
            p["shift_y"] = torch.randint(-sh, sh + 1, (n, 1, 1), generator=g)
            p["shift_x"] = torch.randint(-sw, sw + 1, (n, 1, 1), generator=g)
        if "cutout" in self.parts:
            ch, cw = int(height * self.cutout_ratio + 0.5), int(width * self.cutout_ratio + 0.5)
            p["cut_y"] = torch.randint(0, height + (1 - ch % 2), (n, 1, 1), generator=g)
            p["cut_x"] = torch.randint(0, width + (1 - cw % 2), (n, 1, 1), generator=g)
            p["cut_size"] = (ch, cw)  # fixed by the image size: plain ints, never read from a tensor
        return p

    def state_dict(self) -> dict:
        return {"rng": self.rng.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.rng.set_state(state["rng"])


def apply(x: Tensor, p: dict[str, Tensor | tuple[int, int]]) -> Tensor:
    """``x`` transformed by the parameters ``p`` of :meth:`DiffAugment.sample` (same batch size)."""
    if "brightness" in p:
        x = x + p["brightness"].to(x)
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * p["saturation"].to(x) + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * p["contrast"].to(x) + mean
    if "shift_y" in p:
        x = _translate(x, p["shift_y"].to(x.device), p["shift_x"].to(x.device))
    if "cut_y" in p:
        x = x * _cutout_mask(x, p["cut_y"].to(x.device), p["cut_x"].to(x.device), p["cut_size"])
    return x


def _translate(x: Tensor, dy: Tensor, dx: Tensor) -> Tensor:
    """Shift each image by (dy, dx) pixels, filling with zeros (mid-grey in [-1, 1])."""
    n, _, h, w = x.shape
    b, gy, gx = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(h, device=x.device),
                               torch.arange(w, device=x.device), indexing="ij")
    gy = (gy + dy + 1).clamp(0, h + 1)
    gx = (gx + dx + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])                      # the 1-pixel zero border is the fill
    return padded.permute(0, 2, 3, 1)[b, gy, gx].permute(0, 3, 1, 2).contiguous(memory_format=_fmt(x))


def _cutout_mask(x: Tensor, cy: Tensor, cx: Tensor, size: tuple[int, int]) -> Tensor:
    n, _, h, w = x.shape
    ch, cw = size
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    y0, x0 = cy - ch // 2, cx - cw // 2
    inside = (ys >= y0) & (ys < y0 + ch) & (xs >= x0) & (xs < x0 + cw)
    return (~inside).to(x.dtype).unsqueeze(1)


def _fmt(x: Tensor) -> torch.memory_format:
    return torch.channels_last if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) \
        and not x.is_contiguous() else torch.contiguous_format
