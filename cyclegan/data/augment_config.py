"""What the training data pipeline does to an image (resize, crop, flip), as a config;
importable without albumentations (cyclegan.data.transforms builds the pipeline)."""

from __future__ import annotations

from dataclasses import dataclass
# Discovery and decoding live in .images (shared with inference); re-exported here.

__all__ = ["PREPROCESS_MODES", "AugmentConfig"]


PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")

SIZE_MULTIPLE = 4  # the ResNet generator downsamples twice by 2, so sides must divide by 4


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class AugmentConfig:
    """How training images are resized, cropped and flipped (see ``build_transform``)."""

    preprocess: str = "resize_and_crop"
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    channels: int = 3  # 1 (grayscale) or 3 (RGB)

    def __post_init__(self) -> None:
        if self.preprocess not in PREPROCESS_MODES:
            raise ValueError(
                f"preprocess must be one of {', '.join(PREPROCESS_MODES)}; got {self.preprocess!r}"
            )
        for field in ("load_size", "crop_size"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < SIZE_MULTIPLE:
                raise ValueError(f"{field} must be an integer >= {SIZE_MULTIPLE}; got {value!r}")
        if isinstance(self.channels, bool) or self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB); got {self.channels!r}")
        if not isinstance(self.flip, bool):
            raise ValueError(f"flip must be True or False; got {self.flip!r}")
