"""Paired images for pix2pix: each A image comes with its B image, the ground truth.

Two layouts on disk:

* aligned (the original release's): one file holds A (left half) and B (right half), in
  ``DATAROOT/train``, ``val`` and ``test`` (what ``cyclegan download dataset pix2pix_NAME`` fetches);
* two folders (``DATAROOT/trainA`` and ``DATAROOT/trainB``, or ``--domain-a``/``--domain-b``) whose
  files are matched by relative path without the extension: ``trainA/x/1.png`` with ``trainB/x/1.jpg``.

A pair that cannot be used (an aligned file of odd width, two halves or files of different sizes,
a file without its counterpart, an unreadable file) is skipped with one warning naming the file and
what is wrong; a run fails only when no pair is left. Both images of a pair get the same resize,
crop and flip (one albumentations call with two targets), seeded by ``(seed, epoch, index)`` as the
unpaired set (:mod:`cyclegan.data.unpaired`), so samples do not depend on workers or resumes.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cyclegan.data.augment_config import AugmentConfig
from cyclegan.data.images import DataError, UnreadableImageError, load_image
from cyclegan.data.unpaired import ImageFolder, seed_sequence

__all__ = ["Pair", "PairedImageDataset", "aligned_pairs", "folder_pairs", "split_aligned", "to_channels"]

logger = logging.getLogger("cyclegan.data")

_STREAM_AUG = 1


class Pair(tuple):
    """``(path_a, path_b)``; both the same file for the aligned layout."""

    @property
    def aligned(self) -> bool:
        return self[0] == self[1]


def _skip(skipped: list[tuple[Path, str]], path: Path, reason: str) -> None:
    skipped.append((path, reason))
    logger.warning("paired data: skipping %s (%s)", path, reason)


def aligned_pairs(folder: str | os.PathLike[str]) -> tuple[list[Pair], list[tuple[Path, str]]]:
    """The usable A|B files of an aligned folder and the skipped ``(path, reason)``."""
    images = ImageFolder(folder, 3, name="A|B")
    pairs, skipped = [], list(images.skipped)
    for path, (w, h) in zip(images.paths, images.sizes):
        if w % 2:
            _skip(skipped, path, f"odd width {w}: an aligned file holds A and B side by side, two halves "
                                 "of equal width")
        else:
            pairs.append(Pair((path, path)))
    return pairs, skipped


def folder_pairs(folder_a: str | os.PathLike[str], folder_b: str | os.PathLike[str]
                 ) -> tuple[list[Pair], list[tuple[Path, str]]]:
    """Files of two folders matched by relative path without the extension, and the skipped ones."""
    a, b = ImageFolder(folder_a, 3, name="A"), ImageFolder(folder_b, 3, name="B")
    skipped = [*a.skipped, *b.skipped]

    def keyed(images: ImageFolder) -> dict[str, tuple[Path, tuple[int, int]]]:
        return {p.relative_to(images.folder).with_suffix("").as_posix(): (p, s) for p, s in zip(images.paths, images.sizes)}

    in_a, in_b = keyed(a), keyed(b)
    pairs = []
    for key, (path, size) in in_a.items():
        if key not in in_b:
            _skip(skipped, path, f"no counterpart {key}.* in {b.folder}")
        elif in_b[key][1] != size:
            other, size_b = in_b[key]
            _skip(skipped, path, f"{size[0]}x{size[1]}, but its counterpart {other} is {size_b[0]}x{size_b[1]}")
        else:
            pairs.append(Pair((path, in_b[key][0])))
    for key, (path, _) in in_b.items():
        if key not in in_a:
            _skip(skipped, path, f"no counterpart {key}.* in {a.folder}")
    return pairs, skipped


def split_aligned(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An aligned HxWxC array -> its left (A) and right (B) halves."""
    half = image.shape[1] // 2
    return image[:, :half], image[:, half:2 * half]


