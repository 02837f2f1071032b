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

    Two ways to hold the images, with the same draws and the same results:

    - a list (the default): any image sizes (``--preprocess none``);
    - a device buffer (:meth:`to_buffer`), for a step captured as one CUDA graph
      (cyclegan.training.step_graph): the host draws each step's decisions ahead of it
      (:meth:`draw_plan`) and the step applies them with tensor operations only, reading the
      plan from a tensor, so nothing in the step depends on a host-side branch.
    """

    def __init__(self, size: int = 50, seed: int = 0):
        if size < 0:
            raise ValueError(f"pool size must be >= 0, got {size}")
        self.size = size
        self.images: list[Tensor] = []
        self.rng = torch.Generator().manual_seed(seed)
        #: buffer mode: (size, C, H, W) images, of which the first ``count`` are filled
        self.buffer: Tensor | None = None
        self.count = 0
        #: buffer mode: the next query's decisions, one (slot, store, take) row per image
        self.plan: Tensor | None = None

    def __len__(self) -> int:
        return self.count if self.buffer is not None else len(self.images)

    def _decide(self, filled: int) -> tuple[int, int, int]:
        """One image's fate: (slot, store it there, return the stored image instead). The same
        RNG draws as the list mode makes, in the same order."""
        if filled < self.size:
            return filled, 1, 0
        if torch.rand((), generator=self.rng).item() > 0.5:
            return int(torch.randint(0, self.size, (), generator=self.rng).item()), 1, 1
        return 0, 0, 0

    @torch.no_grad()
    def query(self, images: Tensor) -> Tensor:
        if self.size == 0:
            return images
        if self.buffer is not None:
            return self._apply_plan(images.detach())
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            slot, store, take = self._decide(len(self.images))
            if store and not take:
                self.images.append(image.clone())
                out.append(image)
            elif take:
                out.append(self.images[slot].clone())
                self.images[slot] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    # -- buffer mode ---------------------------------------------------------------------------
    def to_buffer(self, like: Tensor, batch_size: int) -> None:
        """Hold the images in one device buffer (the list's images move into it), shaped, typed
        and placed like the images held, or like ``like`` while none are, and take the decisions
        of each query of ``batch_size`` images from :attr:`plan`."""
        if self.size == 0 or self.buffer is not None:
            return
        like = self.images[0] if self.images else like
        self.buffer = torch.zeros((self.size, *like.shape[1:]), dtype=like.dtype, device=like.device)
        if self.images:
            self.buffer[:len(self.images)] = torch.cat(self.images, 0)
        self.count = len(self.images)
        self.images = []
        self.plan = torch.zeros((batch_size, 3), dtype=torch.long, device=like.device)

    def to_list(self) -> None:
        """Back to the list mode (the buffer's filled images become the list)."""
        if self.buffer is None:
            return
        self.images = [im.unsqueeze(0).clone() for im in self.buffer[:self.count]]
        self.buffer, self.plan, self.count = None, None, 0

    def draw_plan(self, n: int) -> list[tuple[int, int, int]]:
        """Buffer mode: draw the decisions of the next query of ``n`` images (advancing the RNG
        and the fill count as that query would) and return them, for :attr:`plan`."""
        rows = []
        for _ in range(n):
            rows.append(self._decide(self.count))
            self.count += rows[-1][1] and not rows[-1][2]
        return rows

    def _apply_plan(self, images: Tensor) -> Tensor:
        out = []
        for j, image in enumerate(images.unsqueeze(1)):  # in order: an image may take one stored just before
            slot, store, take = self.plan[j, 0:1], self.plan[j, 1].bool(), self.plan[j, 2].bool()
            stored = self.buffer.index_select(0, slot)
            out.append(torch.where(take, stored, image))
            self.buffer.index_copy_(0, slot, torch.where(store, image.to(self.buffer.dtype), stored))
        return torch.cat(out, 0)

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        held = list(self.buffer[:self.count].unsqueeze(1)) if self.buffer is not None else self.images
        if len({im.shape for im in held}) > 1:  # images of their own sizes (--preprocess none)
            images: Tensor | list[Tensor] = [im.cpu() for im in held]
        else:
            images = torch.cat(held, 0).cpu() if held else torch.empty(0)
        return {"size": self.size, "images": images, "rng": self.rng.get_state()}

    def load_state_dict(self, state: Mapping, device: torch.device | str = "cpu") -> None:
        self.buffer, self.plan, self.count = None, None, 0
        self.size = int(state["size"])
        images = state["images"]
        if isinstance(images, Tensor):
            self.images = [im.unsqueeze(0).to(device) for im in images] if images.numel() else []
        else:
            self.images = [im.to(device) for im in images]
        self.rng.set_state(state["rng"])
