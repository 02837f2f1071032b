"""The image folders `cyclegan eval domains` reads: DATAROOT/{train,test}{A,B}, decoded in threads
(unreadable files skipped and reported), converted to the classifier's channels, resized to its
size and stacked into uint8 batches."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from cyclegan.data.images import DataError, UnreadableImageError, find_images, load_image

log = logging.getLogger("cyclegan.domains")

DOMAINS = ("A", "B")
LAYOUT_HINT = ("`cyclegan eval domains` needs DATAROOT/trainA, trainB, testA and testB (the layout of "
               "`cyclegan download dataset`)")


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 HxWxC -> size x size (bicubic, as training and inference resize)."""
    if image.shape[:2] == (size, size):
        return image
    pil = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
    out = np.asarray(pil.resize((size, size), Image.BICUBIC))
    return out[:, :, None] if out.ndim == 2 else out


def convert_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """uint8 HxWxC -> ``channels`` channels (grayscale repeated, or RGB -> L as Pillow converts)."""
    if image.shape[2] == channels:
        return image
    if channels == 3:
        return np.repeat(image, 3, axis=2)
    return np.asarray(Image.fromarray(image).convert("L"))[:, :, None]


def stack_images(images: list[np.ndarray]) -> Tensor:
    """[uint8 HxWxC] of one size -> uint8 (N, C, H, W)."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def spaced(items: list, k: int | None) -> list:
    """``k`` items spread evenly over ``items`` (all of them when k is None or large enough)."""
    if k is None or k >= len(items):
        return list(items)
    return [items[i] for i in np.unique(np.linspace(0, len(items) - 1, k).round().astype(int))]


def read_images(paths: list[Path], channels: int, size: int | None = None, workers: int = 4
                ) -> tuple[list[np.ndarray], list[Path], list[tuple[Path, str]]]:
    """Decode ``paths`` (``channels`` channels, resized to ``size`` when given); unreadable files
    are skipped with a warning. Returns (images, their paths, [(unreadable file, reason)])."""
    def one(path: Path) -> np.ndarray | str:
        try:
            image = load_image(path, channels)
        except UnreadableImageError as e:
            return e.reason
        return resize_square(image, size) if size else image

    images, kept, failed = [], [], []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for path, result in zip(paths, pool.map(one, paths)):
            if isinstance(result, str):
                log.warning("skipping %s: %s", path, result)
                failed.append((path, result))
            else:
                images.append(result)
                kept.append(path)
    return images, kept, failed


def domain_folder(dataroot: str | os.PathLike, split: str, domain: str, *, minimum: int = 1) -> list[Path]:
    """The images of DATAROOT/{split}{domain}, or a DataError naming the folder and what to do."""
    root = Path(dataroot).expanduser()
    if not root.is_dir():
        raise DataError(f"--dataroot {root}: no such folder; {LAYOUT_HINT}")
    folder = root / f"{split}{domain}"
    if not folder.is_dir():
        raise DataError(f"{folder} does not exist: {LAYOUT_HINT}; check --dataroot")
    paths = find_images(folder)
    if len(paths) < minimum:
        raise DataError(f"{folder} holds {len(paths)} image file(s), need at least {minimum}: put the {split} "
                        f"images of domain {domain} there (.png, .jpg, ...), or check --dataroot")
    return paths


def detect_channels(dataroot: str | os.PathLike) -> int:
    """1 when the first images of trainA and trainB are both grayscale, else 3."""
    for domain in DOMAINS:
        path = domain_folder(dataroot, "train", domain)[0]
        try:
            with Image.open(path) as img:
                if img.mode not in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
                    return 3
        except Exception:
            return 3
    return 1
