"""The shared GAN base: adversarial losses, the image history pool, weight init, learning-rate
schedules, and the alternating discriminator/generator update.

CycleGAN (``cyclegan.cyclegan``) and the unconditional MNIST GAN are both subclasses of
:class:`GANModel`; they only say how to run their generators and what their losses are.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# --------------------------------------------------------------------------------------------
# Adversarial losses
# --------------------------------------------------------------------------------------------


class AdversarialLoss:
    """One adversarial objective, written in terms of raw discriminator outputs ("logits").

    ``d_loss(real, fake)`` is what the discriminator minimises, ``g_loss(fake)`` what the
    generator minimises. Outputs are promoted to float32 so the losses are stable under autocast.
    """

    name: str = ""
    #: WGAN-GP needs the gradient penalty term on interpolates (see :func:`gradient_penalty`).
    needs_gradient_penalty: bool = False

    def d_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        raise NotImplementedError

    def g_loss(self, fake: Tensor) -> Tensor:
        raise NotImplementedError


class MinimaxLoss(AdversarialLoss):
    """The original GAN game (Goodfellow et al. 2014), with D(x) = sigmoid(logit):

    D minimises  -E[log D(x)] - E[log(1 - D(G(z)))]   (binary cross-entropy)
    G minimises   E[log(1 - D(G(z)))]                  (saturates when D wins early)
    """

    name = "minimax"

    def d_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        # -log sigmoid(x) = softplus(-x); -log(1 - sigmoid(x)) = softplus(x)
        return F.softplus(-real.float()).mean() + F.softplus(fake.float()).mean()

    def g_loss(self, fake: Tensor) -> Tensor:
        # log(1 - sigmoid(x)) = -softplus(x)
        return -F.softplus(fake.float()).mean()


class NonSaturatingLoss(MinimaxLoss):
    """Same discriminator as minimax; G minimises -E[log D(G(z))] instead, which has strong
    gradients when D rejects the fakes. The original CycleGAN release calls this "vanilla"."""

    name = "nonsaturating"

    def g_loss(self, fake: Tensor) -> Tensor:
        return F.softplus(-fake.float()).mean()


class LSGANLoss(AdversarialLoss):
    """Least squares GAN (Mao et al. 2017), the CycleGAN paper's choice:

    D minimises E[(D(x) - 1)^2] + E[D(G(z))^2];  G minimises E[(D(G(z)) - 1)^2]
    """

    name = "lsgan"

    def d_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        real, fake = real.float(), fake.float()
        return F.mse_loss(real, torch.ones_like(real)) + F.mse_loss(fake, torch.zeros_like(fake))

    def g_loss(self, fake: Tensor) -> Tensor:
        fake = fake.float()
        return F.mse_loss(fake, torch.ones_like(fake))


class WassersteinGPLoss(AdversarialLoss):
    """Wasserstein GAN with gradient penalty (Gulrajani et al. 2017); D is a critic (no sigmoid):

    D minimises E[D(G(z))] - E[D(x)] + lambda * E[(||grad D(x_hat)||_2 - 1)^2]
    G minimises -E[D(G(z))]
    The penalty term is added by the caller through :func:`gradient_penalty`.
    """

    name = "wgangp"
    needs_gradient_penalty = True

    def d_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        return fake.float().mean() - real.float().mean()

    def g_loss(self, fake: Tensor) -> Tensor:
        return -fake.float().mean()


class HingeLoss(AdversarialLoss):
    """Hinge loss (Lim & Ye 2017; used by SAGAN/BigGAN):

    D minimises E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))];  G minimises -E[D(G(z))]
    """

    name = "hinge"

    def d_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        return F.relu(1.0 - real.float()).mean() + F.relu(1.0 + fake.float()).mean()

    def g_loss(self, fake: Tensor) -> Tensor:
        return -fake.float().mean()


#: Registry: a new loss is one class plus one line here. "vanilla" is the original release's name.
LOSSES: dict[str, type[AdversarialLoss]] = {
    "minimax": MinimaxLoss,
    "nonsaturating": NonSaturatingLoss,
    "vanilla": NonSaturatingLoss,
    "lsgan": LSGANLoss,
    "wgangp": WassersteinGPLoss,
    "hinge": HingeLoss,
}


def make_loss(name: str) -> AdversarialLoss:
    """Build the adversarial loss called ``name`` (see :data:`LOSSES`)."""
    try:
        return LOSSES[name]()
    except KeyError:
        raise ValueError(f"unknown GAN loss {name!r}; choose one of: {', '.join(LOSSES)}") from None


def gradient_penalty(discriminator: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor,
                     generator: torch.Generator | None = None) -> Tensor:
    """E[(||grad_x D(x_hat)||_2 - 1)^2] at x_hat = eps * real + (1 - eps) * fake, eps ~ U(0, 1)
    per sample (Gulrajani et al. 2017, eq. 3). Not yet multiplied by lambda.

    ``generator`` may live on another device than the images (e.g. a model's own CPU stream,
    saved in its checkpoints): eps is drawn there and moved."""
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    device = generator.device if generator is not None else real.device
    eps = torch.rand(shape, device=device, dtype=real.dtype, generator=generator).to(real.device)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    out = discriminator(x_hat)
    (grad,) = torch.autograd.grad(out.float().sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).float().norm(2, dim=1) - 1.0) ** 2).mean()


def r1_penalty(pred_real: Tensor, real: Tensor) -> Tensor:
    """E_x[||grad_x s(x)||^2] on real images x (Mescheder et al. 2018, eq. 9, not yet
    multiplied by gamma / 2), where s(x) is D's score of x: the mean of a PatchGAN's outputs.
    ``real`` must require grad and ``pred_real = D(real)`` (or of an augmented ``real``)."""
    score = pred_real.float().flatten(1).mean(1).sum()
    (grad,) = torch.autograd.grad(score, real, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


def ema_decay_at(decay: float, updates: int) -> float:
    """The EMA decay used at the ``updates``-th update (0-based): ``decay``, ramped up from
    0.1 as (1 + t) / (10 + t) so that the average is not dominated by the random init early on."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


