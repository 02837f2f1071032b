"""The shared GAN base: adversarial losses, the image history pool, weight init, learning-rate
schedules, and the alternating discriminator/generator update.

CycleGAN (``cyclegan.models.cyclegan``), CUT / FastCUT (``cyclegan.models.cut``) and the unconditional
MNIST GAN are subclasses of :class:`GANModel`; they only say how to run their generators and what their
losses are.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass, fields
from typing import Iterable, Mapping

import torch
from torch import Tensor, nn
import torch.distributed as dist

from cyclegan.core.fastpath import AUTOCAST_DTYPES, PRECISIONS
from cyclegan.models.init import set_requires_grad


def ema_decay_at(decay: float, updates: int) -> float:
    """The EMA decay used at the ``updates``-th update (0-based): ``decay``, ramped up from
    0.1 as (1 + t) / (10 + t) so that the average is not dominated by the random init early on."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


class StoredConfig:
    """A model config dataclass that is stored in checkpoints and exports: ``from_dict`` reads one
    back, dropping fields that no longer exist (older files keep loading)."""

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def write_plan(held: dict | None, drawn: dict, device: torch.device) -> dict:
    """A planned step's host draws ``drawn`` (tensors, lists of tensors, or other values kept as
    they are) written into ``held``, the device tensors the step reads, created on first use:
    copied into, never replaced, so that a captured CUDA graph keeps reading the same memory."""
    if held is None:
        return {k: [t.to(device) for t in v] if isinstance(v, list) else v.to(device) if isinstance(v, Tensor) else v
                for k, v in drawn.items()}
    for k, v in drawn.items():
        for static, new in (zip(held[k], v) if isinstance(v, list) else [(held[k], v)]):
            if isinstance(new, Tensor):
                copy_from_host(static, new)
    return held


def copy_from_host(device_tensor: Tensor, host: Tensor) -> None:
    """``device_tensor.copy_(host)`` without waiting for the GPU: from pageable memory a
    host-to-device copy first waits for the stream's earlier work (CUDA's documented behaviour),
    a host sync every step. From pinned memory it is queued; torch's caching host allocator keeps
    the pinned block until the copy has run, so ``host`` may be dropped at once."""
    if device_tensor.device.type == "cuda" and host.device.type == "cpu":
        device_tensor.copy_(host.pin_memory(), non_blocking=True)
    else:
        device_tensor.copy_(host)


# --------------------------------------------------------------------------------------------
# Learning-rate schedules
# --------------------------------------------------------------------------------------------

LR_POLICIES = ("linear", "step", "cosine", "constant")


