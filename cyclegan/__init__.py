"""cyclegan: unpaired image-to-image translation (CycleGAN) and an unconditional MNIST GAN,
built on one shared GAN base (:mod:`cyclegan.models.gan`).

The public Python API, imported on first use so that ``import cyclegan`` stays fast::

    from cyclegan import Translator, translate_folder, translate_video, train, LatentSampler
    translator = Translator.from_pretrained("runs/horse2zebra", direction="AtoB")
    zebra = translator(PIL.Image.open("horse.jpg"))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> module that defines it
_API = {
    "Translator": "cyclegan.inference.translator",
    "load_generator": "cyclegan.inference.loading",
    "translate_folder": "cyclegan.inference.folder",
    "translate_video": "cyclegan.inference.video",
    "LatentSampler": "cyclegan.inference.mnist_sampler",
    "push_to_hub": "cyclegan.inference.publish",
    "train": "cyclegan.training.run",
    "CycleGANConfig": "cyclegan.models.cyclegan",
}

__all__ = ["__version__", *_API]

if TYPE_CHECKING:
    from cyclegan.inference.folder import translate_folder
    from cyclegan.inference.publish import push_to_hub
    from cyclegan.inference.loading import load_generator
    from cyclegan.inference.mnist_sampler import LatentSampler
    from cyclegan.inference.translator import Translator
    from cyclegan.inference.video import translate_video
    from cyclegan.models.cyclegan import CycleGANConfig
    from cyclegan.training.run import train


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'cyclegan' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
