"""The image history pool of the original release (Shrivastava et al. 2017)."""

from __future__ import annotations

from typing import Mapping
import torch
from torch import Tensor


# --------------------------------------------------------------------------------------------
# Image history pool
# --------------------------------------------------------------------------------------------


class ImagePool:
    """History of generated images (Shrivastava et al. 2017), as in the CycleGAN paper.

    ``query(images)`` returns a batch of the same size. While the pool holds fewer than ``size``
    images, each incoming image is stored and returned. After that, each image is, with
    probability 1/2, swapped with a randomly chosen stored one (the stored one is returned),
    otherwise returned as is. ``size == 0`` disables the pool. The pool has its own seeded RNG
    and a state_dict, so resumed runs draw exactly as uninterrupted ones.
    """

    def __init__(self, size: int = 50, seed: int = 0):
        if size < 0:
            raise ValueError(f"pool size must be >= 0, got {size}")
        self.size = size
        self.images: list[Tensor] = []
        self.rng = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.images)

    @torch.no_grad()
    def query(self, images: Tensor) -> Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand((), generator=self.rng).item() > 0.5:
                i = int(torch.randint(0, self.size, (), generator=self.rng).item())
                out.append(self.images[i].clone())
                self.images[i] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict:
        if len({im.shape for im in self.images}) > 1:  # images of their own sizes (--preprocess none)
            images: Tensor | list[Tensor] = [im.cpu() for im in self.images]
        else:
            images = torch.cat(self.images, 0).cpu() if self.images else torch.empty(0)
        return {"size": self.size, "images": images, "rng": self.rng.get_state()}

    def load_state_dict(self, state: Mapping, device: torch.device | str = "cpu") -> None:
        self.size = int(state["size"])
        images = state["images"]
        if isinstance(images, Tensor):
            self.images = [im.unsqueeze(0).to(device) for im in images] if images.numel() else []
        else:
            self.images = [im.to(device) for im in images]
        self.rng.set_state(state["rng"])
