"""Contrastive Unpaired Translation: CUT and FastCUT (Park, Efros, Zhang, Zhu 2020, "Contrastive
Learning for Unpaired Image-to-Image Translation").

One generator G (one direction), one discriminator, and instead of CycleGAN's second generator
and cycle loss a patchwise contrastive loss (PatchNCE) between the features of the input and of
the output under G's own encoder: a patch of the output should be closer to the input patch at the
same place than to the other patches of the same input.

The generator and discriminator keep CycleGAN's names so that exports, translate and the app
need nothing new: an A -> B model holds G_A (and D_A, which judges domain B), a B -> A model G_B
(and D_B).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cyclegan.models import networks
from cyclegan.models.cyclegan import PAPER_TRAIN, CycleGAN, CycleGANConfig
from cyclegan.models.gan import GANModel, StoredConfig, preview_row, write_plan
from cyclegan.models.init import init_weights
from cyclegan.models.losses import gradient_penalty, make_loss
from cyclegan.models.pix2pix import Pix2Pix, Pix2PixConfig

#: PatchNCE layers of our ResNet generator (``ResnetGenerator.model`` indices). The reference
#: code takes layers 0, 4, 8, 12, 16 of its anti-aliased ResNet (each downsampling there is four
#: modules, conv-norm-ReLU-blur): the padded input image, the first and the second downsampling
#: convolutions' outputs, the output of the first residual block and of the fifth. Our generator
#: (the original CycleGAN layout: 0 pad, 1-3 conv-norm-ReLU, 4-6 and 7-9 the two stride-2
#: conv-norm-ReLU, 10.. the residual blocks) has the same points at 0, 4, 7, 10 and 14.
RESNET_NCE_LAYERS = (0, 4, 7, 10, 14)

#: --model NAME -> the settings that make it that model (over the CUTConfig defaults)
MODES = {
    "cut": dict(lambda_NCE=1.0, nce_idt=True, flip_equivariance=False),
    "fastcut": dict(lambda_NCE=10.0, nce_idt=False, flip_equivariance=True),
}
#: The reference code's recipe (its train options and cut_model.py) for --preset paper: LSGAN,
#: Adam 2e-4 with betas (0.5, 0.999), xavier init, no EMA; CUT 200 epochs + 200 of linear decay,
#: FastCUT 150 + 50. Training-loop values as CycleGAN's paper preset (batch 1, 286 -> 256 crops).
PAPER_CUT = dict(netG="resnet_9blocks", netD="basic", n_layers_D=3, ngf=64, ndf=64, norm="instance", dropout=False,
                 init_type="xavier", init_gain=0.02, gan_mode="lsgan", lambda_GAN=1.0, num_patches=256, nce_T=0.07,
                 netF_nc=256, lr=2e-4, beta1=0.5, beta2=0.999, lr_policy="linear", lr_decay_iters=50, d_steps=1,
                 lr_d=None, ema_decay=0.0, spectral_norm=False)
PRESETS = {
    "cut": {"paper": ({**PAPER_CUT, **MODES["cut"], "n_epochs": 200, "n_epochs_decay": 200}, PAPER_TRAIN)},
    "fastcut": {"paper": ({**PAPER_CUT, **MODES["fastcut"], "n_epochs": 150, "n_epochs_decay": 50}, PAPER_TRAIN)},
}


@dataclass
class CUTConfig(StoredConfig):
    """A CUT or FastCUT model and its objective; stored in checkpoints and exports like
    :class:`~cyclegan.cyclegan.CycleGANConfig`. Defaults are the project's (hinge loss and an EMA of
    the generator, as measured for CycleGAN in docs/quality.md); ``--preset paper`` is the
    reference recipe (:data:`PRESETS`)."""

    model: str = "cut"              # cut or fastcut (MODES): what the stored config is
    direction: str = "AtoB"         # AtoB trains G_A: A -> B; BtoA trains G_B: B -> A
    input_nc: int = 3
    output_nc: int = 3
    netG: str = "resnet_9blocks"
    netD: str = "basic"
    n_layers_D: int = 3
    ngf: int = 64
    ndf: int = 64
    norm: str = "instance"
    dropout: bool = False
    init_type: str = "normal"       # the reference: xavier (gain 0.02)
    init_gain: float = 0.02
    gan_mode: str = "hinge"         # the reference: lsgan
    gp_weight: float = 10.0
    lambda_GAN: float = 1.0
    lambda_NCE: float = 1.0         # FastCUT: 10
    nce_idt: bool = True            # identity PatchNCE on target images, averaged in (FastCUT: off)
    flip_equivariance: bool = False  # FastCUT: G(flip(x)) flipped back must match x patchwise
    num_patches: int = 256          # patches per layer, the same locations in input and output
    nce_T: float = 0.07             # temperature tau
    netF_nc: int = 256              # width of the MLP projection heads
    d_steps: int = 1
    ema_decay: float = 0.999
    spectral_norm: bool = False

    def validate(self) -> None:
        if self.model not in MODES:
            raise ValueError(f"unknown CUT model {self.model!r}; choose one of: {', '.join(MODES)}")
        if not self.netG.startswith("resnet_"):
            raise ValueError(f"--model {self.model} takes PatchNCE features from a ResNet generator's encoder; "
                             f"use --netG resnet_9blocks or resnet_6blocks (got {self.netG})")
        networks.check_image_model(self, ("lambda_GAN", "lambda_NCE"))
        if self.nce_T <= 0 or self.num_patches < 1 or self.netF_nc < 1:
            raise ValueError("nce_T must be > 0 and num_patches, netF_nc >= 1")
        if self.nce_idt and self.input_nc != self.output_nc:
            raise ValueError("the identity PatchNCE term needs as many input as output channels; pass --no-nce-idt")


def resolve_preset(kind: str, preset: str | None, model_given: dict, train_given: dict) -> tuple[dict, dict]:
    """Model and training-loop keyword arguments of ``--model KIND``: what makes it that model
    (:data:`MODES`), then the preset's values (none: our defaults), then what the user gave."""
    model, train = ({}, {})
    if preset is not None:
        if preset not in PRESETS[kind]:
            raise ValueError(f"unknown preset {preset!r} for --model {kind}; choose one of: {', '.join(PRESETS[kind])}")
        model, train = PRESETS[kind][preset]
    return {**MODES[kind], **model, **model_given, "model": kind}, {**train, **train_given}


