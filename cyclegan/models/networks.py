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

This module only builds modules; weight initialisation lives elsewhere.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import partial

import torch
from torch import nn
from torch.nn.modules.instancenorm import _InstanceNorm

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
    "strip_running_stats",
    "DCGANGenerator",
    "DCGANDiscriminator",
    "MLPGenerator",
    "MLPDiscriminator",
    "LATENT_GENERATORS",
    "LATENT_DISCRIMINATORS",
    "build_latent_generator",
    "build_latent_discriminator",
]

NormFactory = Callable[[int], nn.Module]

NORM_LAYERS: tuple[str, ...] = ("instance", "batch", "none")
PADDING_TYPES: tuple[str, ...] = ("reflect", "replicate", "zero")


def get_norm_layer(norm: str) -> NormFactory:
    """Return a factory ``num_features -> nn.Module`` for the named normalization.

    * ``"instance"``: :class:`~torch.nn.InstanceNorm2d` without affine
      parameters and without running statistics (as in the original release).
    * ``"batch"``: :class:`~torch.nn.BatchNorm2d` with affine parameters and
      running statistics.
    * ``"none"``: :class:`~torch.nn.Identity`, kept as a module so that
      ``nn.Sequential`` indices (and hence parameter names) do not shift.
    """
    if norm == "instance":
        return partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if norm == "batch":
        return partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if norm == "none":
        return lambda num_features: nn.Identity()
    raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORM_LAYERS)}")


def _use_bias(norm: str) -> bool:
    """Whether convolutions followed by ``norm`` carry a bias.

    BatchNorm's affine shift makes a conv bias redundant, so it is dropped (as
    in the original). InstanceNorm here has no affine parameters and the
    original keeps the bias; with no norm a bias is needed.
    """
    get_norm_layer(norm)  # validate the name
    return norm != "batch"


def _check_padding_type(padding_type: str) -> None:
    if padding_type not in PADDING_TYPES:
        raise ValueError(
            f"unknown padding_type {padding_type!r}; choose one of {', '.join(PADDING_TYPES)}"
        )


# --------------------------------------------------------------------------- #
# ResNet generator (Johnson et al. 2016, as used by CycleGAN)
# --------------------------------------------------------------------------- #


