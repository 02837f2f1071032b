"""Image files on disk: discovery and robust decoding, shared by training and inference.

Kept apart from :mod:`cyclegan.data.unpaired` and :mod:`cyclegan.data.transforms` (training datasets, albumentations) so that
inference (:mod:`cyclegan.inference.translator`, the app) reads images exactly as training does without
importing the training data stack.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

__all__ = [
    "IMAGE_EXTENSIONS",
    "DataError",
    "UnreadableImageError",
    "find_images",
    "load_image",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class DataError(Exception):
    """A user-facing data problem; the message names the folder/file and says what to do."""


class UnreadableImageError(DataError):
    """An image file that cannot be decoded (corrupt, truncated, too large, ...)."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")


def find_images(folder: str | os.PathLike[str]) -> list[Path]:
    """All image files under ``folder`` (recursive, extension case-insensitive), sorted.

    Hidden files and folders (name starting with ".", e.g. macOS "._x.jpg" resource
    forks or ".ipynb_checkpoints") are ignored. Symlinked folders are followed once.
    """
    root = Path(folder).expanduser()
    if not root.exists():
        raise DataError(
            f"image folder {root} does not exist; check the path "
            "(the expected layout is DATAROOT/trainA and DATAROOT/trainB)"
        )
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; pass the folder that contains the images")

    found: list[Path] = []
    seen_dirs: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:  # symlink loop or the same folder linked twice
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(Path(dirpath) / name)
    # Sort on the path relative to root so order is stable whatever root is spelled as.
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


_truncation_lock = threading.Lock()


def decode_strictly(img: Image.Image) -> None:
    """``img.load()`` that raises on truncated data even if someone enabled
    ``ImageFile.LOAD_TRUNCATED_IMAGES`` (which would silently pad the image with grey)."""
    if not ImageFile.LOAD_TRUNCATED_IMAGES:  # the normal case: nothing to override
        img.load()
        return
    with _truncation_lock:
        saved = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            img.load()
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = saved


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _exif_transpose(img: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # malformed EXIF: keep the pixels as stored rather than drop the image
        return img


def _sixteen_bit_to_uint8(values: np.ndarray) -> np.ndarray:
    """Scale 0..65535 to 0..255 (rounded), so 16-bit images keep their contrast."""
    wide = np.clip(values.astype(np.int64), 0, 65535)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def _float_to_uint8(values: np.ndarray) -> np.ndarray:
    """Float images: 0..1 data is scaled by 255; anything else is taken as 0..255 and clipped."""
    arr = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    if arr.size and arr.min() >= 0.0 and arr.max() <= 1.0:
        arr = arr * 255.0
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info


def _to_array(img: Image.Image, channels: int) -> np.ndarray:
    """Convert any Pillow mode to an HxWxC uint8 array with ``channels`` channels."""
    gray: np.ndarray | None = None
    if img.mode.startswith("I;16") or img.mode == "I":
        gray = _sixteen_bit_to_uint8(np.asarray(img))
    elif img.mode == "F":
        gray = _float_to_uint8(np.asarray(img))
    if gray is not None:
        if channels == 3:
            return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
        return np.ascontiguousarray(gray[:, :, None])

    target = "L" if channels == 1 else "RGB"
    if _has_alpha(img):
        # Composite onto white: transparent areas would otherwise come out black.
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    arr = np.asarray(img.convert(target))  # also covers 1, L, P, CMYK, YCbCr, LAB, ...
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr)


def load_image(path: str | os.PathLike[str], channels: int) -> np.ndarray:
    """Decode an image file to an HxWxC uint8 array (C = ``channels``), EXIF-oriented.

    Raises :class:`UnreadableImageError` for corrupt, truncated or oversized files.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB); got {channels!r}")
    try:
        with Image.open(path) as img:
            decode_strictly(img)  # Image.open is lazy: decode now so truncation shows up here
            return _to_array(_exif_transpose(img), channels)
    except UnreadableImageError:
        raise
    except Exception as exc:  # Pillow signals bad files with many exception types
        raise UnreadableImageError(path, describe_error(exc)) from exc
