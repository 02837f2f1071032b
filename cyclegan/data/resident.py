"""The unpaired training set held in device memory (``cyclegan train --data-on-device``).

At batch 1 and small sizes the training step is short and the DataLoader's per-step host work
(decode, albumentations, worker hand-off, host->device copy) leaves the GPU idle. Here both
domains are decoded once, through the deterministic part of the normal pipeline (resize / fit /
scale-width: :func:`cyclegan.data.transforms.build_transform` itself), to one uint8 tensor per domain
at that size, kept on the training device; each step's random crop to ``crop_size`` and
horizontal flip are one gather on the device, and normalisation to [-1, 1] is the same
arithmetic as albumentations' ``Normalize`` (bit-identical).

Supported preprocess modes: ``resize_and_crop`` always; ``crop`` and ``scale_width_and_crop``
when every image of a domain comes out of the resize at one size (e.g. a folder of equal
images). ``scale_width`` and ``none`` keep the images' own sizes and have no crop: the DataLoader
serves them.

Sampling is the normal path's: the keys come from the Trainer's :class:`EpochSampler` (epochs,
torchrun ranks, mid-epoch skip), and every random choice of a sample (which B image, crop
positions, flips) is a function of ``(seed, epoch, index)``: a torch.Generator on the device is
seeded from ``(seed, epoch)`` when an epoch starts and draws that epoch's choices for every index
at once. So a resumed run (same process setup) sees exactly the samples of a straight one with
nothing extra in the checkpoint, whatever the number of ranks. The draws are not the DataLoader
path's (numpy on the host), so the two paths train on different (equally distributed) crops.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from cyclegan.data.images import DataError
from cyclegan.data.unpaired import EpochSampler, ImageFolder, UnpairedImageDataset, seed_sequence

__all__ = ["DATA_ON_DEVICE", "MEMORY_FRACTION", "ResidentLoader", "describe", "loader_for"]

log = logging.getLogger("cyclegan.data")

DATA_ON_DEVICE = ("auto", "on", "off")
#: at most this fraction of the free device memory (CUDA) or available RAM (CPU) for the images:
#: the rest is the training step's (weights, optimizer state, activations)
MEMORY_FRACTION = 0.25
_SUPPORTED = ("resize_and_crop", "crop", "scale_width_and_crop")
_STREAM_EPOCH = 3  # after unpaired's B choice, A and B augmentation streams


@dataclass(frozen=True)
class _Layout:
    """A domain's images after the deterministic resize: count x channels x height x width."""

    domain: ImageFolder
    shape: tuple[int, int, int, int]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))


def _resize_steps(dataset: UnpairedImageDataset):
    """The deterministic head of the dataset's own pipeline: every step before its RandomCrop."""
    import albumentations as A

    steps = list(dataset.transform.transforms)
    cut = next(i for i, t in enumerate(steps) if isinstance(t, A.RandomCrop))
    return A.Compose(steps[:cut])


def layouts(dataset: UnpairedImageDataset) -> list[_Layout]:
    """Each domain's tensor shape, from the probed sizes (nothing is decoded); DataError saying why
    when the data set cannot be held as one tensor per domain."""
    cfg = dataset.cfg
    if cfg.preprocess not in _SUPPORTED:
        raise DataError(f"--data-on-device needs a --preprocess that crops to one size ({', '.join(_SUPPORTED)}); "
                        f"--preprocess {cfg.preprocess} keeps the images' own sizes: use --data-on-device off")
    if cfg.crop_size % 4:
        raise DataError(f"--data-on-device needs a crop size that is a multiple of 4; got {cfg.crop_size}")
    resize = _resize_steps(dataset)
    out = []
    for domain in (dataset.domain_a, dataset.domain_b):
        shapes: dict[tuple[int, int], object] = {}
        for path, (w, h) in zip(domain.paths, domain.sizes):
            if (w, h) not in shapes:  # run the resize itself on a blank image of each size: no second copy of its rules
                blank = np.zeros((h, w, cfg.channels), np.uint8)
                shapes[(w, h)] = (resize(image=blank)["image"].shape[:2], path)
        resized = {shape: path for shape, path in shapes.values()}
        if len(resized) > 1:
            (s1, p1), (s2, p2) = list(resized.items())[:2]
            raise DataError(f"--data-on-device holds one image size per domain, and --preprocess {cfg.preprocess} "
                            f"leaves domain {domain.name}'s images at different sizes ({p1}: {s1[1]}x{s1[0]}, "
                            f"{p2}: {s2[1]}x{s2[0]}): use --preprocess resize_and_crop or --data-on-device off")
        (height, width), = resized
        out.append(_Layout(domain, (len(domain), cfg.channels, height, width)))
    return out


def memory_limit(device: torch.device) -> tuple[int, str]:
    """(bytes the images may take, what that is)."""
    share = f"{100 * MEMORY_FRACTION:g}% of"
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * MEMORY_FRACTION), f"{share} the free device memory"
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        available = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(available * MEMORY_FRACTION), f"{share} the available RAM"


