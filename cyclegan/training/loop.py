"""The training loop, readable top to bottom: device, precision, optimizers, data, steps,
logging, previews, checkpoints, resume. Shared by every :class:`~cyclegan.models.gan.GANModel`;
what differs between model kinds comes in a :class:`Job`."""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import yaml
from tqdm.contrib.logging import logging_redirect_tqdm

from cyclegan.core import fastpath
from cyclegan.core.checkpoint import (CheckpointError, NonFiniteError, atomic_write, check_usable, load_newest_intact,
                                     nonfinite_tensors, save_numbered)
from cyclegan.core.devices import cudnn_benchmark, pick_device
from cyclegan.data.unpaired import EpochSampler
from cyclegan.data import resident
from cyclegan.models.gan import GANModel, Precision
from cyclegan.training import distributed, step_graph
from cyclegan.training.config import RunConfig
from cyclegan.training.runtime import StopFlag, TrainingDiverged, TrainingStopped, rng_state, seed_everything, set_rng_state
from cyclegan.training.safe_writer import SafeWriter
from cyclegan.core.install import import_torchvision

log = logging.getLogger("cyclegan.train")
#: iterations between refreshes of the progress bar's losses (the mean over those iterations)
BAR_EVERY = 10

#: steps on a fast path (compiled networks, the whole-step CUDA graph) that run guarded: each from
#: a copy of the training state, so that a failure goes on eagerly from the same state. Past the
#: warm-ups and captures (the step graph's, per kind of step), a failure is the model's own.
GUARDED_STEPS = 6
#: under torchrun, iterations between the ranks' agreement on a stop request (a collective and a
#: host read: every step would make the host wait for the GPU)
STOP_CHECK_EVERY = 10


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


@dataclass
class Job:
    """What a model kind hands the loop (cyclegan.training.kinds): its model and data set, how to
    export the trained model, the lines of the run header that are its own, and what runs after
    a finished run (the MNIST GAN's evaluation)."""

    model: GANModel
    dataset: Any
    export: Callable[[Path, int], Any] | None = None       # (run folder, iteration) -> the export written
    data_summary: str = ""                                  # the data set, one line
    describe: Callable[["Trainer"], str] = lambda trainer: ""  # the model's part of the run line
    finish: Callable[["Trainer", list], None] | None = None  # (trainer, exports written) after fit()


@dataclass
class Counters:
    iteration: int = 0
    epoch: int = 0
    epoch_samples: int = 0   # samples of `epoch` this process has consumed


