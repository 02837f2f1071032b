"""Decoding what a user uploads into an image the model can take, and images for display."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
import numpy as np
from PIL import Image

from cyclegan.data.images import DataError, UnreadableImageError, load_image
from cyclegan.app.settings import UserError

__all__ = ["read_upload"]


# --------------------------------------------------------------------------------------------
# Images in and out
# --------------------------------------------------------------------------------------------


NO_IMAGE = "No image yet: upload one, paste one, take one with the webcam, or click an example."


def megapixels(n: int) -> str:
    return f"{n / 1e6:.1f} MP"


def read_upload(path: str | os.PathLike | None, channels: int, *, max_input_pixels: int,
                max_pixels: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Decode an uploaded file to uint8 HxWxC (C = ``channels``), EXIF-oriented, any mode (grayscale,
    RGBA onto white, CMYK, 16-bit, palette). Refuses non-images and images over
    ``max_input_pixels`` before decoding them; images over ``max_pixels`` are downscaled (aspect
    kept), with a note saying so. Returns (image, notes)."""
    if path is None or str(path) == "":
        raise UserError(NO_IMAGE)
    path = Path(path)
    if not path.is_file():
        raise UserError("The uploaded file is gone (uploads expire after a while); please upload it again.")
    name = path.name
    if path.stat().st_size == 0:
        raise UserError(f"{name} is empty (0 bytes); please upload an image file.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:  # reads the header only
                width, height = img.size
    except Image.DecompressionBombError:
        raise UserError(f"{name} is far too large to decode safely; downscale it below "
                        f"{megapixels(max_input_pixels)} and try again.") from None
    except Exception:
        raise UserError(f"{name} is not an image this app can read; upload a PNG, JPEG, WebP, BMP, TIFF or GIF "
                        "file.") from None
    if width * height > max_input_pixels:
        raise UserError(f"{name} is {width}x{height} ({megapixels(width * height)}); this app accepts images up "
                        f"to {megapixels(max_input_pixels)}. Please downscale it and try again.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = load_image(path, channels)
    except UnreadableImageError as e:
        raise UserError(f"{name} could not be decoded ({e.reason}); is the file complete?") from None
    notes: list[str] = []
    h, w = image.shape[:2]
    if max_pixels and h * w > max_pixels:
        scale = math.sqrt(max_pixels / (h * w))
        nw, nh = max(1, int(w * scale)), max(1, int(h * scale))
        pil = Image.fromarray(image[:, :, 0] if channels == 1 else image)
        image = np.asarray(pil.resize((nw, nh), Image.Resampling.LANCZOS))
        image = image[:, :, None] if image.ndim == 2 else image
        notes.append(f"The image ({w}x{h}) was downscaled to {nw}x{nh} for full-resolution translation "
                     f"(limit {megapixels(max_pixels)}, set with --max-pixels).")
    return image, notes


def colour_note(path: str | os.PathLike, input_channels: int) -> str | None:
    """A note when a colour image goes to a grayscale model (an image whose three channels are
    equal is gray already and gets none)."""
    if input_channels != 1:
        return None
    try:
        rgb = load_image(path, 3)
    except DataError:
        return None  # reading the upload for the model reports that
    if np.array_equal(rgb[:, :, 0], rgb[:, :, 1]) and np.array_equal(rgb[:, :, 1], rgb[:, :, 2]):
        return None
    return (f"{Path(path).name} is a colour image and this model is grayscale: it was translated as gray, and the "
            "result is gray. Choose a colour model to keep the colours.")


def to_image(array: np.ndarray) -> Image.Image:
    """uint8 HxWx1 or HxWx3 -> a PIL image (mode L or RGB)."""
    return Image.fromarray(array[:, :, 0], "L") if array.shape[2] == 1 else Image.fromarray(array, "RGB")


def enlarge(image: Image.Image, target: int = 512) -> Image.Image:
    """Small images blown up by a whole factor (nearest neighbour) so that the longest side is
    close to ``target``: a 32 px result is shown as crisp 512 px pixels, not a blurry thumbnail."""
    factor = target // max(image.size)
    if factor < 2:
        return image
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
