"""The CycleGAN objective (Zhu et al. 2017, "Unpaired Image-to-Image Translation using
Cycle-Consistent Adversarial Networks").

Two generators G_A: A -> B and G_B: B -> A, two discriminators D_A (judges domain B, i.e. G_A's
output) and D_B (judges domain A), with the original release's names so its weights load as is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import networks
from .gan import GANModel, ImagePool, gradient_penalty, init_weights, make_loss, make_scheduler


@dataclass
class CycleGANConfig:
    """Everything that defines the model and its objective. Defaults are the paper's settings.

    Stored in every checkpoint and export, so loading one needs no flags.
    """

    input_nc: int = 3
    output_nc: int = 3
    netG: str = "resnet_9blocks"
    netD: str = "basic"
    n_layers_D: int = 3
    ngf: int = 64
    ndf: int = 64
    norm: str = "instance"
    dropout: bool = False
    init_type: str = "normal"
    init_gain: float = 0.02
    gan_mode: str = "lsgan"
    lambda_A: float = 10.0          # cycle loss weight A -> B -> A  (paper eq. 2, lambda)
    lambda_B: float = 10.0          # cycle loss weight B -> A -> B
    lambda_identity: float = 0.5    # identity loss, as a fraction of lambda_A/lambda_B
    gp_weight: float = 10.0         # WGAN-GP penalty weight (only with gan_mode wgangp)
    pool_size: int = 50
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lr_policy: str = "linear"
    n_epochs: int = 100             # epochs at the initial learning rate
    n_epochs_decay: int = 100       # epochs of linear decay to zero
    lr_decay_iters: int = 50        # step policy: epochs between x0.1 steps
    d_steps: int = 1                # discriminator updates per generator update

    @classmethod
    def from_dict(cls, d: dict) -> "CycleGANConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def validate(self) -> None:
        if self.netG not in networks.GENERATORS:
            raise ValueError(f"unknown generator {self.netG!r}; choose one of: {', '.join(networks.GENERATORS)}")
        if self.netD not in networks.DISCRIMINATORS:
            raise ValueError(f"unknown discriminator {self.netD!r}; choose one of: {', '.join(networks.DISCRIMINATORS)}")
        if self.lambda_identity > 0 and self.input_nc != self.output_nc:
            raise ValueError(
                f"the identity loss needs as many input as output channels (got {self.input_nc} and "
                f"{self.output_nc}); pass --lambda-identity 0")
        make_loss(self.gan_mode)
        for name in ("lambda_A", "lambda_B", "lambda_identity", "lr"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def build_generators(cfg: CycleGANConfig) -> nn.ModuleDict:
    """G_A (A -> B) and G_B (B -> A), uninitialised; used by training and by inference."""
    return nn.ModuleDict({
        "G_A": networks.build_generator(cfg.netG, cfg.input_nc, cfg.output_nc, cfg.ngf, cfg.norm, cfg.dropout),
        "G_B": networks.build_generator(cfg.netG, cfg.output_nc, cfg.input_nc, cfg.ngf, cfg.norm, cfg.dropout),
    })


class CycleGAN(GANModel):
    """Full objective (paper eq. 3 plus the identity term of section 5.2):

    L(G_A, G_B, D_A, D_B) = L_GAN(G_A, D_A) + L_GAN(G_B, D_B)
                          + lambda_A * ||G_B(G_A(a)) - a||_1 + lambda_B * ||G_A(G_B(b)) - b||_1
                          + lambda_idt * (lambda_B * ||G_A(b) - b||_1 + lambda_A * ||G_B(a) - a||_1)

    G is updated first, then D on fakes drawn from the image pools; each D loss is halved, as in
    the original release, to slow D relative to G.
    """

    def __init__(self, cfg: CycleGANConfig, seed: int = 0):
        cfg.validate()
        super().__init__(d_steps=cfg.d_steps, g_first=True)
        self.cfg = cfg
        self.generators = build_generators(cfg)
        self.discriminators = nn.ModuleDict({
            "D_A": networks.build_discriminator(cfg.netD, cfg.output_nc, cfg.ndf, cfg.n_layers_D, cfg.norm),
            "D_B": networks.build_discriminator(cfg.netD, cfg.input_nc, cfg.ndf, cfg.n_layers_D, cfg.norm),
        })
        for net in (*self.generators.values(), *self.discriminators.values()):
            init_weights(net, cfg.init_type, cfg.init_gain)
        self.loss = make_loss(cfg.gan_mode)
        # Pools are seeded apart from the global RNG so resumed runs draw exactly as straight ones.
        self.pools = {"A": ImagePool(cfg.pool_size, seed=seed + 1), "B": ImagePool(cfg.pool_size, seed=seed + 2)}
        self.make_optimizers(cfg.lr, cfg.lr, (cfg.beta1, cfg.beta2))
        self.make_schedulers()

    def make_schedulers(self) -> None:
        cfg = self.cfg
        self.schedulers = {k: make_scheduler(opt, cfg.lr_policy, cfg.n_epochs, cfg.n_epochs_decay, cfg.lr_decay_iters)
                           for k, opt in self.optimizers.items()}

    # -- the objective -------------------------------------------------------------------------
    def generate(self, batch: dict) -> dict:
        G_A, G_B = self.generators["G_A"], self.generators["G_B"]
        real_A, real_B = batch["A"], batch["B"]
        fake_B = G_A(real_A)
        fake_A = G_B(real_B)
        out = {"fake_B": fake_B, "rec_A": G_B(fake_B), "fake_A": fake_A, "rec_B": G_A(fake_A)}
        if self.cfg.lambda_identity > 0 and torch.is_grad_enabled():
            out["idt_A"] = G_A(real_B)  # G_A should leave a B image alone
            out["idt_B"] = G_B(real_A)
        return out

    def generator_loss(self, batch: dict, out: dict) -> tuple[Tensor, dict[str, Tensor]]:
        cfg = self.cfg
        real_A, real_B = batch["A"], batch["B"]
        D_A, D_B = self.discriminators["D_A"], self.discriminators["D_B"]
        logs = {
            "G_A": self.loss.g_loss(D_A(out["fake_B"])),
            "G_B": self.loss.g_loss(D_B(out["fake_A"])),
            "cycle_A": F.l1_loss(out["rec_A"].float(), real_A.float()) * cfg.lambda_A,
            "cycle_B": F.l1_loss(out["rec_B"].float(), real_B.float()) * cfg.lambda_B,
        }
        if "idt_A" in out:
            logs["idt_A"] = F.l1_loss(out["idt_A"].float(), real_B.float()) * cfg.lambda_B * cfg.lambda_identity
            logs["idt_B"] = F.l1_loss(out["idt_B"].float(), real_A.float()) * cfg.lambda_A * cfg.lambda_identity
        return sum(logs.values()), logs

    def _d_loss(self, D: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        loss = self.loss.d_loss(D(real), D(fake))
        if self.loss.needs_gradient_penalty:
            loss = loss + self.cfg.gp_weight * gradient_penalty(D, real, fake)
        return 0.5 * loss

    def discriminator_loss(self, batch: dict, out: dict) -> tuple[Tensor, dict[str, Tensor]]:
        fake_B = self.pools["B"].query(out["fake_B"].detach())
        fake_A = self.pools["A"].query(out["fake_A"].detach())
        logs = {
            "D_A": self._d_loss(self.discriminators["D_A"], batch["B"], fake_B),
            "D_B": self._d_loss(self.discriminators["D_B"], batch["A"], fake_A),
        }
        return logs["D_A"] + logs["D_B"], logs

    # -- previews and state --------------------------------------------------------------------
    @torch.no_grad()
    def preview(self, batch: dict) -> Tensor:
        """Rows of A, G_A(A), G_B(G_A(A)), B, G_B(B), G_A(G_B(B)) for each image of ``batch``,
        in [0, 1], as one (N, C, H, 6W) tensor. Grayscale is shown as RGB."""
        was_training = self.training
        self.eval()
        try:
            with self.precision.autocast():
                out = self.generate(batch)
        finally:
            self.train(was_training)
        cols = [batch["A"], out["fake_B"], out["rec_A"], batch["B"], out["fake_A"], out["rec_B"]]
        cols = [c.float().expand(-1, 3, -1, -1) if c.shape[1] == 1 else c.float()[:, :3] for c in cols]
        return (torch.cat(cols, dim=3).clamp(-1, 1) + 1) / 2

    def extra_state(self) -> dict:
        state = super().extra_state()
        state["pools"] = {k: p.state_dict() for k, p in self.pools.items()}
        return state

    def load_extra_state(self, state: dict) -> None:
        super().load_extra_state(state)
        device = next(self.parameters()).device
        for k, p in self.pools.items():
            p.load_state_dict(state["pools"][k], device)

    def config_dict(self) -> dict:
        return asdict(self.cfg)