def model_kind(config: dict) -> str:
    """cyclegan, cut, fastcut or pix2pix: what a stored model config describes."""
    return str(config.get("model") or "cyclegan")


def config_directions(config: dict) -> tuple[str, ...]:
    """The directions a stored model config translates: a CUT or pix2pix model has one."""
    return (config.get("direction") or "AtoB",) if model_kind(config) in ONE_DIRECTION else ("AtoB", "BtoA")


def config_from_dict(config: dict) -> "CUTConfig | Pix2PixConfig | CycleGANConfig":
    """The config dataclass of a stored model config (checkpoint, export), whichever model it is."""
    kind = model_kind(config)
    return ONE_DIRECTION[kind][0].from_dict(config) if kind in ONE_DIRECTION else CycleGANConfig.from_dict(config)


def build_model(cfg: "CUTConfig | Pix2PixConfig | CycleGANConfig", seed: int = 0) -> GANModel:
    """The trainable model of an image-translation config."""
    model_class = next((m for c, m in ONE_DIRECTION.values() if isinstance(cfg, c)), CycleGAN)
    return model_class(cfg, seed=seed)


# --------------------------------------------------------------------------------------------
# PatchNCE
# --------------------------------------------------------------------------------------------


def patch_nce_loss(q: Tensor, k: Tensor, tau: float = 0.07) -> Tensor:
    """PatchNCE of one layer (paper eq. 2 and 5). ``q``: (B, P, C) L2-normalised embeddings of P
    patches of the output image, ``k``: (B, P, C) of the input image at the same P locations. For
    image b and patch i, with the other P - 1 patches of the same input as negatives:

        l(b, i) = -log( exp(q_bi . k_bi / tau) / sum_{j=1..P} exp(q_bi . k_bj / tau) )

    and the loss is the mean over b and i: a cross-entropy over P classes. ``k`` gets no gradient
    (the reference code detaches it). Computed in float32 whatever the autocast dtype."""
    q, k = q.float(), k.detach().float()
    logits = torch.bmm(q, k.transpose(1, 2)) / tau                     # (B, P, P): [b, i, j] = q_bi . k_bj / tau
    target = torch.arange(q.shape[1], device=q.device).repeat(q.shape[0])
    return F.cross_entropy(logits.flatten(0, 1), target)


