"""The image discriminators of CycleGAN and pix2pix (Isola, Zhu, Zhou, Efros, "Image-to-Image
Translation with Conditional Adversarial Networks", CVPR 2017, arXiv:1611.07004): the PatchGAN and
the per-pixel 1x1 PatchGAN, laid out like the original release so that parameter names match."""

from __future__ import annotations

import torch
from torch import nn

from cyclegan.models.normalization import conv_bias, get_norm_layer


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
        use_bias = conv_bias(norm)
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
        use_bias = conv_bias(norm)
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
