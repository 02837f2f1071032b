"""Image loading and the unpaired two-domain dataset.

Data flows: folder of images on disk -> :class:`ImageFolder` (discovery and a cheap
readability check) -> :class:`UnpairedImageDataset` (decode, augment with the pipeline of
:mod:`cyclegan.data.transforms`, normalise) -> model.
The on-disk layout follows the original CycleGAN release: ``DATAROOT/trainA`` and
``DATAROOT/trainB`` hold the two domains, unpaired.

Reproducibility: every random choice made for a sample (which B image, crop position,
flip) comes from generators seeded by ``(seed, epoch, index)``, never from global RNG
state, so the samples do not depend on the number of DataLoader workers and a resumed
run sees exactly the samples the interrupted one would have. Use :class:`EpochSampler`
to feed ``(epoch, index)`` keys to the dataset.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any
import numpy as np
import torch
from PIL import Image
# Discovery and decoding live in .images (shared with inference); re-exported here.
from cyclegan.data.images import IMAGE_EXTENSIONS, DataError, UnreadableImageError, decode_strictly, describe_error, find_images, load_image
from cyclegan.data.augment_config import AugmentConfig

__all__ = ["EpochSampler", "ImageFolder", "UnpairedImageDataset"]

logger = logging.getLogger("cyclegan.data")


_EXIF_ORIENTATION = 0x0112
_U64 = (1 << 64) - 1  # SeedSequence wants non-negative entropy words


# ------------------------------------------------------------------ discovery + decode


def _orientation(img: Image.Image) -> int:
    """EXIF orientation tag (1 = as stored) without decoding the pixels."""
    if img.format == "PNG" and "exif" not in img.info:
        return 1  # PNG getexif() would decode the whole image to look for a late eXIf chunk
    try:
        return int(img.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # malformed EXIF: load_image ignores it as well
        return 1


def _jpeg_looks_complete(path: Path) -> bool:
    # Entropy-coded JPEG data byte-stuffs 0xFF, so an EOI marker (FF D9) near the end
    # means the file was written out completely; truncated files lack it.
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - 64))
        return b"\xff\xd9" in fh.read()


def _probe_image(path: Path) -> tuple[int, int]:
    """Cheap readability check; returns the EXIF-oriented (width, height).

    Header parse + ``verify()`` (for PNG this checks every chunk's CRC). JPEG verify
    checks nothing, so a JPEG without an end marker is decoded at 1/8 scale (draft
    mode, fast) to catch truncation. Anything still missed is handled at load time.
    """
    try:
        with Image.open(path) as img:
            img.verify()  # must come straight after open; the object is unusable afterwards
        with Image.open(path) as img:
            width, height = img.size
            orientation = _orientation(img)
            if img.format == "JPEG" and not _jpeg_looks_complete(path):
                img.draft(img.mode, (max(1, width // 8), max(1, height // 8)))
                decode_strictly(img)
    except Exception as exc:  # Pillow signals bad files with many exception types
        raise UnreadableImageError(path, describe_error(exc)) from exc
    if orientation in (5, 6, 7, 8):  # rotated by 90 degrees: sides swap
        width, height = height, width
    return width, height


# ------------------------------------------------------------------------- domains


class ImageFolder:
    """One domain's images: discovered with :func:`find_images`, each checked cheaply.

    ``paths`` are the readable files, ``sizes`` their EXIF-oriented (width, height),
    ``skipped`` the ``(path, reason)`` of files that failed the check.
    """

    def __init__(self, folder: str | os.PathLike[str], channels: int = 3, name: str = "A") -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB); got {channels!r}")
        self.folder = Path(folder)
        self.channels = channels
        self.name = name
        self.paths: list[Path] = []
        self.sizes: list[tuple[int, int]] = []
        self.skipped: list[tuple[Path, str]] = []
        for path in find_images(self.folder):
            try:
                size = _probe_image(path)
            except UnreadableImageError as exc:
                self.skipped.append((path, exc.reason))
                logger.warning("domain %s: skipping unreadable image %s (%s)", name, path, exc.reason)
                continue
            self.paths.append(path)
            self.sizes.append(size)
        if not self.paths:
            failed = len(self.skipped)
            detail = f"; first failure: {self.skipped[0][0]}: {self.skipped[0][1]}" if failed else ""
            raise DataError(
                f"domain {name}: no readable images in {self.folder} (looked for "
                f"{', '.join(IMAGE_EXTENSIONS)}, case-insensitive, in subfolders too; "
                f"{failed} file{'s' if failed != 1 else ''} failed to decode{detail}). "
                "Put the images for this domain there or fix the path."
            )

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> np.ndarray:
        """Decode image ``index`` (may raise :class:`UnreadableImageError`)."""
        return load_image(self.paths[index], self.channels)

    def summary(self) -> str:
        n = len(self.paths)
        text = f"domain {self.name}: {n:,} image{'s' if n != 1 else ''} in {self.folder}"
        if self.skipped:
            text += f" ({len(self.skipped):,} unreadable skipped)"
        return text


# ------------------------------------------------------------------------- dataset


def seed_sequence(seed: int, epoch: int, index: int, stream: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed & _U64, epoch & _U64, index & _U64, stream])


# Independent random streams of one sample.
_STREAM_B_CHOICE, _STREAM_A_AUG, _STREAM_B_AUG = 0, 1, 2


class UnpairedImageDataset(torch.utils.data.Dataset):
    """Unpaired samples ``{"A", "B", "A_path", "B_path"}`` from two image folders.

    Keys are ``index`` (epoch 0) or ``(epoch, index)`` as yielded by :class:`EpochSampler`.
    The A image is ``index % len_A``; B is ``index % len_B`` when ``serial`` else drawn at
    random (independent of A, as in the original release). All randomness is seeded by
    ``(seed, epoch, index)``, so samples are identical across worker counts and resumes.
    Not thread-safe (the transform's random state is set per call); DataLoader worker
    processes are fine.
    """

    @property
    def static_shapes(self) -> bool:
        """Whether every sample has the same size: every preprocessing that crops (``none`` keeps
        each image's size, ``scale_width`` its aspect ratio)."""
        return self.cfg.preprocess not in ("none", "scale_width")

    def __init__(
        self,
        folder_a: str | os.PathLike[str],
        folder_b: str | os.PathLike[str],
        cfg: AugmentConfig,
        seed: int = 0,
        serial: bool = False,
    ) -> None:
        self.cfg = cfg
        self.seed = int(seed)
        self.serial = serial
        self.domain_a = ImageFolder(folder_a, cfg.channels, name="A")
        self.domain_b = ImageFolder(folder_b, cfg.channels, name="B")
        # One pipeline serves both domains: A and B differ only in the random state
        # they are given, and config warnings are logged once per dataset.
        from cyclegan.data.transforms import build_transform

        self.transform = build_transform(cfg)
        self._warn_small_images()
        self._bad: dict[str, set[int]] = {"A": set(), "B": set()}  # failed at load time

    def _warn_small_images(self) -> None:
        """One warning for the whole dataset about images that must be upscaled to crop.

        Done here from the probed sizes (not lazily in the transform) so it is logged
        once, in the main process, rather than once per DataLoader worker and epoch.
        """
        from cyclegan.data.transforms import FitCrop

        fit = next((t for t in self.transform.transforms if isinstance(t, FitCrop)), None)
        if fit is None:
            return
        parts = []
        for domain in (self.domain_a, self.domain_b):
            small = [(w, h) for w, h in domain.sizes if min(w, h) < fit.size]
            if small:
                w, h = min(small, key=lambda s: min(s))
                parts.append(f"{len(small):,} of {len(domain):,} in domain {domain.name} (smallest {w}x{h})")
        if parts:
            logger.warning(
                "crop_size %d is larger than some images: %s; they are upscaled (keeping "
                "aspect ratio) so the crop fits. Use a smaller crop_size or larger images "
                "to avoid blurry training crops.",
                fit.size, "; ".join(parts),
            )
        fit.warned = True

    def check_batchable(self, batch_size: int) -> None:
        """DataError unless every batch of ``batch_size`` can be stacked: with preprocess none or
        scale_width the images keep (some of) their own size, and images of different sizes
        cannot share a batch. Uses the sizes probed at start; nothing is decoded."""
        from cyclegan.data.transforms import output_size

        if batch_size < 2:
            return
        for domain in (self.domain_a, self.domain_b):
            shapes: dict[tuple[int, int], Path] = {}
            for path, (w, h) in zip(domain.paths, domain.sizes):
                shape = output_size(self.cfg, w, h)
                if shape is None:
                    return  # crops: one size for all
                shapes.setdefault(shape, path)
                if len(shapes) > 1:
                    (s1, p1), (s2, p2) = shapes.items()
                    raise DataError(
                        f"--preprocess {self.cfg.preprocess} keeps the images' own sizes, and domain {domain.name} "
                        f"has different ones ({p1}: {s1[1]}x{s1[0]}, {p2}: {s2[1]}x{s2[0]} after preprocessing), "
                        f"which cannot share a batch: use --batch-size 1, or a --preprocess that crops "
                        "(resize_and_crop, crop, scale_width_and_crop)")

    def __len__(self) -> int:
        return max(len(self.domain_a), len(self.domain_b))

    @staticmethod
    def _parse_key(key: Any) -> tuple[int, int]:
        if isinstance(key, tuple):
            epoch, index = key
            return int(epoch), int(index)
        return 0, int(key)

    def _load(self, domain: ImageFolder, index: int) -> tuple[Path, np.ndarray]:
        """Decode ``domain.paths[index]``; on failure, deterministically the next readable one."""
        bad = self._bad[domain.name]
        n = len(domain)
        for step in range(n):
            i = (index + step) % n
            if i in bad:
                continue
            path = domain.paths[i]
            try:
                return path, domain.load(i)
            except UnreadableImageError as exc:
                bad.add(i)  # warn once per file (per process) and never retry it
                logger.warning(
                    "domain %s: skipping unreadable image %s (%s); using the next image instead",
                    domain.name, path, exc.reason,
                )
        raise DataError(
            f"domain {domain.name}: none of the {n:,} images in {domain.folder} could be "
            "decoded; check the files (e.g. re-export them as PNG or JPEG)"
        )

    def _augment(self, image: np.ndarray, seq: np.random.SeedSequence) -> torch.Tensor:
        # Compose.set_random_state shares ONE numpy and ONE python stream across all
        # steps. (Compose.set_random_seed would give every step its own identically
        # seeded stream, making the flip decision equal to the crop's first draw.)
        np_seq, py_seq = seq.spawn(2)
        py_seed = int(py_seq.generate_state(1, np.uint64)[0])
        self.transform.set_random_state(np.random.default_rng(np_seq), random.Random(py_seed))
        return self.transform(image=image)["image"]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = self._parse_key(key)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for dataset of {len(self)} samples")
        n_a, n_b = len(self.domain_a), len(self.domain_b)
        if self.serial:
            index_b = index % n_b
        else:
            rng = np.random.default_rng(seed_sequence(self.seed, epoch, index, _STREAM_B_CHOICE))
            index_b = int(rng.integers(n_b))
        path_a, image_a = self._load(self.domain_a, index % n_a)
        path_b, image_b = self._load(self.domain_b, index_b)
        return {
            "A": self._augment(image_a, seed_sequence(self.seed, epoch, index, _STREAM_A_AUG)),
            "B": self._augment(image_b, seed_sequence(self.seed, epoch, index, _STREAM_B_AUG)),
            "A_path": str(path_a),
            "B_path": str(path_b),
        }

    def summary(self) -> str:
        cfg = self.cfg
        if cfg.preprocess == "none":
            sizes = "original size"
        elif cfg.preprocess == "crop":
            sizes = f"crop {cfg.crop_size}"
        elif cfg.preprocess == "scale_width":
            sizes = f"load {cfg.load_size}"
        else:
            sizes = f"load {cfg.load_size}, crop {cfg.crop_size}"
        return "\n".join(
            [
                self.domain_a.summary(),
                self.domain_b.summary(),
                f"{len(self):,} samples per epoch (max of A and B); B "
                f"{'paired by index (serial)' if self.serial else 'drawn at random'}; "
                f"preprocess {cfg.preprocess} ({sizes}), flip {'on' if cfg.flip else 'off'}, "
                f"{'RGB' if cfg.channels == 3 else 'grayscale'}",
            ]
        )


# ------------------------------------------------------------------------- sampler


class EpochSampler(torch.utils.data.Sampler):
    """Yields ``(epoch, index)`` keys: a per-epoch permutation, sharded across ranks.

    Like ``DistributedSampler``: the permutation (seeded by ``(seed, epoch)``; identity
    without shuffle) is padded by repetition to a multiple of ``world_size`` and rank r
    takes ``r::world_size``. ``set_epoch(epoch, start)`` skips the first ``start`` of
    this rank's samples, to resume mid-epoch.
    """

    def __init__(
        self, n: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1
    ) -> None:
        if n < 0:
            raise ValueError(f"n must be >= 0; got {n}")
        if world_size < 1:
            raise ValueError(f"world_size must be >= 1; got {world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0..{world_size - 1}; got {rank}")
        self.n = n
        self.seed = int(seed)
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0

    @property
    def per_rank(self) -> int:
        """Samples per rank in a full epoch (after padding)."""
        return math.ceil(self.n / self.world_size)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        if not 0 <= start <= self.per_rank:
            raise ValueError(f"start must be in 0..{self.per_rank} (samples per rank); got {start}")
        self.epoch = int(epoch)
        self.start = int(start)

    def _indices(self) -> list[int]:
        if self.shuffle:
            rng = np.random.default_rng([self.seed & _U64, self.epoch & _U64])
            order = rng.permutation(self.n).tolist()
        else:
            order = list(range(self.n))
        total = self.per_rank * self.world_size
        while order and len(order) < total:  # pad by repeating, as DistributedSampler does
            order += order[: total - len(order)]
        return order[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self._indices()[self.start :]:
            yield self.epoch, index

    def __len__(self) -> int:
        return self.per_rank - self.start
