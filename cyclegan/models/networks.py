"""Generator and discriminator networks of CycleGAN and pix2pix, and the noise -> image
networks of the unconditional GANs (DCGAN and the original GAN paper's MLP pair).

The modules reproduce the networks of the original PyTorch release
(junyanz/pytorch-CycleGAN-and-pix2pix, ``models/networks.py``) with identical
parameter names and shapes, so published checkpoints load with
``load_state_dict(strict=True)`` (after :func:`strip_running_stats` for old
checkpoints that still carry InstanceNorm running statistics).

References:
    * CycleGAN: Zhu, Park, Isola, Efros, "Unpaired Image-to-Image Translation
      using Cycle-Consistent Adversarial Networks", ICCV 2017, arXiv:1703.10593.
    * pix2pix: Isola, Zhu, Zhou, Efros, "Image-to-Image Translation with
      Conditional Adversarial Networks", CVPR 2017, arXiv:1611.07004.
    * ResNet generator: Johnson, Alahi, Fei-Fei, "Perceptual Losses for
      Real-Time Style Transfer and Super-Resolution", ECCV 2016, arXiv:1603.08155.
    * U-Net: Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for
      Biomedical Image Segmentation", MICCAI 2015, arXiv:1505.04597.
    * Instance normalization: Ulyanov, Vedaldi, Lempitsky, "Instance
      Normalization: The Missing Ingredient for Fast Stylization",
      arXiv:1607.08022.

This module is the registry callers import: the networks themselves live in
:mod:`~cyclegan.models.generators`, :mod:`~cyclegan.models.discriminators`,
:mod:`~cyclegan.models.latent_networks` and :mod:`~cyclegan.models.normalization`.
It only builds modules; weight initialisation lives elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from cyclegan.models.discriminators import NLayerDiscriminator, PixelDiscriminator
from cyclegan.models.generators import (
    PADDING_TYPES,
    ResnetBlock,
    ResnetGenerator,
    UnetGenerator,
    UnetSkipConnectionBlock,
)
from cyclegan.models.latent_networks import (
    DCGANDiscriminator,
    DCGANGenerator,
    MLPDiscriminator,
    MLPGenerator,
)
from cyclegan.models.normalization import (
    NORM_LAYERS,
    add_spectral_norm,
    fill_batch_counts,
    get_norm_layer,
    strip_running_stats,
)

__all__ = [
    "NORM_LAYERS",
    "PADDING_TYPES",
    "GENERATORS",
    "DISCRIMINATORS",
    "get_norm_layer",
    "ResnetBlock",
    "ResnetGenerator",
    "UnetSkipConnectionBlock",
    "UnetGenerator",
    "NLayerDiscriminator",
    "PixelDiscriminator",
    "build_generator",
    "build_discriminator",
    "add_spectral_norm",
    "strip_running_stats",
    "fill_batch_counts",
    "DCGANGenerator",
    "DCGANDiscriminator",
    "MLPGenerator",
    "MLPDiscriminator",
    "LATENT_GENERATORS",
    "LATENT_DISCRIMINATORS",
    "build_latent_generator",
    "build_latent_discriminator",
]

#: ``builder(input_nc, output_nc, *, ngf, norm, use_dropout) -> nn.Module``
GeneratorBuilder = Callable[..., nn.Module]
#: ``builder(input_nc, *, ndf, n_layers, norm) -> nn.Module``
DiscriminatorBuilder = Callable[..., nn.Module]

GENERATORS: dict[str, GeneratorBuilder] = {
    "resnet_9blocks": partial(ResnetGenerator, n_blocks=9),
    "resnet_6blocks": partial(ResnetGenerator, n_blocks=6),
    "unet_32": partial(UnetGenerator, num_downs=5),   # pix2pix at small sizes (the offline demo)
    "unet_64": partial(UnetGenerator, num_downs=6),
    "unet_128": partial(UnetGenerator, num_downs=7),
    "unet_256": partial(UnetGenerator, num_downs=8),
}

DISCRIMINATORS: dict[str, DiscriminatorBuilder] = {
    "basic": lambda input_nc, *, ndf, n_layers, norm: NLayerDiscriminator(input_nc, ndf, 3, norm),
    "n_layers": lambda input_nc, *, ndf, n_layers, norm: NLayerDiscriminator(
        input_nc, ndf, n_layers, norm
    ),
    "pixel": lambda input_nc, *, ndf, n_layers, norm: PixelDiscriminator(input_nc, ndf, norm),
}


def build_generator(
    name: str,
    input_nc: int,
    output_nc: int,
    ngf: int = 64,
    norm: str = "instance",
    use_dropout: bool = False,
) -> nn.Module:
    """Build the generator registered as ``name`` in :data:`GENERATORS`."""
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; choose one of {', '.join(GENERATORS)}")
    return GENERATORS[name](input_nc, output_nc, ngf=ngf, norm=norm, use_dropout=use_dropout)


def build_discriminator(
    name: str,
    input_nc: int,
    ndf: int = 64,
    n_layers: int = 3,
    norm: str = "instance",
) -> nn.Module:
    """Build the discriminator registered as ``name`` in :data:`DISCRIMINATORS`.

    ``n_layers`` is only used by ``"n_layers"``; ``"basic"`` is always 3 layers.
    """
    if name not in DISCRIMINATORS:
        raise ValueError(
            f"unknown discriminator {name!r}; choose one of {', '.join(DISCRIMINATORS)}"
        )
    return DISCRIMINATORS[name](input_nc, ndf=ndf, n_layers=n_layers, norm=norm)


#: ``builder(z_dim, channels, image_size, *, ngf) -> nn.Module`` mapping (N, z_dim) to images
LATENT_GENERATORS: dict[str, Callable[..., nn.Module]] = {
    "dcgan": DCGANGenerator,
    "mlp": MLPGenerator,
}

#: ``builder(channels, image_size, *, ndf, norm) -> nn.Module`` mapping images to (N,) logits
LATENT_DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {
    "dcgan": DCGANDiscriminator,
    "mlp": MLPDiscriminator,
}


def build_latent_generator(name: str, z_dim: int, channels: int, image_size: int, ngf: int = 64) -> nn.Module:
    """Build the noise -> image generator registered as ``name`` in :data:`LATENT_GENERATORS`."""
    if name not in LATENT_GENERATORS:
        raise ValueError(f"unknown generator {name!r}; choose one of {', '.join(LATENT_GENERATORS)}")
    return LATENT_GENERATORS[name](z_dim, channels, image_size, ngf=ngf)


def build_latent_discriminator(name: str, channels: int, image_size: int, ndf: int = 64,
                               norm: str = "batch") -> nn.Module:
    """Build the image -> logit discriminator registered as ``name`` in :data:`LATENT_DISCRIMINATORS`."""
    if name not in LATENT_DISCRIMINATORS:
        raise ValueError(f"unknown discriminator {name!r}; choose one of {', '.join(LATENT_DISCRIMINATORS)}")
    return LATENT_DISCRIMINATORS[name](channels, image_size, ndf=ndf, norm=norm)


def check_image_model(cfg, nonnegative: tuple[str, ...] = ()) -> None:
    """The checks every image-translation config shares (CycleGAN, CUT, pix2pix): its direction
    where it has one, the network names, the GAN loss, weights that must not be negative, the EMA
    decay. ValueError naming the field."""
    from dataclasses import fields

    from cyclegan.models.losses import make_loss

    # numbers stored in a file (a resumed checkpoint) have the types the flags give: "64" or
    # [64] for ngf is refused here, not a TypeError deep in a network's constructor
    for f in fields(cfg):
        value, default = getattr(cfg, f.name), f.default
        if type(default) in (int, float) and (isinstance(value, bool) or not isinstance(
                value, (int,) if type(default) is int else (int, float))):
            raise ValueError(f"{f.name} must be {'an integer' if type(default) is int else 'a number'}, "
                             f"got {repr(value)[:40]}")
    if getattr(cfg, "direction", "AtoB") not in ("AtoB", "BtoA"):
        raise ValueError(f"--direction must be AtoB or BtoA, got {cfg.direction!r}")
    if not isinstance(cfg.netG, str) or cfg.netG not in GENERATORS:
        raise ValueError(f"unknown generator {cfg.netG!r}; choose one of: {', '.join(GENERATORS)}")
    if not isinstance(cfg.netD, str) or cfg.netD not in DISCRIMINATORS:
        raise ValueError(f"unknown discriminator {cfg.netD!r}; choose one of: {', '.join(DISCRIMINATORS)}")
    make_loss(cfg.gan_mode)
    for name in nonnegative:
        if getattr(cfg, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise ValueError(f"ema_decay must be in [0, 1) (0 turns the EMA off), got {cfg.ema_decay}")
