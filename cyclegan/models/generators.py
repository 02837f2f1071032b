"""The image-to-image generators of CycleGAN and pix2pix: the ResNet generator (Johnson, Alahi,
Fei-Fei, "Perceptual Losses for Real-Time Style Transfer and Super-Resolution", ECCV 2016,
arXiv:1603.08155) and the U-Net (Ronneberger, Fischer, Brox, MICCAI 2015, arXiv:1505.04597) as
pix2pix uses it, laid out like the original release's ``models/networks.py`` so that parameter
names match."""

from __future__ import annotations

import torch
from torch import nn

from cyclegan.models.normalization import conv_bias, get_norm_layer

PADDING_TYPES: tuple[str, ...] = ("reflect", "replicate", "zero")


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
        use_bias = conv_bias(norm)

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
        use_bias = conv_bias(norm)
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