def grads_finite(optimizer: torch.optim.Optimizer) -> Tensor:
    """A 0-dim bool tensor on the parameters' device: every gradient ``optimizer`` would apply is
    finite. No host sync: the caller decides when to read it."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:  # made on the device: a host tensor would be a host-to-device copy in a captured step
        return torch.ones((), dtype=torch.bool, device=params[0].device if params else None)
    # The 2-norm rather than the max: as non-finite exactly when some element is, or when the
    # squares overflow (|g| ~ 1e19, where Adam's second moment would turn infinite too, so that
    # step is better skipped), and 12x faster on a CPU (6 against 66 ms for two ResNet-9s).
    return torch.stack(torch._foreach_norm(grads)).isfinite().all()


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


@dataclass
class Precision:
    """Autocast settings for one device. fp16 uses a gradient scaler; bf16 and fp32 do not."""

    device_type: str = "cpu"
    name: str = "fp32"

    def __post_init__(self) -> None:
        if self.name not in PRECISIONS:
            raise ValueError(f"unknown precision {self.name!r}; choose one of: {', '.join(PRECISIONS)}")
        self.dtype = AUTOCAST_DTYPES[self.name]
        self.scaler = torch.amp.GradScaler(self.device_type, enabled=self.name == "fp16")
        #: autocast's cache of weight casts; off while a step is captured as a CUDA graph
        self.cache_enabled = True

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype, cache_enabled=self.cache_enabled)


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
        #: built by the trainer from the run's optimisation and schedule settings
        #: (cyclegan.training.config.OptimConfig / ScheduleConfig)
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
        #: a 0-dim device tensor holding 1 - decay for the next EMA update, when a step captured as
        #: a CUDA graph reads it (cyclegan.training.step_graph); None: computed on the host
        self.ema_weight: Tensor | None = None
        #: per optimizer, whether the last step's gradients were finite (a 0-dim bool tensor on the
        #: device; a step with NaN/inf gradients is skipped). Empty under fp16, whose scaler skips.
        self.grads_finite: dict[str, Tensor] = {}

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
    def optimizer_groups(self) -> dict[str, list[list[nn.Parameter]]]:
        """The parameter groups of the two optimizers the trainer builds (cyclegan.training.config):
        all generators together ("G") and all discriminators together ("D"). A model with more
        trainable parts (CUT's projection heads) adds groups."""
        return {"G": [list(self.generators.parameters())], "D": [list(self.discriminators.parameters())]}

    def use_fused_optimizers(self, force: bool = False) -> bool:
        """Adam's single-kernel implementation on CUDA and CPUs (the same update, fewer passes over
        memory: 3x faster than torch's default on a CPU, 27 against 85 ms for two ResNet-9s),
        torch's default elsewhere (``force``: fused there too). Fused Adam skips a non-finite
        update on the device (``found_inf``). Called after loading optimizer state, which brings
        the saving run's choice along. Returns whether Adam is fused now."""
        params = [p for opt in self.optimizers.values() for g in opt.param_groups for p in g["params"]]
        fused = bool(params) and (force or params[0].device.type in ("cuda", "cpu"))
        for opt in self.optimizers.values():
            for group in (opt.defaults, *opt.param_groups):
                group.update(fused=fused or None, foreach=False if fused else None)
            # What Adam sets when built fused: fp16's GradScaler then hands the fused kernel its
            # scale and inf flag as device tensors, instead of reading the flag on the host
            # (.item(), a sync every step) and skipping the step there.
            opt._step_supports_amp_scaling = fused
        return fused

    def needs_double_backward(self) -> bool:
        """Whether the objective differentiates through a discriminator's gradient (WGAN-GP's
        gradient penalty, R1): compiled code cannot (aot_autograd has no double backward), so
        :meth:`compile_networks` leaves the discriminators eager."""
        loss = getattr(self, "loss", None)
        cfg = getattr(self, "cfg", None)
        return bool(getattr(loss, "needs_gradient_penalty", False) or getattr(cfg, "r1_gamma", 0) > 0)

    def compile_networks(self, **options) -> list[str]:
        """``nn.Module.compile(**options)`` on every network (each keeps its eager forward; the
        compiler's stance, set per step, decides which one runs), except the discriminators when
        :meth:`needs_double_backward`. Returns the names of the networks left eager."""
        eager = list(self.discriminators) if self.needs_double_backward() else []
        for name, net in (*self.generators.items(), *self.discriminators.items()):
            if name not in eager:
                net.compile(**options)
        return eager

    def fast_path_signature(self) -> str:
        """The model kind and what of its objective decides whether a fast path (compiled
        networks, CUDA graphs) works: what cyclegan.core.fastpath.GPU_PROVEN is keyed by."""
        cfg = getattr(self, "cfg", None)
        parts = [getattr(cfg, "model", None) or type(self).__name__.lower(), str(getattr(cfg, "gan_mode", ""))]
        if self.d_steps > 1:
            parts.append(f"d_steps={self.d_steps}")
        if getattr(cfg, "r1_gamma", 0):
            parts.append("r1")
        if getattr(cfg, "diffaug", ""):
            parts.append("diffaug")
        if getattr(cfg, "pool_size", None) == 0:
            parts.append("pool=0")
        return "/".join(parts)

    def step_graph_unsupported(self) -> str | None:
        """Why this model's training step cannot be captured as one CUDA graph
        (cyclegan.training.step_graph), or None when it can: the step must make no host-side
        decision from device data, and every random draw must come from the host ahead of it."""
        return f"{type(self).__name__}'s step is not prepared for whole-step capture"

    # -- the planned step (cyclegan.training.step_graph) ---------------------------------------
    # What the step decides on the host (the pools' choices, the EMA weight, augmentation
    # parameters) is drawn ahead of it by draw_plan and written into device tensors the step
    # reads, so the step itself is device work only, the same at every replay of a CUDA graph.
    def start_planning(self, batch: dict, batch_size: int) -> None:
        """Planned steps from now on, for batches like ``batch`` of ``batch_size`` images."""
        first = next(v for v in batch.values() if isinstance(v, Tensor))
        for key, pool in getattr(self, "pools", {}).items():
            # shaped like the fakes it holds (after an ordinary step it holds some): the
            # generators' output for that domain, in autocast's dtype when on
            like = batch.get(key, first)
            pool.to_buffer(like.to(self.precision.dtype or like.dtype), batch_size)
        if self.ema_generators is not None:
            self.ema_weight = torch.zeros((), device=first.device)

    def stop_planning(self) -> None:
        """Ordinary steps again."""
        for pool in getattr(self, "pools", {}).values():
            pool.to_list()
        self.ema_weight = None

    def draw_plan(self, batch: dict) -> None:
        """The next step's host decisions, drawn (advancing the same generators, in the same way,
        as the ordinary step) and written where the planned step reads them."""
        n = next(v for v in batch.values() if isinstance(v, Tensor)).shape[0]
        for pool in getattr(self, "pools", {}).values():
            if pool.buffer is not None:
                copy_from_host(pool.plan[:n], torch.tensor(pool.draw_plan(n), dtype=torch.long))
        if self.ema_weight is not None:
            self.ema_weight.fill_(1.0 - ema_decay_at(self.ema_decay, self.ema_updates))

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
    def update_ema(self, finite: Tensor | None = None) -> None:
        """One EMA step after a G update; ``finite`` (the update's gradients were finite) False
        leaves the average as it is."""
        if self.ema_generators is None:
            return
        on_device = finite is not None and bool(self.optimizers["G"].defaults.get("fused"))
        if finite is not None and not on_device and not finite.item():  # _update already waited for it
            return
        weight = self.ema_weight if self.ema_weight is not None else 1.0 - ema_decay_at(self.ema_decay, self.ema_updates)
        ema, params = list(self.ema_generators.parameters()), list(self.generators.parameters())
        if not on_device:
            torch._foreach_lerp_(ema, params, weight)
        else:  # fused Adam skipped on the device; so does the average, without waiting: weight 0
            step = torch._foreach_sub(params, ema)
            torch._foreach_mul_(step, finite.float() * weight)
            torch._foreach_add_(ema, step)
        for ema_buf, buf in zip(self.ema_generators.buffers(), self.generators.buffers()):
            ema_buf.copy_(buf)
        self.ema_updates += 1

    def inference_generators(self) -> nn.ModuleDict:
        """The generators inference should use: the EMA copy when there is one."""
        return self.ema_generators if self.ema_generators is not None else self.generators

    @torch.no_grad()
    def generate_for_preview(self, batch: dict) -> dict:
        """``generate`` by the generators inference uses, in eval mode, under the run's autocast:
        what the previews show (the training mode is restored after)."""
        was_training = self.training
        self.eval()
        try:
            with self.precision.autocast():
                return self.generate(batch, self.inference_generators())
        finally:
            self.train(was_training)

    def _update(self, which: str, loss: Tensor) -> None:
        opt = self.optimizers[which]
        opt.zero_grad(set_to_none=True)
        scaler = self.precision.scaler
        scaler.scale(loss).backward()
        if self.world_size > 1:
            # Data parallel: average over the ranks, like DDP, but explicit, so freezing D during
            # G's step and the G-first order need no find_unused_parameters or re-wrapping.
            # (Scaled fp16 gradients average fine; an inf on one rank reaches all, so all skip.)
            all_reduce_grads((p for g in opt.param_groups for p in g["params"]), self.world_size)
        if scaler.is_enabled():
            scaler.step(opt)  # fp16: the scaler skips steps with inf/NaN gradients and lowers its scale
            return
        self.grads_finite[which] = finite = grads_finite(opt)
        if opt.defaults.get("fused"):
            # Fused Adam skips the update on the device when found_inf is set: no host sync per step.
            opt.found_inf = (~finite).float()
            try:
                opt.step()
            finally:
                del opt.found_inf
        elif finite.item():
            opt.step()

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
        self.update_ema(self.grads_finite.get("G"))
        logs.update(g_logs)

    def train_step(self, batch: dict) -> dict[str, Tensor]:
        """One D update, plus one G update every ``d_steps`` calls. Returns detached losses."""
        update_g = self.step_count % self.d_steps == 0
        # One step is one generation of inductor's CUDA graph trees (networks compiled with
        # reduce-overhead). Left to itself, a tree starts a new generation at the first forward
        # after any backward, and frees what the previous one saved for backward: CUT and the MNIST
        # GAN run D's backward between G's forward and G's backward, so G's backward would read
        # freed memory. After a user's mark, generations change only at the next mark
        # (torch/_inductor/cudagraph_trees.py, can_start_new_generation). Host-only: a counter.
        torch.compiler.cudagraph_mark_step_begin()
        logs: dict[str, Tensor] = {}
        self.grads_finite = {}
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


def preview_row(columns: Iterable[Tensor]) -> Tensor:
    """Image batches side by side, one row per sample, as RGB in [0, 1] (grayscale shown as RGB).
    Columns of another size (``--preprocess none`` keeps each image's) are shown at the first's."""
    cols = [c.float().expand(-1, 3, -1, -1) if c.shape[1] == 1 else c.float()[:, :3] for c in columns]
    size = tuple(cols[0].shape[2:])
    cols = [c if tuple(c.shape[2:]) == size else nn.functional.interpolate(c, size=size, mode="bilinear",
                                                                           align_corners=False) for c in cols]
    return (torch.cat(cols, dim=3).clamp(-1, 1) + 1) / 2


def all_reduce_grads(params: Iterable[torch.nn.Parameter], world_size: int) -> None:
    """Average the gradients of ``params`` over all ranks, in one flat buffer per dtype/device.

    Parameters without a gradient are skipped; every rank runs the same graph, so the same ones
    are missing everywhere."""
    grads = [p.grad for p in params if p.grad is not None]
    if world_size <= 1 or not grads:
        return
    groups: dict[tuple, list[torch.Tensor]] = {}
    for g in grads:
        groups.setdefault((g.dtype, g.device), []).append(g)
    for group in groups.values():
        flat = torch.cat([g.reshape(-1) for g in group])
        dist.all_reduce(flat)
        flat.div_(world_size)
        offset = 0
        for g in group:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