class ResnetBlock(nn.Module):
    """Residual block ``x + conv_block(x)`` with two 3x3 convolutions (He et al. 2016).

    ``conv_block`` is laid out as in the original: ``[pad], conv, norm, ReLU,
    [Dropout(0.5)], [pad], conv, norm``; the pad modules are absent for
    ``padding_type="zero"`` (the convs pad instead), and the dropout shifts the
    indices of the second half, exactly as in the original.
    """

    def __init__(
        self,
        dim: int,
        padding_type: str = "reflect",
        norm: str = "instance",
        use_dropout: bool = False,
        use_bias: bool = True,
    ) -> None:
        super().__init__()
        _check_padding_type(padding_type)
        norm_layer = get_norm_layer(norm)
        self.conv_block = nn.Sequential(
            *self._padded_conv(dim, padding_type, use_bias),
            norm_layer(dim),
            nn.ReLU(inplace=True),
            *([nn.Dropout(0.5)] if use_dropout else []),
            *self._padded_conv(dim, padding_type, use_bias),
            norm_layer(dim),
        )

    @staticmethod
    def _padded_conv(dim: int, padding_type: str, use_bias: bool) -> list[nn.Module]:
        if padding_type == "reflect":
            return [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, padding=0, bias=use_bias)]
        if padding_type == "replicate":
            return [nn.ReplicationPad2d(1), nn.Conv2d(dim, dim, 3, padding=0, bias=use_bias)]
        return [nn.Conv2d(dim, dim, 3, padding=1, bias=use_bias)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """ResNet-based generator of CycleGAN (Johnson et al. 2016 architecture).

    c7s1-ngf, two stride-2 downsampling convs, ``n_blocks`` residual blocks,
    two stride-2 transposed convs, c7s1-output_nc and Tanh, all in
    ``self.model`` (an ``nn.Sequential`` numbered like the original).
    Inputs whose height and width are multiples of 4 come out the same size.
    """

    n_downsampling = 2

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        ngf: int = 64,
        norm: str = "instance",
        use_dropout: bool = False,
        n_blocks: int = 9,
        padding_type: str = "reflect",
    ) -> None:
        super().__init__()
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
        _check_padding_type(padding_type)
        norm_layer = get_norm_layer(norm)
        use_bias = _use_bias(norm)

        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=use_bias),
            norm_layer(ngf),
            nn.ReLU(inplace=True),
        ]
        for i in range(self.n_downsampling):
            c = ngf * 2**i
            layers += [
                nn.Conv2d(c, c * 2, kernel_size=3, stride=2, padding=1, bias=use_bias),
                norm_layer(c * 2),
                nn.ReLU(inplace=True),
            ]
        dim = ngf * 2**self.n_downsampling
        layers += [
            ResnetBlock(dim, padding_type, norm, use_dropout=use_dropout, use_bias=use_bias)
            for _ in range(n_blocks)
        ]
        for i in range(self.n_downsampling):
            c = ngf * 2 ** (self.n_downsampling - i)
            layers += [
                nn.ConvTranspose2d(
                    c, c // 2, kernel_size=3, stride=2, padding=1, output_padding=1, bias=use_bias
                ),
                norm_layer(c // 2),
                nn.ReLU(inplace=True),
            ]
        layers += [
            nn.ReflectionPad2d(3),
            nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0),
            nn.Tanh(),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


# --------------------------------------------------------------------------- #
# U-Net generator (pix2pix)
# --------------------------------------------------------------------------- #


class UnetSkipConnectionBlock(nn.Module):
    """One level of the pix2pix U-Net: ``down -> submodule -> up`` plus a skip.

    Layout of ``self.model`` (as in the original):

    * outermost: ``downconv, submodule, ReLU, upconv, Tanh`` (no skip);
    * innermost: ``LeakyReLU, downconv, ReLU, upconv, upnorm``;
    * middle: ``LeakyReLU, downconv, downnorm, submodule, ReLU, upconv, upnorm,
      [Dropout(0.5)]``.

    Non-outermost blocks return ``cat([x, model(x)], dim=1)``. (In the
    original the leading LeakyReLU runs in place, so the skip carries
    ``LeakyReLU(x)``; the parent's up path starts with ReLU and
    ``ReLU(LeakyReLU(x)) == ReLU(x)``, so outputs and gradients are the same and
    the input is left untouched here.)
    """

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        input_nc: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
        norm: str = "instance",
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        if outermost and innermost:
            raise ValueError("a block cannot be both outermost and innermost")
        if submodule is None and not innermost:
            raise ValueError("only the innermost block may have no submodule")
        self.outermost = outermost
        norm_layer = get_norm_layer(norm)
        use_bias = _use_bias(norm)
        if input_nc is None:
            input_nc = outer_nc

        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
        downrelu = nn.LeakyReLU(0.2)
        uprelu = nn.ReLU(inplace=True)

        layers: list[nn.Module]
        if outermost:
            assert submodule is not None
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            layers = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(
                inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias
            )
            layers = [downrelu, downconv, uprelu, upconv, norm_layer(outer_nc)]
        else:
            assert submodule is not None
            upconv = nn.ConvTranspose2d(
                inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias
            )
            layers = [downrelu, downconv, norm_layer(inner_nc), submodule]
            layers += [uprelu, upconv, norm_layer(outer_nc)]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], dim=1)