# --------------------------------------------------------------------------------------------
# Image history pool
# --------------------------------------------------------------------------------------------


class ImagePool:
    """History of generated images (Shrivastava et al. 2017), as in the CycleGAN paper.

    ``query(images)`` returns a batch of the same size. While the pool holds fewer than ``size``
    images, each incoming image is stored and returned. After that, each image is, with
    probability 1/2, swapped with a randomly chosen stored one (the stored one is returned),
    otherwise returned as is. ``size == 0`` disables the pool. The pool has its own seeded RNG
    and a state_dict, so resumed runs draw exactly as uninterrupted ones.
    """

    def __init__(self, size: int = 50, seed: int = 0):
        if size < 0:
            raise ValueError(f"pool size must be >= 0, got {size}")
        self.size = size
        self.images: list[Tensor] = []
        self.rng = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.images)

    @torch.no_grad()
    def query(self, images: Tensor) -> Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand((), generator=self.rng).item() > 0.5:
                i = int(torch.randint(0, self.size, (), generator=self.rng).item())
                out.append(self.images[i].clone())
                self.images[i] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict:
        images = torch.cat(self.images, 0).cpu() if self.images else torch.empty(0)
        return {"size": self.size, "images": images, "rng": self.rng.get_state()}

    def load_state_dict(self, state: Mapping, device: torch.device | str = "cpu") -> None:
        self.size = int(state["size"])
        images = state["images"]
        self.images = [im.unsqueeze(0).to(device) for im in images] if images.numel() else []
        self.rng.set_state(state["rng"])


# --------------------------------------------------------------------------------------------
# Networks helpers: requires_grad switching and weight init
# --------------------------------------------------------------------------------------------


def set_requires_grad(nets: nn.Module | Iterable[nn.Module], flag: bool) -> None:
    """Switch gradients of every parameter of ``nets`` on or off (D is frozen during G's step, so
    G's backward pass does not accumulate into D's gradients or spend time on them)."""
    if isinstance(nets, nn.Module):
        nets = [nets]
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")


