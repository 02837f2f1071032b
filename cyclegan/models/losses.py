"""Adversarial losses and penalties of the shared GAN base."""

from __future__ import annotations

from typing import Callable
import torch
import torch.nn.functional as F
from torch import Tensor

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


def penalty_weights(real: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """The interpolation weights eps ~ U(0, 1) of :func:`gradient_penalty`, one per sample, drawn
    from ``generator`` (which may live on another device than ``real``: a model's own CPU
    stream, saved in its checkpoints) and moved to ``real``'s device."""
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    device = generator.device if generator is not None else real.device
    return torch.rand(shape, device=device, dtype=real.dtype, generator=generator).to(real.device)


def gradient_penalty(discriminator: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor,
                     generator: torch.Generator | None = None, eps: Tensor | None = None) -> Tensor:
    """E[(||grad_x D(x_hat)||_2 - 1)^2] at x_hat = eps * real + (1 - eps) * fake, eps ~ U(0, 1)
    per sample (Gulrajani et al. 2017, eq. 3). Not yet multiplied by lambda.

    ``eps``: drawn ahead (a planned step); else drawn now by :func:`penalty_weights`."""
    eps = eps if eps is not None else penalty_weights(real, generator)
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