class UnetGenerator(nn.Module):
    """pix2pix U-Net generator with ``num_downs`` stride-2 levels.

    ``num_downs=7`` is ``unet_128`` and ``num_downs=8`` is ``unet_256``; input
    height and width must be divisible by ``2**num_downs``. Dropout (if
    enabled) sits in the ``num_downs - 5`` innermost ``ngf*8`` middle blocks.
    """

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        num_downs: int,
        ngf: int = 64,
        norm: str = "instance",
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"num_downs must be >= 5, got {num_downs}")
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(
                ngf * 8, ngf * 8, submodule=block, norm=norm, use_dropout=use_dropout
            )
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm=norm)
        self.model = UnetSkipConnectionBlock(
            output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, norm=norm
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


# --------------------------------------------------------------------------- #
# Discriminators (PatchGAN, pix2pix)
# --------------------------------------------------------------------------- #


class NLayerDiscriminator(nn.Module):
    """PatchGAN discriminator (Isola et al. 2017) with ``n_layers`` stride-2 convs.

    Outputs a map of real/fake logits, one per overlapping input patch;
    ``n_layers=3`` gives the 70x70 PatchGAN used by CycleGAN and pix2pix.
    """

    def __init__(
        self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "instance"
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        norm_layer = get_norm_layer(norm)
        use_bias = _use_bias(norm)
        kw, padw = 4, 1

        layers: list[nn.Module] = [
            nn.Conv2d(input_nc, ndf, kernel_size=kw, stride=2, padding=padw),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1  # the last of these convs keeps the size
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, kw, stride=stride, padding=padw, bias=use_bias),
                norm_layer(ndf * mult),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, kernel_size=kw, stride=1, padding=padw))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN ("PixelGAN", Isola et al. 2017): classifies every pixel."""

    def __init__(self, input_nc: int, ndf: int = 64, norm: str = "instance") -> None:
        super().__init__()
        norm_layer = get_norm_layer(norm)
        use_bias = _use_bias(norm)
        self.net = nn.Sequential(
            nn.Conv2d(input_nc, ndf, kernel_size=1, stride=1, padding=0),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, kernel_size=1, stride=1, padding=0, bias=use_bias),
            norm_layer(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            # The original also drops this bias under batch norm; kept for weight compatibility.
            nn.Conv2d(ndf * 2, 1, kernel_size=1, stride=1, padding=0, bias=use_bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# --------------------------------------------------------------------------- #
# Registries
# --------------------------------------------------------------------------- #

#: ``builder(input_nc, output_nc, *, ngf, norm, use_dropout) -> nn.Module``
GeneratorBuilder = Callable[..., nn.Module]
#: ``builder(input_nc, *, ndf, n_layers, norm) -> nn.Module``
DiscriminatorBuilder = Callable[..., nn.Module]

GENERATORS: dict[str, GeneratorBuilder] = {
    "resnet_9blocks": partial(ResnetGenerator, n_blocks=9),
    "resnet_6blocks": partial(ResnetGenerator, n_blocks=6),
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


def add_spectral_norm(net: nn.Module) -> nn.Module:
    """Spectral normalisation (Miyato et al. 2018) on every conv and linear layer of ``net``, in
    place: each weight is divided by its largest singular value (one power iteration per forward),
    bounding D's Lipschitz constant. Call after weight init; state dicts then hold
    ``parametrizations.weight.original`` and the power-iteration vectors."""
    from torch.nn.utils.parametrizations import spectral_norm

    for module in list(net.modules()):
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            spectral_norm(module)
    return net


# --------------------------------------------------------------------------- #
# Checkpoint compatibility
# --------------------------------------------------------------------------- #

_RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")


def strip_running_stats(
    state_dict: Mapping[str, torch.Tensor], model: nn.Module
) -> dict[str, torch.Tensor]:
    """Return a copy of ``state_dict`` without stale InstanceNorm running statistics.

    Checkpoints saved with PyTorch < 0.4 carry ``running_mean``/``running_var``
    (and sometimes ``num_batches_tracked``) for InstanceNorm layers, which no
    longer track them; the original release patches them out in
    ``__patch_instance_norm_state_dict``. Only entries of InstanceNorm layers
    of ``model`` without running stats are removed; BatchNorm (and
    InstanceNorm with ``track_running_stats=True``) entries are kept. The
    input is not modified; its ``_metadata`` (if any) is carried over.
    """
    drop = {
        f"{prefix}.{stat}" if prefix else stat
        for prefix, module in model.named_modules()
        if isinstance(module, _InstanceNorm) and not module.track_running_stats
        for stat in _RUNNING_STATS
    }
    out: dict[str, torch.Tensor] = OrderedDict(
        (k, v) for k, v in state_dict.items() if k not in drop
    )
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        out._metadata = metadata  # type: ignore[attr-defined]
    return out


# --------------------------------------------------------------------------- #
# Noise -> image networks (unconditional GANs on MNIST-format data)
# --------------------------------------------------------------------------- #
#
# These map a latent vector z to an image (and an image to one logit), so they
# have their own registries: the image-to-image builders above take
# (input_nc, output_nc) and are what ``cyclegan train --netG`` offers.


def _check_latent_size(image_size: int) -> None:
    if image_size < 4 or image_size % 4:
        raise ValueError(
            f"image_size must be a multiple of 4 and at least 4 (two stride-2 layers), got {image_size}"
        )


class DCGANGenerator(nn.Module):
    """DCGAN generator (Radford, Metz, Chintala 2016, arXiv:1511.06434) for small images.

    ``z (N, z_dim) -> (N, channels, S, S)`` in [-1, 1], S = ``image_size`` (28 for
    MNIST), all transposed convolutions, BatchNorm + ReLU between them, Tanh at the end:

    * ConvT(z_dim -> 4 ngf, kernel S/4): project z to a (4 ngf, S/4, S/4) map (7x7);
    * ConvT(4 ngf -> 2 ngf, 4, stride 2, pad 1): S/2 (14x14);
    * ConvT(2 ngf -> ngf, 4, stride 2, pad 1): S (28x28);
    * ConvT(ngf -> channels, 3, stride 1, pad 1) and Tanh.
    """

    def __init__(self, z_dim: int = 100, channels: int = 1, image_size: int = 28, ngf: int = 64) -> None:
        super().__init__()
        _check_latent_size(image_size)
        self.z_dim = z_dim
        self.net = nn.Sequential(
            nn.ConvTranspose2d(z_dim, ngf * 4, image_size // 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, channels, 3, 1, 1),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.reshape(z.shape[0], self.z_dim, 1, 1))


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator for small images: ``(N, channels, S, S) -> (N,)`` raw logits.

    Conv(channels -> ndf, 4, 2, 1) + LeakyReLU(0.2) -> Conv(ndf -> 2 ndf, 4, 2, 1) + norm +
    LeakyReLU(0.2) -> Conv(2 ndf -> 1, kernel S/4): one logit per image. No sigmoid: the
    losses of :mod:`cyclegan.models.gan` take logits, and a WGAN critic must not squash its output.
    ``norm="none"`` is required for WGAN-GP, whose penalty is per sample (BatchNorm mixes
    samples of a batch).
    """

    def __init__(self, channels: int = 1, image_size: int = 28, ndf: int = 64, norm: str = "batch") -> None:
        super().__init__()
        _check_latent_size(image_size)
        norm_layer = get_norm_layer(norm)
        self.net = nn.Sequential(
            nn.Conv2d(channels, ndf, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=_use_bias(norm)),
            norm_layer(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, 1, image_size // 4, 1, 0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


class MLPGenerator(nn.Module):
    """Fully connected generator after Goodfellow et al. 2014 ("Generative Adversarial Nets",
    arXiv:1406.2661): z -> 4 ngf -> 8 ngf -> 16 ngf (ReLU) -> channels*S*S (Tanh, so images
    are in [-1, 1] like the convolutional pair; the paper used a sigmoid on [0, 1] data)."""

    def __init__(self, z_dim: int = 100, channels: int = 1, image_size: int = 28, ngf: int = 64) -> None:
        super().__init__()
        self.shape = (channels, image_size, image_size)
        width = [z_dim, ngf * 4, ngf * 8, ngf * 16]
        layers: list[nn.Module] = []
        for a, b in zip(width, width[1:]):
            layers += [nn.Linear(a, b), nn.ReLU(True)]
        layers += [nn.Linear(width[-1], channels * image_size * image_size), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.reshape(z.shape[0], -1)).view(z.shape[0], *self.shape)


class MLPDiscriminator(nn.Module):
    """Fully connected discriminator after Goodfellow et al. 2014: channels*S*S -> 8 ndf ->
    4 ndf (LeakyReLU(0.2) instead of the paper's maxout units) -> 1 logit per image.
    ``norm="batch"`` adds BatchNorm1d after the second layer; ``"none"`` (the paper) does not."""

    def __init__(self, channels: int = 1, image_size: int = 28, ndf: int = 64, norm: str = "none") -> None:
        super().__init__()
        if norm not in ("none", "batch"):
            raise ValueError(f"the mlp discriminator supports norm 'none' or 'batch', got {norm!r}")
        self.net = nn.Sequential(
            nn.Linear(channels * image_size * image_size, ndf * 8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(ndf * 8, ndf * 4, bias=norm != "batch"),
            nn.BatchNorm1d(ndf * 4) if norm == "batch" else nn.Identity(),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(ndf * 4, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).flatten()


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