def init_weights(net: nn.Module, init_type: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialise conv/linear weights as in the original release: N(0, gain) by default, or
    xavier-normal(gain), kaiming-normal (fan_in), orthogonal(gain); biases 0. BatchNorm weights
    are drawn from N(1, gain) and biases set to 0."""
    if init_type not in INIT_TYPES:
        raise ValueError(f"unknown init type {init_type!r}; choose one of: {', '.join(INIT_TYPES)}")

    def init(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Conv1d, nn.ConvTranspose1d)):
            if init_type == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)

    net.apply(init)
    return net


# --------------------------------------------------------------------------------------------
# Learning-rate schedules
# --------------------------------------------------------------------------------------------

LR_POLICIES = ("linear", "step", "cosine", "constant")


def lr_factor(policy: str, epoch: int, n_epochs: int, n_epochs_decay: int,
              step_every: int = 50, gamma: float = 0.1) -> float:
    """Multiplier of the base learning rate during (0-based) ``epoch``.

    linear:   1 for the first ``n_epochs`` epochs, then (n_epochs + n_epochs_decay - epoch) /
              (n_epochs_decay + 1): the paper's "constant, then linear decay to zero", equal to
              the original release's rule, so the last epoch runs at 1/(n_decay + 1) and the
              next would run at 0. With ``n_epochs_decay == 0`` it is constant throughout (the
              original release trains ``--n_epochs 1 --n_epochs_decay 0`` at lr 0 by stepping
              its scheduler before the first epoch; we step after each epoch).
    step:     gamma ** (epoch // step_every).
    cosine:   half a cosine from 1 to 0 over n_epochs + n_epochs_decay epochs.
    constant: 1.
    """
    if policy == "linear":
        return min(1.0, (n_epochs + n_epochs_decay - epoch) / float(n_epochs_decay + 1))
    if policy == "step":
        return gamma ** (epoch // max(1, step_every))
    if policy == "cosine":
        total = max(1, n_epochs + n_epochs_decay)
        return 0.5 * (1.0 + math.cos(math.pi * min(epoch, total) / total))
    if policy == "constant":
        return 1.0
    raise ValueError(f"unknown lr policy {policy!r}; choose one of: {', '.join(LR_POLICIES)}")


def make_scheduler(optimizer: torch.optim.Optimizer, policy: str, n_epochs: int, n_epochs_decay: int,
                   step_every: int = 50) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-epoch scheduler: call ``.step()`` at the end of each epoch, after the optimizer."""
    lr_factor(policy, 0, n_epochs, n_epochs_decay, step_every)  # validates the name early
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda e: lr_factor(policy, e, n_epochs, n_epochs_decay, step_every))


# --------------------------------------------------------------------------------------------
# Device, mixed precision and the alternating update
# --------------------------------------------------------------------------------------------


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an unavailable explicit choice is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"--device {name}: MPS is not available on this machine; use --device cpu or auto")
    return device


PRECISIONS = ("fp32", "bf16", "fp16")
#: torch.compile modes (inductor); reduce-overhead replays CUDA graphs, cutting launch overhead
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class Precision:
    """Autocast settings for one device. fp16 uses a gradient scaler; bf16 and fp32 do not."""

    device_type: str = "cpu"
    name: str = "fp32"

    def __post_init__(self) -> None:
        if self.name not in PRECISIONS:
            raise ValueError(f"unknown precision {self.name!r}; choose one of: {', '.join(PRECISIONS)}")
        self.dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.name]
        self.scaler = torch.amp.GradScaler(self.device_type, enabled=self.name == "fp16")

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


