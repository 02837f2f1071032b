"""The training augmentation pipeline (albumentations), built from an :class:`AugmentConfig`.

Kept apart from :mod:`cyclegan.data.unpaired` so that only training imports albumentations: the
inference commands and the app start about 0.7 s sooner without it (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def _no_update_check() -> Iterator[None]:
    """albumentations phones home for a version check on import unless NO_ALBUMENTATIONS_UPDATE
    is set; a training job (often offline, on a cluster) should not do that or wait for its
    timeout. Set for the import only: the process's environment is left as it was."""
    before = os.environ.get("NO_ALBUMENTATIONS_UPDATE")
    os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ["NO_ALBUMENTATIONS_UPDATE"]
        else:
            os.environ["NO_ALBUMENTATIONS_UPDATE"] = before


with _no_update_check():
    import albumentations as A
    from albumentations.augmentations.geometric import functional as _fgeometric
    from albumentations.pytorch import ToTensorV2
import numpy as np  # noqa: E402

from cyclegan.data.augment_config import SIZE_MULTIPLE, AugmentConfig  # noqa: E402

__all__ = ["FitCrop", "MultipleOf4", "ScaleWidth", "build_transform"]

logger = logging.getLogger("cyclegan.data")

_BICUBIC = 2  # cv2.INTER_CUBIC; albumentations takes OpenCV interpolation flags


def _round_to_multiple(value: int, multiple: int = SIZE_MULTIPLE) -> int:
    return max(multiple, int(value / multiple + 0.5) * multiple)


class ScaleWidth(A.ImageOnlyTransform):
    """Resize so the width is ``width``, keeping aspect, but height at least ``min_height``
    (the original release's ``__scale_width``)."""

    def __init__(self, width: int, min_height: int, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.width = width
        self.min_height = min_height

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        h, w = img.shape[:2]
        new_h = int(max(self.width * h / w, self.min_height))
        return _fgeometric.resize(img, (new_h, self.width), interpolation=_BICUBIC)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("width", "min_height")


class FitCrop(A.ImageOnlyTransform):
    """Upscale (keeping aspect) an image whose shorter side is below ``size`` so a
    ``size`` x ``size`` crop fits. Logs once per instance; the dataset pre-warns for
    the whole dataset and sets ``warned`` so workers stay quiet."""

    def __init__(self, size: int, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.size = size
        self.warned = False

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        h, w = img.shape[:2]
        if min(h, w) >= self.size:
            return img
        if not self.warned:
            self.warned = True
            logger.warning(
                "image of %dx%d is smaller than crop_size %d; upscaling it (keeping aspect "
                "ratio) so the crop fits. Further small images are upscaled silently.",
                w, h, self.size,
            )
        scale = self.size / min(h, w)
        new_h = max(self.size, math.ceil(h * scale - 1e-9))
        new_w = max(self.size, math.ceil(w * scale - 1e-9))
        return _fgeometric.resize(img, (new_h, new_w), interpolation=_BICUBIC)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("size",)


class MultipleOf4(A.ImageOnlyTransform):
    """Resize each side to the nearest multiple of 4 (min 4); a no-op when already so."""

    def __init__(self, p: float = 1.0) -> None:
        super().__init__(p=p)

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        h, w = img.shape[:2]
        target = (_round_to_multiple(h), _round_to_multiple(w))
        if target == (h, w):
            return img
        return _fgeometric.resize(img, target, interpolation=_BICUBIC)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ()


def output_size(cfg: AugmentConfig, width: int, height: int) -> tuple[int, int] | None:
    """(height, width) that :func:`build_transform` makes of a ``width`` x ``height`` image, or
    None where every image comes out crop x crop."""
    if cfg.preprocess == "none":
        return _round_to_multiple(height), _round_to_multiple(width)
    if cfg.preprocess == "scale_width":
        load = cfg.load_size
        return _round_to_multiple(int(max(load * height / width, cfg.crop_size))), _round_to_multiple(load)
    return None


def build_transform(cfg: AugmentConfig, pair: str | None = None) -> A.Compose:
    """The augmentation pipeline: uint8 HxWxC image -> float32 CxHxW tensor in [-1, 1].

    ``pair``: the name of a second image target that gets the same resize, crop and flip as
    ``image`` (pix2pix's aligned pairs: ``transform(image=a, B=b)``); its channel count may differ.

    Mirrors the original release's ``get_transform`` (bicubic): resize/crop per
    ``cfg.preprocess``, sides rounded to a multiple of 4, optional horizontal flip,
    normalise with mean 0.5 / std 0.5. Randomness comes from the Compose's random
    state; set it per sample (``Compose.set_random_state``) for reproducible output.
    """
    load, crop = cfg.load_size, cfg.crop_size
    if cfg.preprocess in ("resize_and_crop", "scale_width_and_crop") and load < crop:
        logger.warning(
            "load_size %d is smaller than crop_size %d with preprocess %s; using load_size "
            "%d so the crop fits (set load_size >= crop_size to silence this)",
            load, crop, cfg.preprocess, crop,
        )
        load = crop

    steps: list[A.BasicTransform] = []
    if cfg.preprocess == "resize_and_crop":
        steps += [A.Resize(load, load, interpolation=_BICUBIC), A.RandomCrop(crop, crop)]
    elif cfg.preprocess == "crop":
        steps += [FitCrop(crop), A.RandomCrop(crop, crop)]
    elif cfg.preprocess == "scale_width":
        steps += [ScaleWidth(load, min_height=crop)]
    elif cfg.preprocess == "scale_width_and_crop":
        steps += [ScaleWidth(load, min_height=crop), A.RandomCrop(crop, crop)]
    steps.append(MultipleOf4())
    if cfg.flip:
        steps.append(A.HorizontalFlip(p=0.5))
    # a scalar mean and std (the same arithmetic) where the pair's channel counts may differ
    mean = 0.5 if pair else (0.5,) * cfg.channels
    steps += [A.Normalize(mean=mean, std=mean, max_pixel_value=255.0), ToTensorV2()]
    return A.Compose(steps, additional_targets={pair: "image"} if pair else None)
