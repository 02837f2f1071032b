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

from cyclegan.models import augment
from cyclegan.models import networks
from cyclegan.models.gan import GANModel, write_plan
from cyclegan.models.image_pool import ImagePool
from cyclegan.models.losses import gradient_penalty, make_loss, r1_penalty
from cyclegan.models.init import init_weights


@dataclass
class CycleGANConfig:
    """The networks and the objective (learning rates and epochs are the run's:
    cyclegan.training.config). Defaults are the paper's settings
    except two that beat it in docs/quality.md: the hinge loss and an EMA of the generators
    (``PAPER_MODEL`` / ``--preset paper`` is the original recipe exactly).

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
    gan_mode: str = "hinge"          # the paper: lsgan
    lambda_A: float = 10.0          # cycle loss weight A -> B -> A  (paper eq. 2, lambda)
    lambda_B: float = 10.0          # cycle loss weight B -> A -> B
    lambda_identity: float = 0.5    # identity loss, as a fraction of lambda_A/lambda_B
    gp_weight: float = 10.0         # WGAN-GP penalty weight (only with gan_mode wgangp)
    pool_size: int = 50
    d_steps: int = 1                # discriminator updates per generator update
    # Beyond the paper (docs/quality.md measures each): all off in the paper's recipe.
    ema_decay: float = 0.999        # EMA of the generators' weights, used for inference; 0: off
    diffaug: str = ""               # DiffAugment of every D input, e.g. "color,translation,cutout"
    spectral_norm: bool = False     # spectral normalisation on every D layer
    r1_gamma: float = 0.0           # R1 penalty on real images, gamma / 2 * E||grad D||^2; 0: off

    @classmethod
    def from_dict(cls, d: dict) -> "CycleGANConfig":
        """The config stored in a checkpoint or export. Fields it lacks (written before they
        existed) take the paper's values, not today's defaults, so an old run means what it meant."""
        names = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in PAPER_MODEL.items() if k not in d and k in names},
                      **{k: v for k, v in d.items() if k in names}})

    def validate(self) -> None:
        # numbers stored in a file (a resumed checkpoint) have the types the flags give: "64" or
        # [64] for ngf is refused here, not a TypeError deep in a network's constructor
        for f in fields(self):
            value, default = getattr(self, f.name), f.default
            if type(default) in (int, float) and (isinstance(value, bool) or not isinstance(
                    value, (int,) if type(default) is int else (int, float))):
                raise ValueError(f"{f.name} must be {'an integer' if type(default) is int else 'a number'}, "
                                 f"got {repr(value)[:40]}")
        if not isinstance(self.netG, str) or self.netG not in networks.GENERATORS:
            raise ValueError(f"unknown generator {self.netG!r}; choose one of: {', '.join(networks.GENERATORS)}")
        if not isinstance(self.netD, str) or self.netD not in networks.DISCRIMINATORS:
            raise ValueError(f"unknown discriminator {self.netD!r}; choose one of: {', '.join(networks.DISCRIMINATORS)}")
        if self.lambda_identity > 0 and self.input_nc != self.output_nc:
            raise ValueError(
                f"the identity loss needs as many input as output channels (got {self.input_nc} and "
                f"{self.output_nc}); pass --lambda-identity 0")
        make_loss(self.gan_mode)
        augment.parse_policy(self.diffaug)
        for name in ("lambda_A", "lambda_B", "lambda_identity", "r1_gamma"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) (0 turns the EMA off), got {self.ema_decay}")


#: The original release's recipe (Zhu et al. 2017, and its train options): what ``--preset paper``
#: resolves to, whatever our defaults become: the model, optimisation and schedule fields, then
#: the data and loop fields (flat: cyclegan.training.config routes each to its section).
PAPER_MODEL = dict(
    netG="resnet_9blocks", netD="basic", n_layers_D=3, ngf=64, ndf=64, norm="instance", dropout=False,
    init_type="normal", init_gain=0.02, gan_mode="lsgan", lambda_A=10.0, lambda_B=10.0,
    lambda_identity=0.5, pool_size=50, lr=2e-4, beta1=0.5, beta2=0.999, lr_policy="linear",
    n_epochs=100, n_epochs_decay=100, lr_decay_iters=50, d_steps=1,
    lr_d=None, ema_decay=0.0, diffaug="", spectral_norm=False, r1_gamma=0.0,
)
#: load_size None: size * 286 / 256, the paper's 286 -> 256 crop ratio at any --size
PAPER_TRAIN = dict(batch_size=1, size=256, load_size=None, preprocess="resize_and_crop", flip=True)
PRESETS = {"paper": (PAPER_MODEL, PAPER_TRAIN)}


def resolve_preset(preset: str | None, model_given: dict, train_given: dict) -> tuple[dict, dict]:
    """Model and training-loop keyword arguments: the preset's values (none: our defaults),
    overridden by what the user gave explicitly."""
    if preset is None:
        return dict(model_given), dict(train_given)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    model, train = PRESETS[preset]
    return {**model, **model_given}, {**train, **train_given}


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
        if cfg.spectral_norm:
            for net in self.discriminators.values():
                networks.add_spectral_norm(net)
        if cfg.ema_decay:
            self.enable_ema(cfg.ema_decay)
        self.loss = make_loss(cfg.gan_mode)
        # Pools and augmentation draw from their own streams, apart from the global RNG, so
        # resumed runs draw exactly as straight ones.
        self.pools = {"A": ImagePool(cfg.pool_size, seed=seed + 1), "B": ImagePool(cfg.pool_size, seed=seed + 2)}
        self.diffaug = augment.DiffAugment(cfg.diffaug, seed=seed + 3)
        self._aug_params: tuple[int, dict] | None = None

    # -- the objective -------------------------------------------------------------------------
    def augment(self, x: Tensor) -> Tensor:
        """A discriminator input under this step's DiffAugment transform (identity when off):
        one draw per training step, shared by real and fake inputs and by the D and G updates."""
        if not self.diffaug:
            return x
        if self._aug_params is None or self._aug_params[0] != self.step_count:
            self._aug_params = (self.step_count, self.diffaug.sample(x.shape[0], x.shape[2], x.shape[3]))
        return augment.apply(x, self._aug_params[1])

    def generate(self, batch: dict, generators: nn.ModuleDict | None = None) -> dict:
        nets = generators if generators is not None else self.generators
        G_A, G_B = nets["G_A"], nets["G_B"]
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
            "G_A": self.loss.g_loss(D_A(self.augment(out["fake_B"]))),
            "G_B": self.loss.g_loss(D_B(self.augment(out["fake_A"]))),
            "cycle_A": F.l1_loss(out["rec_A"].float(), real_A.float()) * cfg.lambda_A,
            "cycle_B": F.l1_loss(out["rec_B"].float(), real_B.float()) * cfg.lambda_B,
        }
        if "idt_A" in out:
            logs["idt_A"] = F.l1_loss(out["idt_A"].float(), real_B.float()) * cfg.lambda_B * cfg.lambda_identity
            logs["idt_B"] = F.l1_loss(out["idt_B"].float(), real_A.float()) * cfg.lambda_A * cfg.lambda_identity
        return sum(logs.values()), logs

    def _d_loss(self, D: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        r1 = self.cfg.r1_gamma > 0
        if r1:
            real = real.detach().requires_grad_(True)
        real_in, fake_in = self.augment(real), self.augment(fake)
        pred_real = D(real_in)
        loss = self.loss.d_loss(pred_real, D(fake_in))
        if self.loss.needs_gradient_penalty:
            loss = loss + self.cfg.gp_weight * gradient_penalty(D, real_in, fake_in)
        loss = 0.5 * loss
        if r1:  # outside the halving: gamma means what it means in the R1 paper
            loss = loss + 0.5 * self.cfg.r1_gamma * r1_penalty(pred_real, real)
        return loss

    def discriminator_loss(self, batch: dict, out: dict) -> tuple[Tensor, dict[str, Tensor]]:
        fake_B = self.pools["B"].query(out["fake_B"].detach())
        fake_A = self.pools["A"].query(out["fake_A"].detach())
        logs = {
            "D_A": self._d_loss(self.discriminators["D_A"], batch["B"], fake_B),
            "D_B": self._d_loss(self.discriminators["D_B"], batch["A"], fake_A),
        }
        return logs["D_A"] + logs["D_B"], logs

    def step_graph_unsupported(self) -> str | None:
        return None  # every host decision of the step is planned (below)

    def start_planning(self, batch: dict, batch_size: int) -> None:
        super().start_planning(batch, batch_size)
        #: per batch size, the device tensors the planned step's augmentation reads
        self._aug_plans: dict[int, dict[str, Tensor]] = {}

    def stop_planning(self) -> None:
        super().stop_planning()
        self._aug_plans, self._aug_params = {}, None

    def draw_plan(self, batch: dict) -> None:
        super().draw_plan(batch)
        if not self.diffaug:
            return
        n, _, h, w = batch["A"].shape
        drawn = self.diffaug.sample(n, h, w)  # what augment() would draw at the step's first call
        self._aug_plans[n] = write_plan(self._aug_plans.get(n), drawn, batch["A"].device)
        self._aug_params = (self.step_count, self._aug_plans[n])

    # -- previews and state --------------------------------------------------------------------
    @torch.no_grad()
    def preview(self, batch: dict) -> Tensor:
        """Rows of A, G_A(A), G_B(G_A(A)), B, G_B(B), G_A(G_B(B)) for each image of ``batch``,
        in [0, 1], as one (N, C, H, 6W) tensor, by the generators inference uses (the EMA when
        on). Grayscale is shown as RGB."""
        was_training = self.training
        self.eval()
        try:
            with self.precision.autocast():
                out = self.generate(batch, self.inference_generators())
        finally:
            self.train(was_training)
        cols = [batch["A"], out["fake_B"], out["rec_A"], batch["B"], out["fake_A"], out["rec_B"]]
        cols = [c.float().expand(-1, 3, -1, -1) if c.shape[1] == 1 else c.float()[:, :3] for c in cols]
        size = cols[0].shape[2:]
        # --preprocess none keeps each image's size: B's side is shown at A's size in the grid
        cols = [c if c.shape[2:] == size else F.interpolate(c, size=tuple(size), mode="bilinear", align_corners=False)
                for c in cols]
        return (torch.cat(cols, dim=3).clamp(-1, 1) + 1) / 2

    def rank_generators(self) -> list[torch.Generator]:
        return [*super().rank_generators(), self.diffaug.rng]

    def extra_state(self) -> dict:
        state = super().extra_state()
        state["pools"] = {k: p.state_dict() for k, p in self.pools.items()}
        state["diffaug"] = self.diffaug.state_dict()
        return state

    def load_extra_state(self, state: dict) -> None:
        super().load_extra_state(state)
        device = next(self.parameters()).device
        for k, p in self.pools.items():
            p.load_state_dict(state["pools"][k], device)
        if "diffaug" in state:
            self.diffaug.load_state_dict(state["diffaug"])

    def config_dict(self) -> dict:
        return asdict(self.cfg)