class PairedImageDataset(torch.utils.data.Dataset):
    """Paired samples ``{"A", "B", "A_path", "B_path"}``: from an aligned folder (``folder_b`` None)
    or two folders. ``channels_a``/``channels_b``: 1 (grayscale) or 3 (RGB) for each side. Keys are
    ``index`` or ``(epoch, index)`` (:class:`~cyclegan.data.unpaired.EpochSampler`)."""

    def __init__(self, folder_a: str | os.PathLike[str], folder_b: str | os.PathLike[str] | None,
                 cfg: AugmentConfig, channels_b: int | None = None, seed: int = 0) -> None:
        self.cfg, self.seed = cfg, int(seed)
        self.channels_a, self.channels_b = cfg.channels, channels_b or cfg.channels
        self.source = f"{folder_a} (aligned A|B)" if folder_b is None else f"{folder_a} and {folder_b}"
        self.pairs, self.skipped = aligned_pairs(folder_a) if folder_b is None else folder_pairs(folder_a, folder_b)
        if not self.pairs:
            first = f"; first: {self.skipped[0][0]}: {self.skipped[0][1]}" if self.skipped else ""
            raise DataError(f"no usable image pairs in {self.source} ({len(self.skipped)} skipped{first})")
        from cyclegan.data.transforms import build_transform

        self.transform = build_transform(cfg, pair="B")
        self._bad: set[int] = set()

    @property
    def static_shapes(self) -> bool:
        return self.cfg.preprocess != "none"

    def check_batchable(self, batch_size: int) -> None:
        if batch_size > 1 and self.cfg.preprocess in ("none", "scale_width"):
            raise DataError(f"--preprocess {self.cfg.preprocess} keeps the images' own sizes; paired training takes "
                            "--batch-size 1 with it, or a --preprocess that crops")

    def __len__(self) -> int:
        return len(self.pairs)

    def load_pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The decoded A and B images of pair ``index``, before augmentation (may raise
        :class:`~cyclegan.data.images.UnreadableImageError` or DataError)."""
        pair = self.pairs[index]
        if pair.aligned:
            rgb = load_image(pair[0], 3)
            a, b = split_aligned(rgb)
            return to_channels(a, self.channels_a), to_channels(b, self.channels_b)
        a, b = load_image(pair[0], self.channels_a), load_image(pair[1], self.channels_b)
        if a.shape[:2] != b.shape[:2]:  # the probe saw equal sizes; the decoded files disagree
            raise UnreadableImageError(pair[0], f"{a.shape[1]}x{a.shape[0]}, but {pair[1]} is {b.shape[1]}x{b.shape[0]}")
        return a, b

    def _load(self, index: int) -> tuple[Pair, np.ndarray, np.ndarray]:
        n = len(self.pairs)
        for step in range(n):
            i = (index + step) % n
            if i in self._bad:
                continue
            try:
                return self.pairs[i], *self.load_pair(i)
            except UnreadableImageError as exc:
                self._bad.add(i)
                logger.warning("paired data: skipping %s (%s); using the next pair instead", self.pairs[i][0], exc.reason)
        raise DataError(f"none of the {n:,} pairs in {self.source} could be decoded; check the files")

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for dataset of {len(self)} pairs")
        pair, a, b = self._load(int(index))
        np_seq, py_seq = seed_sequence(self.seed, int(epoch), int(index), _STREAM_AUG).spawn(2)
        self.transform.set_random_state(np.random.default_rng(np_seq),
                                        random.Random(int(py_seq.generate_state(1, np.uint64)[0])))
        out = self.transform(image=a, B=b)
        return {"A": out["image"], "B": out["B"], "A_path": str(pair[0]), "B_path": str(pair[1])}

    def summary(self) -> str:
        cfg = self.cfg
        skipped = f" ({len(self.skipped):,} skipped)" if self.skipped else ""
        return (f"paired data: {len(self):,} pairs in {self.source}{skipped}; preprocess {cfg.preprocess} "
                f"(load {cfg.load_size}, crop {cfg.crop_size}), flip {'on' if cfg.flip else 'off'}, the same for both")


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """An RGB half as ``channels`` channels (grayscale by the ITU-R 601 luma, as PIL's ``L``)."""
    if channels == 3:
        return np.ascontiguousarray(image)
    gray = image[..., 0] * 0.299 + image[..., 1] * 0.587 + image[..., 2] * 0.114
    return np.ascontiguousarray(np.clip(np.round(gray), 0, 255).astype(np.uint8)[..., None])