class PatchHeads(nn.Module):
    """One projection head per PatchNCE layer, each a 2-layer MLP (Linear C_l -> ``width``,
    ReLU, Linear ``width`` -> ``width``) followed by L2 normalisation, applied to the features at
    the given patch locations (the reference's PatchSampleF)."""

    def __init__(self, channels: list[int], width: int = 256):
        super().__init__()
        self.mlps = nn.ModuleList(nn.Sequential(nn.Linear(c, width), nn.ReLU(), nn.Linear(width, width))
                                  for c in channels)

    def forward(self, feats: list[Tensor], patch_ids: list[Tensor]) -> list[Tensor]:
        out = []
        for feat, ids, mlp in zip(feats, patch_ids, self.mlps):
            patches = feat.flatten(2).transpose(1, 2)[:, ids]           # (B, P, C): same places in every image
            out.append(F.normalize(mlp(patches), dim=-1))
        return out


def _flip(x: Tensor, flipped: bool | Tensor) -> Tensor:
    """``x`` mirrored horizontally when ``flipped``: a bool, or a 0-dim bool tensor (a planned
    step, which must not branch on the host)."""
    if isinstance(flipped, Tensor):
        return torch.where(flipped, x.flip(3), x)
    return x.flip(3) if flipped else x


def sample_patch_ids(feats: list[Tensor], num_patches: int, generator: torch.Generator) -> list[Tensor]:
    """For each feature map (B, C, H, W): ``min(num_patches, H * W)`` distinct flat positions,
    drawn from ``generator`` (the model's own stream, saved in checkpoints)."""
    ids = []
    for f in feats:
        n = f.shape[2] * f.shape[3]
        ids.append(torch.randperm(n, generator=generator)[:min(num_patches, n)].to(f.device))
    return ids


def encode(generator: nn.Module, x: Tensor, layers: tuple[int, ...]) -> list[Tensor]:
    """The outputs of ``generator.model[i]`` for each i in ``layers`` (a ResNet generator's encoder),
    running only as far as the last of them."""
    feats, last = [], max(layers)
    for i, layer in enumerate(generator.model):
        x = layer(x)
        if i in layers:
            feats.append(x)
        if i == last:
            return feats
    return feats


def nce_layers_of(generator: nn.Module) -> tuple[int, ...]:
    """:data:`RESNET_NCE_LAYERS` that exist in ``generator`` (a ResNet with fewer than 5 blocks has
    fewer residual layers to take)."""
    if not isinstance(generator, networks.ResnetGenerator):
        raise ValueError("PatchNCE needs a ResNet generator")
    return tuple(i for i in RESNET_NCE_LAYERS if i < len(generator.model) - 3 * generator.n_downsampling - 3)


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


