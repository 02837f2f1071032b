"""The unconditional GAN on MNIST-format data: noise z -> 28x28 image, built on the shared base.

Everything GAN-generic (losses, gradient penalty, the alternating D/G update with ``d_steps``,
optimizers, schedules, init) comes from :mod:`cyclegan.models.gan`; the networks come from the
noise -> image registries of :mod:`cyclegan.models.networks`. This module only says how z is drawn,
how the generator is run and which objective each side minimises.

Objective (Goodfellow et al. 2014, with the loss chosen by ``gan_mode``, see ``cyclegan.models.gan``):

    D minimises  loss.d_loss(D(x), D(G(z)))  [+ gp_weight * E[(||grad D(x_hat)||_2 - 1)^2] for wgangp]
    G minimises  loss.g_loss(D(G(z)))

with x a real image, z ~ N(0, I) or U(-1, 1)^z_dim. D is updated first, then G on the same z
(the DCGAN order); G is updated once per ``d_steps`` D updates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from cyclegan.models import networks
from cyclegan.models.gan import GANModel, StoredConfig, write_plan
from cyclegan.models.losses import gradient_penalty, make_loss, penalty_weights
from cyclegan.models.init import init_weights

NOISE_DISTRIBUTIONS = ("normal", "uniform")


def sample_noise(n: int, z_dim: int, distribution: str = "normal",
                 generator: torch.Generator | None = None) -> Tensor:
    """``n`` latent vectors of ``z_dim`` values on the CPU: N(0, 1) or U(-1, 1) per value.

    Drawn on the CPU from ``generator`` so a seed gives the same z on every device (CUDA and
    CPU generators produce different streams) and the draw is cheap to move (n x z_dim floats).
    """
    if distribution == "normal":
        return torch.randn(n, z_dim, generator=generator)
    if distribution == "uniform":
        return torch.rand(n, z_dim, generator=generator) * 2 - 1
    raise ValueError(f"unknown noise distribution {distribution!r}; choose one of: {', '.join(NOISE_DISTRIBUTIONS)}")


@dataclass
class MnistGANConfig(StoredConfig):
    """Everything that defines the noise -> image GAN and its objective.

    Stored in every checkpoint and export, so loading one needs no flags. Defaults: DCGAN
    (non-saturating loss, N(0, I) noise of 100 dims; its Adam 2e-4, beta1 0.5 are the run's
    OptimConfig, cyclegan.training.config) at widths that
    train in minutes on a CPU (the bundled Fashion-MNIST model uses them).
    """

    netG: str = "dcgan"
    netD: str = "dcgan"
    z_dim: int = 100
    noise: str = "normal"           # normal: N(0, 1); uniform: U(-1, 1)
    channels: int = 1
    image_size: int = 28
    ngf: int = 32                   # G: 4 ngf channels at 7x7, 0.79M parameters (3.2 MB) at 32
    ndf: int = 64                   # D: 2 ndf channels at 7x7
    d_norm: str = "auto"            # auto: none for wgangp (per-sample penalty) or the mlp D, else batch
    init_type: str = "normal"
    init_gain: float = 0.02
    gan_mode: str = "nonsaturating"
    gp_weight: float = 10.0         # WGAN-GP penalty weight lambda (only with gan_mode wgangp)
    d_steps: int = 1                # discriminator updates per generator update

    def __post_init__(self) -> None:
        if self.d_norm == "auto":
            # BatchNorm mixes the samples of a batch, which breaks WGAN-GP's per-sample gradient
            # penalty; the paper's MLP discriminator has no normalisation either.
            self.d_norm = "none" if self.gan_mode == "wgangp" or self.netD == "mlp" else "batch"

    def validate(self) -> None:
        if self.netG not in networks.LATENT_GENERATORS:
            raise ValueError(f"unknown generator {self.netG!r}; choose one of: {', '.join(networks.LATENT_GENERATORS)}")
        if self.netD not in networks.LATENT_DISCRIMINATORS:
            raise ValueError(f"unknown discriminator {self.netD!r}; choose one of: "
                             f"{', '.join(networks.LATENT_DISCRIMINATORS)}")
        if self.noise not in NOISE_DISTRIBUTIONS:
            raise ValueError(f"unknown noise {self.noise!r}; choose one of: {', '.join(NOISE_DISTRIBUTIONS)}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.z_dim < 1:
            raise ValueError(f"z_dim must be >= 1, got {self.z_dim}")
        if self.gan_mode == "wgangp" and self.d_norm == "batch":
            raise ValueError("wgangp's gradient penalty is per sample and BatchNorm in D mixes samples; "
                             "use --d-norm none (or auto)")
        make_loss(self.gan_mode)
        if self.gp_weight < 0:
            raise ValueError(f"gp_weight must be >= 0, got {self.gp_weight}")


def build_generator(cfg: MnistGANConfig) -> nn.Module:
    """The generator G: (N, z_dim) -> (N, channels, S, S); used by training and by inference."""
    return networks.build_latent_generator(cfg.netG, cfg.z_dim, cfg.channels, cfg.image_size, cfg.ngf)


def build_discriminator(cfg: MnistGANConfig) -> nn.Module:
    return networks.build_latent_discriminator(cfg.netD, cfg.channels, cfg.image_size, cfg.ndf, cfg.d_norm)


class MnistGAN(GANModel):
    """G and D of an unconditional GAN, trained by the shared alternating update.

    Batches are ``{"image": (N, C, S, S) in [-1, 1], ...}``; z is drawn per step from the model's
    own seeded generator (saved in checkpoints with the rest of the training state), so a resumed
    run draws exactly the noise an uninterrupted one would, whatever the data loader did with the
    global RNG. ``preview`` always shows G on the same fixed z, so preview grids show progress.
    """

    preview_nrow = 8  # fixed-noise samples are laid out 8 to a row

    def __init__(self, cfg: MnistGANConfig, seed: int = 0, preview_count: int = 64):
        cfg.validate()
        super().__init__(d_steps=cfg.d_steps, g_first=False)
        self.cfg = cfg
        self.generators = nn.ModuleDict({"G": build_generator(cfg)})
        self.discriminators = nn.ModuleDict({"D": build_discriminator(cfg)})
        for net in (*self.generators.values(), *self.discriminators.values()):
            init_weights(net, cfg.init_type, cfg.init_gain)
        self.loss = make_loss(cfg.gan_mode)
        # Separate streams: the training noise (and WGAN-GP's interpolation weights) and the
        # fixed preview noise, which is part of the model state so it survives resumes.
        self.rng = torch.Generator().manual_seed(seed + 1)
        fixed = sample_noise(preview_count, cfg.z_dim, cfg.noise, torch.Generator().manual_seed(seed + 2))
        self.register_buffer("fixed_z", fixed)
        #: a planned step's z (and WGAN-GP's eps), drawn ahead by draw_plan; None: drawn in the step
        self._noise_plan: dict[str, Tensor] | None = None
        self._noise_plans: dict[int, dict[str, Tensor]] = {}  # per batch size, the device tensors

    # -- the objective -------------------------------------------------------------------------
    def generate(self, batch: dict) -> dict:
        real = batch["image"]
        if self._noise_plan is not None:
            z = self._noise_plan["z"]
        else:
            z = sample_noise(real.shape[0], self.cfg.z_dim, self.cfg.noise, self.rng).to(real.device)
        return {"z": z, "fake": self.generators["G"](z)}

    def discriminator_loss(self, batch: dict, out: dict) -> tuple[Tensor, dict[str, Tensor]]:
        D, real, fake = self.discriminators["D"], batch["image"], out["fake"].detach()
        d_real, d_fake = D(real), D(fake)
        loss = self.loss.d_loss(d_real, d_fake)
        # D(x) and D(G(z)) as raw logits: they should drift apart as D learns (watch in TensorBoard).
        logs = {"D_real": d_real.float().mean(), "D_fake": d_fake.float().mean()}
        if self.loss.needs_gradient_penalty:
            eps = self._noise_plan["eps"] if self._noise_plan is not None else None
            logs["gp"] = gradient_penalty(D, real, fake, generator=self.rng, eps=eps)
            loss = loss + self.cfg.gp_weight * logs["gp"]
        logs["D"] = loss
        return loss, logs

    def generator_loss(self, batch: dict, out: dict) -> tuple[Tensor, dict[str, Tensor]]:
        loss = self.loss.g_loss(self.discriminators["D"](out["fake"]))
        return loss, {"G": loss}

    # -- the planned step (cyclegan.training.step_graph) ---------------------------------------
    def step_graph_unsupported(self) -> str | None:
        return None  # z and WGAN-GP's eps are drawn ahead (below)

    def stop_planning(self) -> None:
        super().stop_planning()
        self._noise_plan, self._noise_plans = None, {}

    def draw_plan(self, batch: dict) -> None:
        super().draw_plan(batch)
        real = batch["image"]
        # the step's draws from self.rng, in its order: z (generate), then eps (D's penalty)
        drawn = {"z": sample_noise(real.shape[0], self.cfg.z_dim, self.cfg.noise, self.rng)}
        if self.loss.needs_gradient_penalty:
            drawn["eps"] = penalty_weights(real, self.rng)
        n = real.shape[0]
        self._noise_plan = self._noise_plans[n] = write_plan(self._noise_plans.get(n), drawn, real.device)

    # -- previews and state --------------------------------------------------------------------
    @torch.no_grad()
    def preview(self, batch: dict) -> Tensor:
        """G(fixed z) in eval mode (BatchNorm running statistics, as at inference), in [0, 1],
        as (N, 3, S, S). ``batch`` is not used: the point is the same z every time."""
        G = self.generators["G"]
        was_training = G.training
        G.eval()
        try:
            with self.precision.autocast():
                images = G(self.fixed_z)
        finally:
            G.train(was_training)
        images = images.float()
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return (images.clamp(-1, 1) + 1) / 2

    def rank_generators(self) -> list[torch.Generator]:
        return [*super().rank_generators(), self.rng]  # each rank draws its own z

    def extra_state(self) -> dict:
        return {**super().extra_state(), "rng": self.rng.get_state()}

    def load_extra_state(self, state: dict) -> None:
        super().load_extra_state(state)
        self.rng.set_state(state["rng"])

    def config_dict(self) -> dict:
        return asdict(self.cfg)