class Trainer:
    """Runs a GANModel over a dataset: the same code for every model kind. It builds the
    optimizers and schedulers from the run's ``optim`` and ``schedule`` sections, and stores the
    whole run config in every checkpoint so a run resumes without flags; ``export`` writes the
    inference artefact at the end.
    """

    def __init__(self, model: GANModel, run: RunConfig, dataset,
                 export: Callable[[Path, int], Any] | None = None):
        cfg = run.loop
        self.model, self.run, self.cfg, self.dataset = model, run, cfg, dataset
        self.total_epochs = run.schedule.total_epochs
        self.export = export
        self.exports: list = []  # what export wrote (nothing when the run was stopped)
        self.elapsed = 0.0       # seconds the last fit() took
        self.dist = distributed.info()
        rank, world = self.dist.rank, self.dist.world_size
        self.device = pick_device(distributed.device_for(cfg.device, self.dist.local_rank) if world > 1 else cfg.device)
        self.counters = Counters()
        self.rollbacks = 0  # NaN roll-backs done by this process (at most cfg.nan_retries)
        self.lr_scale = 1.0  # learning rates x this after roll-backs (stored in checkpoints)
        # (iteration, losses, gradients finite per optimizer) not yet checked for NaN
        self._pending: list[tuple[int, dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []
        self.run_dir = cfg.run_dir
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.preview_dir = self.run_dir / "previews"
        self.writer = None
        self._bar = None  # the progress bar (one per epoch; one for the whole run with max_iters)
        # "force_eager" after a compiled step failed: the compiled callables stay, unused
        self._stance = "default"
        self._guard_left = 0  # fast-path steps still to run guarded (see GUARDED_STEPS)
        #: what the fast path did, written to config.yaml's ``ran`` at the end of fit(): whether a
        #: fast path failed and why, the step graph's captures and replays
        self.ran: dict[str, Any] = {}

        model.to(self.device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        model.optimizers = run.optim.build(model)
        model.schedulers = run.schedule.build(model.optimizers)
        # The arithmetic this machine runs best (core.fastpath); explicit flags are kept as given.
        static_shapes = getattr(dataset, "static_shapes", True)
        first = dataset[(0, 0)] if len(dataset) else None  # read once: its size here, the previews below
        self.fast_path = fastpath.choose(self.device, "train", cfg.precision, cfg.compile, cfg.compile_mode,
                                         static_shapes=static_shapes, image_side=_image_side(first),
                                         signature=model.fast_path_signature())
        model.precision = Precision(self.device.type, self.fast_path.precision)
        self.step_graph, self.fast_path = step_graph.setup(model, cfg.step_graph, cfg.compile, self.fast_path,
                                                           self.device, world, static_shapes)
        if self.fast_path.precision == "fp16" and self.device.type == "cpu":
            log.warning("fp16 autocast on CPU is slow and rarely supported; bf16 is the CPU choice")
        if world > 1:
            model.world_size = world                # gradients averaged over ranks in every update
            model.reseed_for_rank(rank)             # own image pools / noise per rank
            if rank:                                # own dropout masks; weights come from rank 0
                seed_everything(cfg.seed + 1_000_003 * rank)
            distributed.convert_sync_batchnorm(model, self.device)
            if cfg.scale_lr:
                scale_learning_rates(model, world)
        self.sampler = EpochSampler(len(dataset), seed=cfg.seed, shuffle=not cfg.serial_batches,
                                    rank=rank, world_size=world)
        workers = cfg.num_workers if cfg.num_workers >= 0 else min(4, max(0, (os.cpu_count() or 1) - 1))
        # --data-on-device: the images held on the device (cyclegan.data.resident), else a DataLoader
        self.loader = resident.loader_for(dataset, self.sampler, run.data, cfg.batch_size, self.device)
        self.loader = self.loader or torch.utils.data.DataLoader(
            dataset, batch_size=cfg.batch_size, sampler=self.sampler, num_workers=workers,
            pin_memory=self.device.type == "cuda", persistent_workers=workers > 0,
            prefetch_factor=2 if workers > 0 else None, drop_last=False,
            # Its own generator: otherwise every iter() draws a worker base seed from the global
            # RNG, and a resumed run (which restores that RNG mid-epoch) would drift from a
            # straight one wherever the global RNG matters (dropout, gradient-penalty eps).
            generator=torch.Generator().manual_seed(cfg.seed))
        if self.step_graph:  # a full batch; fewer images than that make every batch as large
            self.step_graph.batch_size = min(cfg.batch_size, self.sampler.per_rank)
        n_preview = min(cfg.preview_count, len(dataset))
        preview = [first, *(dataset[(0, i)] for i in range(1, n_preview))] if n_preview else []
        self.preview_batch = self._collate(_same_shapes(preview))

    # -- state -------------------------------------------------------------------------------
    def state(self) -> dict:
        m = self.model
        state = {
            # the model's config, as exports store it, and the rest of the run (optimisation,
            # schedule, data, loop): cyclegan.training.kinds.from_state reads both back
            "model_config": asdict(self.run.model),
            "run_config": {k: v for k, v in self.run.to_dict().items() if k != "model"},
            "model": m.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in m.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in m.schedulers.items()},
            "scaler": m.precision.scaler.state_dict(),
            "extra": m.extra_state(),
            "counters": asdict(self.counters),
            "rng": rng_state(),
            "nan_lr_scale": self.lr_scale,
        }
        if self.dist.enabled:
            # Each rank's own random streams and pools (rank 0's are also the ones above). A
            # collective: every rank calls state() at the same iterations.
            state["per_rank"] = distributed.gather_objects({"rng": rng_state(), "extra": m.extra_state()},
                                                           self.dist.world_size)
        return state

    def load_state(self, state: dict) -> None:
        m = self.model
        m.load_state_dict(state["model"])
        for k, o in m.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in m.schedulers.items():
            s.load_state_dict(state["schedulers"][k])
        if state.get("scaler"):
            m.precision.scaler.load_state_dict(state["scaler"])
        m.load_extra_state(state["extra"])
        if self.step_graph:  # the optimizers' tensors are new ones: warm up and capture again
            self.step_graph.reset()
            self._guard_left = self._guarded_steps()
        self.counters = Counters(**state["counters"])
        self.lr_scale = state.get("nan_lr_scale", 1.0)
        set_rng_state(state["rng"])
        rank, world = self.dist.rank, self.dist.world_size
        per_rank = state.get("per_rank")
        saved_world = len(per_rank) if per_rank else 1
        if saved_world != world:  # same place in the epoch, in this run's per-rank samples
            if self.dist.is_main:
                log.warning("checkpoint written by %d rank(s), resuming on %d", saved_world, world)
            seen = self.counters.epoch_samples * saved_world
            self.counters.epoch_samples = min(self.sampler.per_rank, seen // world)
        if rank and per_rank and len(per_rank) == world:
            set_rng_state(per_rank[rank]["rng"])
            m.load_extra_state(per_rank[rank]["extra"])
        elif rank:  # saved by a run with another world size: rank 0's streams, re-mixed per rank
            m.reseed_for_rank(rank)
            seed_everything(self.cfg.seed + 1_000_003 * rank + self.counters.iteration)

    def start(self, state: dict | None) -> None:
        """Load a resumed run's state (or keep the fresh one) and write the readable config."""
        if state is not None:
            self.load_state(state)
            log.info("resumed %s at iteration %d (epoch %d)", state.get("resumed_from", self.ckpt_dir / "latest.pt"),
                     self.counters.iteration, self.counters.epoch + 1)
        distributed.broadcast_module(self.model, self.dist.world_size)  # every rank starts from rank 0's weights
        if self.model.use_fused_optimizers():
            log.debug("fused Adam")
        self._write_config()

    def _write_config(self) -> None:
        """config.yaml: the run's settings and the fast path it runs (rewritten when a fast path
        failed and the run went on eagerly)."""
        if not self.dist.is_main:
            return
        ran = {"ran": self.ran} if self.ran else {}
        text = yaml.safe_dump({**self.run.to_dict(), "fast_path": self.fast_path.as_dict(), **ran}, sort_keys=False)
        atomic_write(self.run_dir / "config.yaml", lambda f: f.write(text.encode()))

    def save(self) -> Path:
        self._check_finite()  # never save a diverged model
        state = self.state()  # on every rank: it gathers the per-rank streams
        # Finite losses do not make finite weights (an update can overflow them: a huge learning
        # rate). Checked on every rank, which all hold the same state, so all stop together.
        bad = nonfinite_tensors(state)
        if bad:
            raise self._diverged(f"{len(bad)} tensor(s) of the model became NaN or infinite by iteration "
                                 f"{self.counters.iteration} ({', '.join(bad[:3])})")
        # Finite weights do not make finite outputs either (weights of 1e30 overflow every
        # activation): the generators and discriminators are run on one preview image first.
        broken = self._nonfinite_outputs()
        if broken:
            raise self._diverged(f"the outputs of the {broken} became NaN or infinite by iteration "
                                 f"{self.counters.iteration} (their weights are finite but overflow)")
        if not self.dist.is_main:
            return self.ckpt_dir / "latest.pt"
        path = save_numbered(state, self.ckpt_dir, self.counters.iteration, self.cfg.keep)
        log.info("checkpoint: %s (iteration %d)", path, self.counters.iteration)
        return path

    # -- helpers -----------------------------------------------------------------------------
    def _nonfinite_outputs(self) -> str | None:
        """Which generators (the trained ones, which a resume continues from, or their moving
        average, which inference uses) give NaN or infinite outputs on one preview image; None
        when both are finite. The model's preview runs them, so every kind of GAN is covered."""
        if not self.preview_batch:
            return None
        probe = self._to_device({k: v[:1] if isinstance(v, torch.Tensor) else v
                                 for k, v in self.preview_batch.items()})
        ema = self.model.ema_generators
        try:
            for name, gens in (("generators", None), ("generators' moving average", ema)):
                if name != "generators" and ema is None:
                    continue
                self.model.ema_generators = gens  # preview runs inference_generators(): these
                with torch.compiler.set_stance("force_eager"), torch.no_grad():
                    if nonfinite_tensors(self.model.preview(probe)):
                        return name
        finally:
            self.model.ema_generators = ema
        # the discriminators (a resume trains on with them) on an image of the training size
        image = next((v for v in probe.values() if isinstance(v, torch.Tensor) and v.dim() == 4), None)
        for name, net in self.model.discriminators.items():
            conv = next((m for m in net.modules() if isinstance(m, torch.nn.Conv2d)), None)
            if image is None or conv is None:
                continue
            x = torch.rand(1, conv.in_channels, *image.shape[2:], generator=torch.Generator().manual_seed(0))
            try:
                with torch.compiler.set_stance("force_eager"):
                    check_usable(net, (x * 2 - 1).to(image.device, image.dtype), name)
            except NonFiniteError:
                return f"discriminator {name}"
            except CheckpointError:  # a discriminator that takes other inputs: not probed
                continue
        return None

    def _collate(self, items: list) -> dict:
        return torch.utils.data.default_collate(items)

    def _to_device(self, batch: dict) -> dict:
        out = {}
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                v = v.to(self.device, non_blocking=True)
                if self.cfg.channels_last and v.dim() == 4:
                    v = v.contiguous(memory_format=torch.channels_last)
            out[k] = v
        return out

    def _write_preview(self) -> None:
        vutils = import_torchvision("torchvision.utils")

        # Eager: rare, and CUDA-graph replays would overwrite G_B's first output with its second.
        with torch.compiler.set_stance("force_eager"):
            grid = self.model.preview(self._to_device(self.preview_batch)).cpu()
        image = vutils.make_grid(grid, nrow=self.model.preview_nrow, padding=2)
        it = self.counters.iteration
        path = self.preview_dir / f"iter_{it:08d}.png"
        try:  # previews are for watching; a full disk stops the run at the next checkpoint, with its message
            atomic_write(path, lambda f: vutils.save_image(image, f, format="png"))
        except (CheckpointError, OSError) as e:
            log.warning("preview not written: %s", e)
        if self.writer:
            self.writer.add_image("preview", image, it)

    def _check_finite(self) -> dict[str, torch.Tensor] | None:
        """Raise TrainingDiverged if any loss since the last check was NaN or infinite, or an
        update was skipped for NaN/inf gradients; else return the latest losses. Losses and
        gradient flags stay on the device between checks (at log steps and before every save),
        so the loop does not wait for the GPU after every step; a bad iteration is still named
        exactly and never saved.

        Under torchrun every rank checks at the same iterations, and the pending losses are first
        averaged over the ranks (one collective): the logged figures are the global batch's, and
        a NaN on any rank stops every rank at once instead of leaving the others in a collective.
        (Gradients are already averaged over the ranks, so their flags agree.)"""
        pending, self._pending = self._pending, []
        if pending and self.dist.enabled:
            keys = list(pending[0][1])
            table = torch.stack([torch.stack([losses[k].detach().float() for k in keys]) for _, losses, _ in pending])
            table = distributed.average(table, self.dist.world_size)
            pending = [(it, dict(zip(keys, row)), grads) for (it, _, grads), row in zip(pending, table)]
        if not pending:
            return None
        losses_ok = torch.isfinite(torch.cat([torch.stack(list(l.values())).float() for _, l, _ in pending])).all()
        flags = [ok for _, _, grads in pending for ok in grads.values()]
        if bool(losses_ok) and (not flags or bool(torch.stack(flags).all())):
            return pending[-1][1]
        for it, losses, grads in pending:
            bad = [k for k, v in losses.items() if not torch.isfinite(v).all()]
            if bad:
                raise self._diverged(f"loss {', '.join(bad)} became {losses[bad[0]].item()} at iteration {it}")
            bad = [k for k, ok in grads.items() if not bool(ok)]
            if bad:
                raise self._diverged(f"gradients of {' and '.join(bad)} became NaN or infinite at iteration {it} "
                                     "(that update was skipped)")

    def _pending_means(self) -> dict[str, float]:
        """Each loss averaged over the iterations not yet checked (this rank's): the bar's smoothed figures."""
        if not self._pending:
            return {}
        keys = list(self._pending[-1][1])
        table = torch.stack([torch.stack([losses[k].detach().float() for k in keys])
                             for _, losses, _ in self._pending if list(losses) == keys])
        return dict(zip(keys, table.mean(0).tolist()))

    def _diverged(self, what: str) -> TrainingDiverged:
        if (self.ckpt_dir / "latest.pt").exists():
            where = (f"The last good checkpoint is in {self.ckpt_dir} (try a lower --lr or --precision fp32, "
                     "then --resume)")
        else:
            where = "No checkpoint had been written yet (try a lower --lr or --precision fp32)"
        return TrainingDiverged(f"{what}; stopped without saving it. {where}", what)

    def _roll_back(self, err: TrainingDiverged) -> None:
        """After a NaN: reload the last checkpoint and lower the learning rates, if --nan-retries
        allows and a checkpoint exists; else stop the run with ``err``, saying why not. Every rank
        gets here at the same iteration (the losses they check are averaged) and reads the same file."""
        latest = self.ckpt_dir / "latest.pt"
        if not self.cfg.nan_retries:
            raise TrainingDiverged(f"{err}; --nan-retries N rolls back and lowers the learning rates "
                                   "automatically") from None
        if self.rollbacks >= self.cfg.nan_retries:
            raise TrainingDiverged(f"{err}; {self.rollbacks} roll-back(s) with lower learning rates did not "
                                   "help") from None
        if not latest.exists():
            raise TrainingDiverged(f"{err}; there is no checkpoint to roll back to yet") from None
        self.rollbacks += 1
        bad_iteration = self.counters.iteration
        # The checkpoint's rates carry the roll-backs made before it was written; lower them to
        # nan_lr_factor ** (all roll-backs so far) of the schedule's.
        scale = self.lr_scale * self.cfg.nan_lr_factor
        state, latest = load_newest_intact(self.ckpt_dir)
        self.load_state(state)  # sets lr_scale to the checkpoint's
        scale_learning_rates(self.model, scale / self.lr_scale)
        self.lr_scale = scale
        self._pending = []
        lr = self.model.optimizers["G"].param_groups[0]["lr"]
        if self.dist.is_main:
            log.warning("%s: roll-back %d of %d to iteration %d (%s), learning rates x %g (G now %.3g)",
                        err.what, self.rollbacks, self.cfg.nan_retries, self.counters.iteration, latest,
                        self.cfg.nan_lr_factor, lr)
        if self.writer:
            self.writer.add_text("nan_rollback", f"iteration {bad_iteration} -> {self.counters.iteration}, "
                                                 f"learning rates x {self.cfg.nan_lr_factor}", bad_iteration)

    def _enable_compile(self) -> None:
        """Compile each network in place (``nn.Module.compile``: its eager forward stays; the
        compiler's stance, set per step, decides which one runs); discriminators that the
        objective differentiates twice stay eager."""
        backend = os.environ.get("CYCLEGAN_COMPILE_BACKEND", "inductor")
        options = {"mode": self.fast_path.compile_mode} if backend == "inductor" else {"backend": backend}
        eager = self.model.compile_networks(**options)
        if eager and self.dist.is_main:
            log.info("compile: %s stay eager (the gradient penalty differentiates through them twice, which "
                     "compiled code cannot)", ", ".join(eager))

    def _guarded_steps(self) -> int:
        """How many of the next steps run guarded: the fast path's first ones, past the step
        graph's warm-ups and first capture of each kind of step."""
        if not (self.fast_path.compile or self.step_graph):
            return 0
        warmup = self.step_graph.warmup if self.step_graph else 0
        return GUARDED_STEPS + (warmup + 1) * self.model.d_steps

    # -- the loop ----------------------------------------------------------------------------
    def fit(self) -> Path:
        """Train until the last epoch or ``max_iters``; returns the path of the last checkpoint.
        Raises :class:`TrainingStopped` after saving when SIGINT/SIGTERM asked to stop."""
        cfg, model, c = self.cfg, self.model, self.counters
        main = self.dist.is_main  # rank 0 alone logs and writes files
        self.writer = SafeWriter(self.run_dir / "tb", purge_step=c.iteration or None) if main else None
        if self.fast_path.compile:
            self._enable_compile()
        self._guard_left = self._guarded_steps()
        model.train()
        last = None
        start = time.time()
        # Training shapes are fixed: cuDNN may time its algorithms once (restored when fit returns).
        # Log lines (checkpoints, warnings) print above the bar instead of being glued onto it.
        with cudnn_benchmark(self.device), StopFlag() as stop, logging_redirect_tqdm():
            try:
                while self.counters.epoch < self.total_epochs:
                    c = self.counters  # a roll-back replaces the counters
                    try:
                        stopped, last = self._run_epoch(stop, main, last)
                    except TrainingDiverged as e:
                        self._roll_back(e)  # or stops the run
                        continue
                    if stopped:
                        raise TrainingStopped(stop.requested, last)
                    if cfg.max_iters is not None and c.iteration >= cfg.max_iters:
                        break
                    # End of epoch: schedules step after the optimizer (never before the first step).
                    c.epoch += 1
                    c.epoch_samples = 0
                    model.step_schedulers()
                    # A checkpoint costs about a second at ngf 64 (hundreds of MB): on a small data set
                    # and a fast GPU, one per epoch end is a real share of the run (--save-every-epochs).
                    every = cfg.save_every_epochs
                    if c.epoch >= self.total_epochs or (every and c.epoch % every == 0):
                        try:
                            last = self.save()
                        except TrainingDiverged as e:
                            self._roll_back(e)
            finally:
                self._close_bar()
                if self.writer:
                    self.writer.close()
                self._stop_workers()
                self._record_what_ran()
        if self.export and main:
            self.exports.append(self.export(self.run_dir, self.counters.iteration))
        self.elapsed = time.time() - start
        log.info("finished at iteration %d (%s) in %.1f s", self.counters.iteration, self._epoch_label(), self.elapsed)
        return last if last else self.save()

    def _record_what_ran(self) -> None:
        """config.yaml's ``ran``: what the fast path did (the fast_path section says what was
        chosen before the first step)."""
        if self.step_graph:
            self.ran.update(step_graph_captures=self.step_graph.captures, step_graph_replays=self.step_graph.replays,
                            step_graph_failed=self.step_graph.failed)
        if self.ran:
            try:
                self._write_config()
            except (CheckpointError, OSError) as e:
                log.warning("config.yaml not updated: %s", e)

    def _stop_workers(self) -> None:
        """Stop the DataLoader's persistent worker processes now, rather than whenever the trainer
        is garbage-collected (the MNIST trainer's export callback keeps it in a reference cycle)
        or at interpreter exit: they hold a copy of the data set and the export and evaluation
        that follow need the memory. A later fit() starts new ones."""
        it = getattr(self.loader, "_iterator", None)  # the persistent workers' iterator, if any
        self.loader._iterator = None
        if hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()

    def _epoch_label(self) -> str:
        """``epoch E/T``, counted from 1 as in the progress bar: the epoch the last iteration
        belonged to (the one in progress, or the one just completed)."""
        c = self.counters
        current = c.epoch + 1 if c.epoch_samples or c.iteration == 0 else c.epoch
        return f"epoch {current}/{self.total_epochs}"

    def _progress_bar(self, main: bool):
        """The current epoch's bar; with max_iters, one bar toward that iteration (its ETA is the
        run's), relabelled at each epoch."""
        from tqdm import tqdm

        cfg, c = self.cfg, self.counters
        desc = f"epoch {c.epoch + 1}/{self.total_epochs}"
        if cfg.max_iters is None:
            per_epoch = math.ceil(self.sampler.per_rank / cfg.batch_size)
            total, initial = per_epoch, c.epoch_samples // cfg.batch_size
        else:
            if self._bar is not None:
                self._bar.set_description(desc, refresh=False)
                self._bar.n = c.iteration  # a NaN roll-back moves the counters back
                return self._bar
            total, initial = cfg.max_iters, c.iteration
        self._bar = tqdm(total=total, initial=initial, desc=desc, unit="it", dynamic_ncols=True, mininterval=1.0,
                         file=sys.stderr, disable=not main)
        return self._bar

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _run_epoch(self, stop: StopFlag, main: bool, last: Path | None) -> tuple[bool, Path | None]:
        """The rest of the current epoch (or up to max_iters). Returns (stopped by a signal, the
        last checkpoint written)."""
        cfg, model, c = self.cfg, self.model, self.counters
        self.sampler.set_epoch(c.epoch, start=c.epoch_samples)
        bar = self._progress_bar(main)
        bar_at = None  # the iteration whose losses the bar shows last
        try:
            for batch in self.loader:
                losses = self._step(self._to_device(batch))
                c.iteration += 1
                c.epoch_samples += _batch_len(batch)
                self._pending.append((c.iteration, losses, dict(model.grads_finite)))
                log_now = c.iteration % cfg.log_every == 0 or c.iteration == 1
                # The bar's losses: their mean since its last refresh, every BAR_EVERY iterations and at
                # this epoch's (or this process's, after --resume) first step. Same iterations on every rank.
                refresh = bar_at is None or c.iteration - bar_at >= BAR_EVERY
                if refresh:
                    bar_at = c.iteration
                    if main:
                        bar.set_postfix({k: f"{v:.3f}" for k, v in self._pending_means().items()}, refresh=False)
                bar.update(1)
                if log_now or refresh:
                    losses = self._check_finite()  # averaged over the ranks under torchrun
                if main and log_now:
                    values = {k: float(v) for k, v in losses.items()}
                    for k, v in values.items():
                        self.writer.add_scalar(f"loss/{k}", v, c.iteration)
                    for k, opt in model.optimizers.items():
                        self.writer.add_scalar(f"lr/{k}", opt.param_groups[0]["lr"], c.iteration)
                if main and cfg.preview_every and (c.iteration % cfg.preview_every == 0 or c.iteration == 1):
                    self._write_preview()
                done = cfg.max_iters is not None and c.iteration >= cfg.max_iters
                stopping = bool(stop.requested)
                if self.dist.enabled:  # every rank stops at the same iteration, agreed every few
                    stopping = ((c.iteration % STOP_CHECK_EVERY == 0 or done)
                                and distributed.any_rank(stopping, self.dist.world_size))
                    if stopping:
                        stop.requested = stop.requested or "a stop request on another rank"
                if stopping or done or (cfg.save_every and c.iteration % cfg.save_every == 0):
                    last = self.save()
                if stopping:
                    self._close_bar()
                    if main:
                        print(f"stopped by {stop.requested} at iteration {c.iteration} ({self._epoch_label()}); "
                              "resume with --resume "
                              f"(checkpoint {last})", file=sys.stderr)
                    return True, last
                if done:
                    break
        finally:
            if cfg.max_iters is None or stop.requested:
                self._close_bar()
        return False, last

    def _step(self, batch: dict) -> dict[str, torch.Tensor]:
        if self._guard_left <= 0:
            return self._fast_step(batch)
        # The fast path's first steps: any exception from inside them (compiling, capturing, a
        # replay; whatever its type or message) ends in one line, the state as it was before the
        # step, and the same step again eagerly. An exception the eager step raises too is the
        # model's own and stops the run as usual.
        self._guard_left -= 1
        saved = self._snapshot()
        try:
            return self._fast_step(batch)
        except Exception as e:
            what = "the whole-step CUDA graph" if self.step_graph else "the compiled step"
            reason = fastpath.describe_error(e, 200)
            self._go_eager(saved, f"{what} failed at iteration {self.counters.iteration + 1} ({reason})")
        return self._fast_step(batch)

    def _fast_step(self, batch: dict) -> dict[str, torch.Tensor]:
        train_step = self.step_graph.step if self.step_graph else self.model.train_step
        with torch.compiler.set_stance(self._stance):
            return train_step(batch)

    def _snapshot(self) -> dict:
        """A copy of everything a training step changes: weights and buffers (the EMA's too),
        optimizer and scaler state, the model's own state (pools, random streams, counters) and
        the global random streams. Local to this process (no collective)."""
        m = self.model
        return _clone_tensors({
            "model": m.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in m.optimizers.items()},
            "scaler": m.precision.scaler.state_dict(),
            "extra": m.extra_state(),
            "rng": rng_state(),
        })

    def _go_eager(self, saved: dict, what: str) -> None:
        """After a failed fast step: back to the state ``saved`` before it, and eager from now on
        (no compiled forward, no step graph), said in one line and in config.yaml."""
        m = self.model
        if self.step_graph:
            self.step_graph.reset()  # the pools back to lists, the planned step's settings undone
            self.ran.update(step_graph_captures=self.step_graph.captures, step_graph_replays=self.step_graph.replays)
            self.step_graph = None
        self._stance = "force_eager"
        self._guard_left = 0
        for opt in m.optimizers.values():
            opt.zero_grad(set_to_none=True)  # gradients a capture left pointing into its memory
        m.load_state_dict(saved["model"])
        for k, o in m.optimizers.items():
            o.load_state_dict(saved["optimizers"][k])
        m.use_fused_optimizers()
        if saved["scaler"]:
            m.precision.scaler.load_state_dict(saved["scaler"])
        m.load_extra_state(saved["extra"])
        set_rng_state(saved["rng"])
        m.grads_finite = {}
        self.ran["fell_back"] = what
        if self.dist.is_main:
            log.warning("%s; going on eagerly from the same state", what)
        self.fast_path = dataclasses.replace(self.fast_path, compile=False, compile_mode=None, step_graph=None,
                                             why=f"{self.fast_path.why}; {what}: eager from then on")
        self._write_config()


def scale_learning_rates(model: GANModel, factor: float) -> None:
    """Multiply every optimizer's learning rate, and its schedule's base, by ``factor`` (the
    linear scaling rule for a ``factor`` times larger global batch). A resumed run then loads
    the scaled rates stored in its checkpoint."""
    for opt in model.optimizers.values():
        for group in opt.param_groups:
            group["lr"] *= factor
            if "initial_lr" in group:
                group["initial_lr"] *= factor
    for sched in model.schedulers.values():
        sched.base_lrs = [lr * factor for lr in sched.base_lrs]
        sched._last_lr = [g["lr"] for g in sched.optimizer.param_groups]


def _clone_tensors(tree):
    """``tree`` (dicts, lists, tuples) with every tensor copied: a snapshot that later in-place
    updates (Adam's, the pools') do not change."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().clone()
    if isinstance(tree, dict):
        return {k: _clone_tensors(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_clone_tensors(v) for v in tree)
    return copy.deepcopy(tree)


def _image_side(sample: dict | None) -> int | None:
    """The longer side of a sample's images (every sample's, with static shapes): what
    core.fastpath weighs compiling by. None without a sample."""
    if sample is None:
        return None
    return max((max(v.shape[-2:]) for v in sample.values() if isinstance(v, torch.Tensor) and v.dim() >= 3),
               default=None)


def _same_shapes(items: list[dict]) -> list[dict]:
    """The samples whose tensors have the first sample's shapes (with --preprocess none the
    images keep their own sizes, and only one size can be stacked into the preview batch)."""
    def shapes(item: dict) -> list:
        return [tuple(v.shape) for v in item.values() if isinstance(v, torch.Tensor)]

    return [item for item in items if shapes(item) == shapes(items[0])]


def _batch_len(batch: dict) -> int:
    return next(v.shape[0] for v in batch.values() if isinstance(v, torch.Tensor))