class GANModel(nn.Module):
    """Base of every GAN here: generators, discriminators, one optimizer for all generators and
    one for all discriminators, and the alternating update.

    A subclass sets ``self.generators`` / ``self.discriminators`` (nn.ModuleDicts) and implements:

    - ``generate(batch) -> dict``: the generator forward pass, run once per step;
    - ``generator_loss(batch, out) -> (loss, logs)``: G's objective (D is frozen meanwhile);
    - ``discriminator_loss(batch, out) -> (loss, logs)``: D's objective (fakes must be detached);
    - ``preview(batch) -> Tensor``: images the training loop saves and logs every N iterations.

    One ``train_step`` updates D on every call and G on every ``d_steps``-th call (k D steps per
    G step, as in WGAN). ``g_first`` chooses the order within a step: CycleGAN updates G first
    and then D on the same fakes (the original release's order); DCGAN updates D first.
    """

    generators: nn.ModuleDict
    discriminators: nn.ModuleDict
    #: images per row of the preview grid (CycleGAN's previews are already one wide row per image)
    preview_nrow: int = 1

    def __init__(self, d_steps: int = 1, g_first: bool = False):
        super().__init__()
        if d_steps < 1:
            raise ValueError(f"d_steps must be >= 1, got {d_steps}")
        self.d_steps = d_steps
        self.g_first = g_first
        self.precision = Precision()
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        self.step_count = 0
        #: processes training together (set by the Trainer under torchrun): gradients are
        #: averaged over them before every optimizer step
        self.world_size = 1
        #: exponential moving average of the generators' weights (see enable_ema); None when off
        self.ema_generators: nn.ModuleDict | None = None
        self.ema_decay = 0.0
        self.ema_updates = 0

    # -- to implement ------------------------------------------------------------------------
    def generate(self, batch: dict) -> dict:
        raise NotImplementedError

    def generator_loss(self, batch: dict, out: dict) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def discriminator_loss(self, batch: dict, out: dict) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def preview(self, batch: dict) -> Tensor:
        """Images in [0, 1], (N, 3, H, W), that show training progress on a fixed batch (or, for a
        noise -> image GAN, on fixed noise); laid out ``preview_nrow`` to a row."""
        raise NotImplementedError

    # -- shared machinery --------------------------------------------------------------------
    def make_optimizers(self, lr_g: float, lr_d: float, betas: tuple[float, float]) -> None:
        """Adam for all generators together and all discriminators together (torch's default
        implementation; :meth:`use_fused_optimizers` switches to the fused one on CUDA)."""
        self.optimizers = {
            "G": torch.optim.Adam(self.generators.parameters(), lr=lr_g, betas=betas),
            "D": torch.optim.Adam(self.discriminators.parameters(), lr=lr_d, betas=betas),
        }

    def use_fused_optimizers(self) -> bool:
        """Adam's single-kernel implementation on CUDA (same arithmetic, fewer launches), torch's
        default elsewhere; called after loading optimizer state, which brings the saving run's
        choice along. Returns whether Adam is fused now."""
        params = [p for opt in self.optimizers.values() for g in opt.param_groups for p in g["params"]]
        fused = bool(params) and params[0].device.type == "cuda"
        for opt in self.optimizers.values():
            for group in (opt.defaults, *opt.param_groups):
                group.update(fused=fused or None, foreach=False if fused else None)
        return fused

    # -- exponential moving average of the generators ----------------------------------------
    def enable_ema(self, decay: float) -> None:
        """Keep ``ema_generators``, an average of the generators' weights over recent updates
        (ema <- d * ema + (1 - d) * weights after every G update, d from :func:`ema_decay_at`;
        buffers are copied). Inference and export use it when present: averaged weights give
        steadier, usually better images than the last iterate of an oscillating GAN game."""
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.ema_decay = decay
        self.ema_generators = copy.deepcopy(self.generators).requires_grad_(False)
        self.ema_updates = 0

    @torch.no_grad()
    def update_ema(self) -> None:
        if self.ema_generators is None:
            return
        decay = ema_decay_at(self.ema_decay, self.ema_updates)
        torch._foreach_lerp_(list(self.ema_generators.parameters()), list(self.generators.parameters()), 1.0 - decay)
        for ema_buf, buf in zip(self.ema_generators.buffers(), self.generators.buffers()):
            ema_buf.copy_(buf)
        self.ema_updates += 1

    def inference_generators(self) -> nn.ModuleDict:
        """The generators inference should use: the EMA copy when there is one."""
        return self.ema_generators if self.ema_generators is not None else self.generators

    def _update(self, which: str, loss: Tensor) -> None:
        opt = self.optimizers[which]
        opt.zero_grad(set_to_none=True)
        scaler = self.precision.scaler
        scaler.scale(loss).backward()
        if self.world_size > 1:
            # Data parallel: average over the ranks, like DDP, but explicit, so freezing D during
            # G's step and the G-first order need no find_unused_parameters or re-wrapping.
            # (Scaled fp16 gradients average fine; an inf on one rank reaches all, so all skip.)
            from .distributed import all_reduce_grads

            all_reduce_grads((p for g in opt.param_groups for p in g["params"]), self.world_size)
        scaler.step(opt)

    def _d_update(self, batch: dict, out: dict, logs: dict) -> None:
        set_requires_grad(self.discriminators, True)
        with self.precision.autocast():
            loss_d, d_logs = self.discriminator_loss(batch, out)
        self._update("D", loss_d)
        logs.update(d_logs)

    def _g_update(self, batch: dict, out: dict, logs: dict) -> None:
        set_requires_grad(self.discriminators, False)
        try:
            with self.precision.autocast():
                loss_g, g_logs = self.generator_loss(batch, out)
            self._update("G", loss_g)
        finally:
            set_requires_grad(self.discriminators, True)
        self.update_ema()
        logs.update(g_logs)

    def train_step(self, batch: dict) -> dict[str, Tensor]:
        """One D update, plus one G update every ``d_steps`` calls. Returns detached losses."""
        update_g = self.step_count % self.d_steps == 0
        logs: dict[str, Tensor] = {}
        with torch.set_grad_enabled(update_g), self.precision.autocast():
            out = self.generate(batch)
        if update_g and self.g_first:
            self._g_update(batch, out, logs)
        self._d_update(batch, out, logs)
        if update_g and not self.g_first:
            self._g_update(batch, out, logs)
        self.precision.scaler.update()
        self.step_count += 1
        return {k: v.detach() for k, v in logs.items()}

    def step_schedulers(self) -> None:
        for s in self.schedulers.values():
            s.step()

    def rank_generators(self) -> list[torch.Generator]:
        """The model's own random streams (image pools, noise) that must differ between ranks."""
        return [pool.rng for pool in getattr(self, "pools", {}).values()]

    def reseed_for_rank(self, rank: int) -> None:
        """Give rank ``rank`` its own pool/noise streams (rank 0 keeps the single-process ones)."""
        if rank:
            for g in self.rank_generators():
                g.manual_seed(g.initial_seed() + 1_000_003 * rank)

    def extra_state(self) -> dict:
        """Training state outside parameters (pools, counters); saved in checkpoints."""
        return {"step_count": self.step_count, "ema_updates": self.ema_updates}

    def load_extra_state(self, state: Mapping) -> None:
        self.step_count = int(state["step_count"])
        self.ema_updates = int(state.get("ema_updates", 0))
