"""Noise -> image networks of the unconditional GANs on MNIST-format data: the DCGAN pair and the
original GAN paper's MLP pair. They map a latent vector z to an image (and an image to one logit),
so they have their own registries in :mod:`cyclegan.models.networks`: the image-to-image builders
take (input_nc, output_nc) and are what ``cyclegan train --netG`` offers."""

from __future__ import annotations

import torch
from torch import nn

from cyclegan.models.normalization import conv_bias, get_norm_layer


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
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=conv_bias(norm)),
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