class CUT(GANModel):
    """CUT / FastCUT objective (paper eq. 5 and the reference code), for G: X -> Y, D on Y:

    L_G = lambda_GAN * L_GAN(G, D) + lambda_NCE * L_PatchNCE(X)                  (no identity term)
    L_G = lambda_GAN * L_GAN(G, D) + lambda_NCE * (L_PatchNCE(X) + L_PatchNCE(Y)) / 2   (nce_idt)

    L_PatchNCE(X) is the mean over the layers of :func:`patch_nce_loss` between G's encoder
    features of G(x) (queries) and of x (keys), through the heads; L_PatchNCE(Y) the same on
    target images y and G(y). With ``flip_equivariance`` (FastCUT) each step flips the inputs
    horizontally with probability 1/2 and flips G's output features back before matching them.
    D is updated first, then G and the heads (one Adam: G's and the heads' parameter groups,
    which is the reference's two Adams with the same settings); D's loss is halved; no image pool.
    """

    def __init__(self, cfg: CUTConfig, seed: int = 0):
        cfg.validate()
        super().__init__(d_steps=cfg.d_steps, g_first=False)
        self.cfg = cfg
        self.src, self.dst = ("A", "B") if cfg.direction == "AtoB" else ("B", "A")
        self.g_name, self.d_name = ("G_A", "D_A") if cfg.direction == "AtoB" else ("G_B", "D_B")
        in_nc, out_nc = (cfg.input_nc, cfg.output_nc) if cfg.direction == "AtoB" else (cfg.output_nc, cfg.input_nc)
        G = networks.build_generator(cfg.netG, in_nc, out_nc, cfg.ngf, cfg.norm, cfg.dropout)
        D = networks.build_discriminator(cfg.netD, out_nc, cfg.ndf, cfg.n_layers_D, cfg.norm)
        self.generators = nn.ModuleDict({self.g_name: G})
        self.discriminators = nn.ModuleDict({self.d_name: D})
        self.nce_layers = nce_layers_of(G)
        with torch.no_grad():  # the heads' input widths: one look at the encoder
            channels = [f.shape[1] for f in encode(G, torch.zeros(1, in_nc, 16, 16), self.nce_layers)]
        self.heads = PatchHeads(channels, cfg.netF_nc)
        for net in (G, D, self.heads):
            init_weights(net, cfg.init_type, cfg.init_gain)
        if cfg.spectral_norm:
            networks.add_spectral_norm(D)
        if cfg.ema_decay:
            self.enable_ema(cfg.ema_decay)
        self.loss = make_loss(cfg.gan_mode)
        # Patch locations and flips draw from their own stream, so resumed runs draw as straight ones.
        self.rng = torch.Generator().manual_seed(seed + 4)
        #: a planned step's flip and patch locations, drawn ahead by draw_plan; None: drawn in the step
        self._plan: dict | None = None

    def optimizer_groups(self) -> dict[str, list[list[nn.Parameter]]]:
        groups = super().optimizer_groups()
        groups["G"].append(list(self.heads.parameters()))  # the heads learn with G, in G's Adam
        return groups

    # -- the objective -------------------------------------------------------------------------
    def generate(self, batch: dict, generators: nn.ModuleDict | None = None) -> dict:
        G = (generators if generators is not None else self.generators)[self.g_name]
        real = batch[self.src]
        train_g = torch.is_grad_enabled() and self.training
        if train_g and self._plan is not None:
            flipped = self._plan["flip"]  # a 0-dim bool tensor on the device
        else:
            flipped = bool(self.cfg.flip_equivariance and train_g and torch.rand((), generator=self.rng) < 0.5)
        idt = self.cfg.nce_idt and train_g
        x = torch.cat([real, batch[self.dst]]) if idt else real  # one pass; instance norm is per image
        x = _flip(x, flipped)
        fake = G(x)
        out = {"fake": fake[:real.shape[0]], "flipped": flipped}
        if idt:
            out["idt"] = fake[real.shape[0]:]
        return out

    def nce_loss(self, source: Tensor, output: Tensor, flipped: bool | Tensor, which: str = "ids") -> Tensor:
        """lambda_NCE * the mean over layers of PatchNCE between G's features of ``output``
        (queries; flipped back when the input was flipped) and of ``source`` (keys); ``which``
        names the planned patch locations to use ("ids", or "ids_idt" for the target images)."""
        G = self.generators[self.g_name]
        feat_q = [_flip(f, flipped) for f in encode(G, output, self.nce_layers)]
        with torch.no_grad():  # the keys get no gradient (patch_nce_loss detaches them anyway)
            feat_k = encode(G, source, self.nce_layers)
            if self._plan is not None:
                ids = self._plan[which]
            else:
                ids = sample_patch_ids(feat_k, self.cfg.num_patches, self.rng)
            keys = self.heads(feat_k, ids)
        queries = self.heads(feat_q, ids)
        losses = [patch_nce_loss(q, k, self.cfg.nce_T) for q, k in zip(queries, keys)]
        return self.cfg.lambda_NCE * torch.stack(losses).mean()

    def generator_loss(self, batch: dict, out: dict) -> tuple[Tensor, dict[str, Tensor]]:
        D = self.discriminators[self.d_name]
        logs = {"G_GAN": self.loss.g_loss(D(out["fake"])) * self.cfg.lambda_GAN}
        nce = self.nce_loss(batch[self.src], out["fake"], out["flipped"])
        if "idt" in out:
            logs["NCE"] = 0.5 * nce
            logs["NCE_idt"] = 0.5 * self.nce_loss(batch[self.dst], out["idt"], out["flipped"], "ids_idt")
        else:
            logs["NCE"] = nce
        return sum(logs.values()), logs

    def discriminator_loss(self, batch: dict, out: dict) -> tuple[Tensor, dict[str, Tensor]]:
        D = self.discriminators[self.d_name]
        real, fake = batch[self.dst], out["fake"].detach()
        loss = self.loss.d_loss(D(real), D(fake))
        if self.loss.needs_gradient_penalty:
            loss = loss + self.cfg.gp_weight * gradient_penalty(D, real, fake)
        loss = 0.5 * loss
        return loss, {"D": loss}

    # -- the planned step (cyclegan.training.step_graph) ---------------------------------------
    def step_graph_unsupported(self) -> str | None:
        return None  # the flip and the patch locations are drawn ahead (below)

    def start_planning(self, batch: dict, batch_size: int) -> None:
        super().start_planning(batch, batch_size)
        G, was_training = self.generators[self.g_name], self.training
        with torch.no_grad():  # the sizes of the feature maps patches are drawn from (eval: no dropout draw)
            G.eval()
            try:
                self._feature_sizes = [f.shape[2] * f.shape[3] for f in encode(G, batch[self.src][:1], self.nce_layers)]
            finally:
                G.train(was_training)
        self._plan = None

    def stop_planning(self) -> None:
        super().stop_planning()
        self._plan = None

    def draw_plan(self, batch: dict) -> None:
        super().draw_plan(batch)
        if not (self.training and self.step_count % self.d_steps == 0):
            return  # a D-only step draws nothing: G's forward runs without gradients
        # the step's draws from self.rng, in its order: the flip (generate), then the patches of
        # the source images and, with the identity term, of the target images (generator_loss)
        flip = bool(self.cfg.flip_equivariance and torch.rand((), generator=self.rng) < 0.5)
        drawn = {"flip": torch.tensor(flip), "ids": self._draw_ids()}
        if self.cfg.nce_idt:
            drawn["ids_idt"] = self._draw_ids()
        self._plan = write_plan(self._plan, drawn, batch[self.src].device)

    def _draw_ids(self) -> list[Tensor]:
        return [torch.randperm(n, generator=self.rng)[:min(self.cfg.num_patches, n)] for n in self._feature_sizes]

    # -- previews and state --------------------------------------------------------------------
    def preview(self, batch: dict) -> Tensor:
        """Rows of source image and its translation (by the EMA generator when on), in [0, 1],
        (N, 3, H, 2W)."""
        fake = self.generate_for_preview(batch)["fake"]
        return preview_row((batch[self.src], fake))

    def rank_generators(self) -> list[torch.Generator]:
        return [*super().rank_generators(), self.rng]

    def extra_state(self) -> dict:
        return {**super().extra_state(), "patch_rng": self.rng.get_state()}

    def load_extra_state(self, state: dict) -> None:
        super().load_extra_state(state)
        self.rng.set_state(state["patch_rng"])

    def config_dict(self) -> dict:
        return asdict(self.cfg)


#: the image-translation kinds that learn one direction: their config class and model class
ONE_DIRECTION: dict[str, tuple[type, type]] = {
    **{mode: (CUTConfig, CUT) for mode in MODES}, "pix2pix": (Pix2PixConfig, Pix2Pix)}
