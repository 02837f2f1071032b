"""pix2pix: paired image-to-image translation with a conditional GAN (Isola, Zhu, Zhou, Efros 2017,
"Image-to-Image Translation with Conditional Adversarial Networks", arXiv:1611.07004).

One generator G: X -> Y (a U-Net with batch norm and dropout by default), one conditional PatchGAN D
that judges the pair ``cat(x, y)`` (input_nc + output_nc channels), and an L1 term against the
ground truth y that every training pair carries (paper eq. 4):

    G* = arg min_G max_D  L_cGAN(G, D) + lambda_L1 * E[ ||y - G(x)||_1 ]

As CUT, the networks keep CycleGAN's names so that exports, ``cyclegan translate`` and the app need
nothing new: an A -> B model holds G_A (and D_A), a B -> A model G_B (and D_B).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cyclegan.models import networks
from cyclegan.models.gan import GANModel, StoredConfig, preview_row
from cyclegan.models.init import init_weights
from cyclegan.models.losses import gradient_penalty, make_loss

#: The reference code's recipe (its pix2pix_model.py and train options, aligned data): vanilla GAN
#: loss (BCE with logits), lambda_L1 100, U-Net 256 with batch norm and dropout, 70x70 PatchGAN,
#: no image pool, Adam 2e-4 with beta1 0.5, 100 + 100 epochs, batch 1, resize 286 and crop 256, flips.
PAPER_PIX2PIX = dict(netG="unet_256", netD="basic", n_layers_D=3, ngf=64, ndf=64, norm="batch", dropout=True,
                     init_type="normal", init_gain=0.02, gan_mode="vanilla", lambda_GAN=1.0, lambda_L1=100.0,
                     lr=2e-4, beta1=0.5, beta2=0.999, lr_policy="linear", n_epochs=100, n_epochs_decay=100,
                     lr_decay_iters=50, d_steps=1, lr_d=None, ema_decay=0.0, spectral_norm=False)
PAPER_PIX2PIX_TRAIN = dict(batch_size=1, size=256, load_size=None, preprocess="resize_and_crop", flip=True)
PRESETS = {"paper": (PAPER_PIX2PIX, PAPER_PIX2PIX_TRAIN)}


@dataclass
class Pix2PixConfig(StoredConfig):
    """A pix2pix model and its objective; stored in checkpoints and exports like
    :class:`~cyclegan.models.cyclegan.CycleGANConfig`. The defaults are the reference's recipe
    (:data:`PAPER_PIX2PIX`): the project's own choices (hinge loss, EMA) were measured better for
    CycleGAN, not for pix2pix, so they are flags here (``--gan-mode hinge --ema-decay 0.999``)."""

    model: str = "pix2pix"
    direction: str = "AtoB"         # AtoB trains G_A: A -> B; BtoA trains G_B: B -> A
    input_nc: int = 3               # channels of A
    output_nc: int = 3              # channels of B
    netG: str = "unet_256"
    netD: str = "basic"
    n_layers_D: int = 3
    ngf: int = 64
    ndf: int = 64
    norm: str = "batch"
    dropout: bool = True
    init_type: str = "normal"
    init_gain: float = 0.02
    gan_mode: str = "vanilla"
    gp_weight: float = 10.0
    lambda_GAN: float = 1.0
    lambda_L1: float = 100.0
    d_steps: int = 1
    ema_decay: float = 0.0
    spectral_norm: bool = False

    def validate(self) -> None:
        networks.check_image_model(self, ("lambda_GAN", "lambda_L1"))


class Pix2Pix(GANModel):
    """The pix2pix objective (paper eq. 1-4 and the reference's pix2pix_model.py), G: X -> Y:

    L_D = 0.5 * (L_GAN(D(x, y), real) + L_GAN(D(x, G(x)), fake))
    L_G = lambda_GAN * L_GAN(D(x, G(x)), real) + lambda_L1 * ||y - G(x)||_1

    D is updated first, then G, on the same G(x) (the reference's order); no image pool.
    """

    def __init__(self, cfg: Pix2PixConfig, seed: int = 0):
        cfg.validate()
        super().__init__(d_steps=cfg.d_steps, g_first=False)
        self.cfg = cfg
        self.src, self.dst = ("A", "B") if cfg.direction == "AtoB" else ("B", "A")
        self.g_name, self.d_name = ("G_A", "D_A") if cfg.direction == "AtoB" else ("G_B", "D_B")
        in_nc, out_nc = (cfg.input_nc, cfg.output_nc) if cfg.direction == "AtoB" else (cfg.output_nc, cfg.input_nc)
        G = networks.build_generator(cfg.netG, in_nc, out_nc, cfg.ngf, cfg.norm, cfg.dropout)
        D = networks.build_discriminator(cfg.netD, in_nc + out_nc, cfg.ndf, cfg.n_layers_D, cfg.norm)
        self.generators = nn.ModuleDict({self.g_name: G})
        self.discriminators = nn.ModuleDict({self.d_name: D})
        for net in (G, D):
            init_weights(net, cfg.init_type, cfg.init_gain)
        if cfg.spectral_norm:
            networks.add_spectral_norm(D)
        if cfg.ema_decay:
            self.enable_ema(cfg.ema_decay)
        self.loss = make_loss(cfg.gan_mode)

    def generate(self, batch: dict, generators: nn.ModuleDict | None = None) -> dict:
        G = (generators if generators is not None else self.generators)[self.g_name]
        return {"fake": G(batch[self.src])}

    def _pair(self, batch: dict, y: Tensor) -> Tensor:
        """What the conditional D sees: the input and an output, stacked along the channels."""
        return torch.cat([batch[self.src], y.to(batch[self.src].dtype)], dim=1)

    def generator_loss(self, batch: dict, out: dict) -> tuple[Tensor, dict[str, Tensor]]:
        D = self.discriminators[self.d_name]
        logs = {"G_GAN": self.loss.g_loss(D(self._pair(batch, out["fake"]))) * self.cfg.lambda_GAN,
                "G_L1": F.l1_loss(out["fake"].float(), batch[self.dst].float()) * self.cfg.lambda_L1}
        return sum(logs.values()), logs

    def discriminator_loss(self, batch: dict, out: dict) -> tuple[Tensor, dict[str, Tensor]]:
        D = self.discriminators[self.d_name]
        real, fake = self._pair(batch, batch[self.dst]), self._pair(batch, out["fake"].detach())
        loss = self.loss.d_loss(D(real), D(fake))
        if self.loss.needs_gradient_penalty:
            loss = loss + self.cfg.gp_weight * gradient_penalty(D, real, fake)
        loss = 0.5 * loss
        return loss, {"D": loss}

    def step_graph_unsupported(self) -> str | None:
        return None  # no host decision in the step: no pool, no drawn augmentation; dropout draws on the device

    def preview(self, batch: dict) -> Tensor:
        """Rows of input, translation (by the EMA generator when on) and ground truth, in [0, 1],
        (N, 3, H, 3W)."""
        fake = self.generate_for_preview(batch)["fake"]
        return preview_row((batch[self.src], fake, batch[self.dst]))

    def config_dict(self) -> dict:
        return asdict(self.cfg)