def loader_for(dataset, sampler: EpochSampler, data_cfg, batch_size: int, device: torch.device,
               limit: int | None = None) -> ResidentLoader | None:
    """The resident loader the run's data section (``data_cfg.data_on_device``) asks for on
    ``device``, or None for the DataLoader.

    ``off`` (and data sections without the field, e.g. the MNIST GAN's): None. ``auto``: on for CUDA when
    the data set is supported and fits. ``on``: an unsupported data set is a DataError; on both, a
    data set over the memory limit (``limit`` bytes, default :func:`memory_limit`) falls back to the
    DataLoader with one log line."""
    mode = getattr(data_cfg, "data_on_device", "off")
    if mode not in DATA_ON_DEVICE:
        raise ValueError(f"data_on_device must be one of {', '.join(DATA_ON_DEVICE)}; got {mode!r}")
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    try:
        if not isinstance(dataset, UnpairedImageDataset):
            raise DataError("--data-on-device holds unpaired image folders only")
        domains = layouts(dataset)
    except DataError as e:
        if mode == "on":
            raise
        log.info("data: DataLoader (%s)", e)
        return None
    need = sum(d.nbytes for d in domains)
    allowed, what = memory_limit(device) if limit is None else (limit, "the limit given")
    if need > allowed:
        log.warning("data: the decoded images need %.1f MiB, more than the %.1f MiB allowed (%s); "
                    "using the DataLoader instead", need / 2**20, allowed / 2**20, what)
        return None
    return ResidentLoader(dataset, sampler, batch_size, device, domains)


class _Domain:
    """One domain on the device: ``images`` (N, C, H, W) uint8, and this epoch's gather indices."""

    def __init__(self, dataset: UnpairedImageDataset, layout: _Layout, device: torch.device) -> None:
        resize = _resize_steps(dataset)
        self.name = layout.domain.name
        self.images = torch.empty(layout.shape, dtype=torch.uint8, device=device)
        for i in range(len(layout.domain)):
            _, image = dataset._load(layout.domain, i)  # an unreadable file: the next readable one, as in training
            resized = np.require(resize(image=image)["image"], requirements="W")  # torch wants writable arrays
            self.images[i].copy_(torch.from_numpy(resized).permute(2, 0, 1))
        c = layout.shape[1]
        self.channels = torch.arange(c, device=device).view(1, c, 1, 1)

    def plan(self, image: torch.Tensor, index: torch.Tensor, n: int, size: int, flip: bool,
             g: torch.Generator) -> None:
        """This epoch's ``image`` per position and its crop rows / columns (flipped ones reversed):
        crops and flips are drawn for all ``n`` data set indices, whatever part of the epoch is
        left, then picked by ``index``."""
        _, _, height, width = self.images.shape
        dev = self.images.device
        top = torch.randint(height - size + 1, (n,), generator=g, device=dev)[index]
        left = torch.randint(width - size + 1, (n,), generator=g, device=dev)[index]
        flipped = torch.randint(2, (n,), generator=g, device=dev)[index].bool() & flip
        ramp = torch.arange(size, device=dev)
        self.image = image
        self.rows = top[:, None] + ramp
        self.cols = left[:, None] + torch.where(flipped[:, None], size - 1 - ramp, ramp)

    def batch(self, at: slice) -> torch.Tensor:
        """Positions ``at`` of the epoch: one gather, then albumentations' Normalize(0.5, 0.5)."""
        crops = self.images[self.image[at, None, None, None], self.channels,
                            self.rows[at, None, :, None], self.cols[at, None, None, :]]
        return crops.float().sub_(127.5).mul_(1 / 127.5)


class ResidentLoader:
    """Iterates the sampler's keys in batches of ``{"A", "B", "A_index", "B_index"}``, all on the
    device, as the DataLoader does with the dataset's samples (the last batch may be short)."""

    def __init__(self, dataset: UnpairedImageDataset, sampler: EpochSampler, batch_size: int,
                 device: torch.device, domains: list[_Layout]) -> None:
        start = time.perf_counter()
        self.dataset, self.sampler, self.batch_size, self.device = dataset, sampler, batch_size, device
        self.domains = [_Domain(dataset, layout, device) for layout in domains]
        self.nbytes = sum(d.nbytes for d in domains)
        self.description = (f"data: on the device ({device}; "
                            + ", ".join(f"{d.domain.name} {'x'.join(map(str, d.shape))}" for d in domains)
                            + f" uint8, {self.nbytes / 2**20:.1f} MiB, decoded in {time.perf_counter() - start:.1f} s; "
                              f"crop {dataset.cfg.crop_size}{' + flip' if dataset.cfg.flip else ''} on the device)")

    def _plan_epoch(self, keys: list[tuple[int, int]]) -> None:
        ds, dev = self.dataset, self.device
        epoch = keys[0][0]
        g = torch.Generator(device=dev)
        g.manual_seed(int(seed_sequence(ds.seed, epoch, 0, _STREAM_EPOCH).generate_state(1, np.uint64)[0]))
        index = torch.tensor([i for _, i in keys], device=dev)
        a, b = self.domains
        n_b = b.images.shape[0]
        # drawn even when serial, so that flipping --serial-batches leaves the crops as they were
        chosen = torch.randint(n_b, (len(ds),), generator=g, device=dev)[index]
        image_b = index % n_b if ds.serial else chosen
        a.plan(index % a.images.shape[0], index, len(ds), ds.cfg.crop_size, ds.cfg.flip, g)
        b.plan(image_b, index, len(ds), ds.cfg.crop_size, ds.cfg.flip, g)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        keys = list(self.sampler)  # this rank's rest of the epoch: once per epoch, on the host
        if not keys:
            return
        self._plan_epoch(keys)
        a, b = self.domains
        for start in range(0, len(keys), self.batch_size):
            at = slice(start, start + self.batch_size)
            yield {"A": a.batch(at), "B": b.batch(at), "A_index": a.image[at], "B_index": b.image[at]}


def describe(loader) -> str:
    """The run header's line about the data path that runs."""
    if isinstance(loader, ResidentLoader):
        return loader.description
    workers = getattr(loader, "num_workers", 0)
    return f"data: DataLoader, {workers} worker{'s' if workers != 1 else ''} (decode and augmentation on the host)"
