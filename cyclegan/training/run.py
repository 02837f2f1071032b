"""One entry point for every model kind: :func:`run` trains (or resumes) the run a
:class:`~cyclegan.training.config.RunConfig` describes; :func:`train` is the Python API over it,
with the same resolution as ``cyclegan train``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from cyclegan.core.checkpoint import CheckpointError, load_newest_intact
from cyclegan.data.resident import describe as describe_data_path
from cyclegan.training import distributed, kinds
from cyclegan.training.config import ConfigError, RunConfig, runtime_fields
from cyclegan.training.loop import Trainer
from cyclegan.training.runtime import seed_everything

log = logging.getLogger("cyclegan.train")


def prepare_run(run: RunConfig, resume: bool) -> tuple[dict | None, RunConfig]:
    """Decide between a new run and a resumed one; returns (checkpoint state or None, config).

    On resume the config stored in the checkpoint wins, except the runtime fields ``run`` was
    given explicitly (max_iters, save_every, device, ...; see ``RUNTIME_FIELDS``). A new run
    never overwrites an existing one."""
    latest = run.loop.run_dir / "checkpoints" / "latest.pt"
    if resume and (latest.exists() or any(latest.parent.glob("iter_*.pt"))):
        state, path = load_newest_intact(latest.parent)
        state["resumed_from"] = str(path)
        try:
            stored = kinds.from_state(state)
            stored.validate()  # the stored values, checked as the flags' would be
        except (TypeError, ValueError, KeyError, AttributeError) as e:  # a crafted or damaged stored config
            raise CheckpointError(f"{path}: the stored run config is not usable ({type(e).__name__}: "
                                  f"{str(e)[:200]}); the checkpoint is damaged or was not written by cyclegan "
                                  "train") from None
        _warn_ignored(stored, run)
        return state, stored.with_runtime(run)
    if resume:
        log.info("no checkpoint at %s: starting a new run", latest)
    elif latest.exists():
        raise CheckpointError(f"{run.loop.run_dir} already holds a run (checkpoint {latest}); pass --resume to "
                              "continue it, or choose another --name")
    return None, run


def _warn_ignored(stored: RunConfig, given: RunConfig) -> None:
    """Settings given for a resumed run that it does not take (they would change what is
    computed): said once, so nobody believes a resumed run got a new learning rate."""
    if stored.kind != given.kind:
        if "kind" in given.given:
            raise CheckpointError(f"--model {given.kind}: {given.loop.run_dir} is a {stored.kind} run; resume it "
                                  f"with --model {stored.kind} (or without --model), or train a new run under "
                                  "another --name")
        return
    old, new = stored.flat(), given.flat()
    ignored = [f"{k} {new[k]} (the run's: {old[k]})" for k in sorted(given.given - runtime_fields(stored))
               if k in old and k in new and old[k] != new[k] and k not in ("name", "runs_dir")]
    if ignored:
        log.warning("ignored on resume, the run keeps its stored settings: %s", ", ".join(ignored))


def run(config: RunConfig, resume: bool = False) -> Path:
    """Train (or, with ``resume``, continue) the run ``config.loop.run_dir``, whatever its model
    kind; returns the last checkpoint. Under torchrun, one data-parallel rank
    (cyclegan.training.distributed); rank 0 alone writes files, exports and evaluates."""
    with distributed.process_group(config.loop.device):
        state, config = prepare_run(config, resume)
        seed_everything(config.loop.seed)
        job = kinds.kind(config.kind).training.job(config)
        trainer = Trainer(job.model, config, job.dataset, export=job.export)
        trainer.start(state)
        if trainer.dist.is_main:
            _print_header(trainer, config, job.data_summary, job.describe(trainer))
        last = trainer.fit()
        if job.finish and trainer.dist.is_main:
            job.finish(trainer, trainer.exports)
        return last


def _print_header(trainer: Trainer, config: RunConfig, data_summary: str, model_text: str) -> None:
    s, fast = config.schedule, trainer.fast_path
    print(data_summary, file=sys.stderr)
    print(describe_data_path(trainer.loader), file=sys.stderr)
    print(f"fast path: {fast.describe()} ({fast.why})", file=sys.stderr)
    print(f"run {config.loop.run_dir} | device {trainer.device} | {fast.describe()} | {model_text} | "
          f"{s.n_epochs}+{s.n_epochs_decay} epochs"
          + (f" | stop at iteration {config.loop.max_iters}" if config.loop.max_iters else ""), file=sys.stderr)


def train(dataroot: str | Path | None = None, *, model: str = "cyclegan", preset: str | None = None,
          resume: bool = False, **options) -> Path:
    """Train from Python as ``cyclegan train`` does, with the same defaults. ``options`` are the
    fields of the run's sections (cyclegan.training.config): the model's (netG, ngf, lambda_A,
    ...), optimisation (lr, beta1, ...), schedule (n_epochs, ...), data (size, ...) and loop
    (name, batch_size, max_iters, ...). ``model``: cyclegan, cut, fastcut or mnist. Returns the
    last checkpoint."""
    if dataroot is not None:
        options["dataroot"] = str(dataroot)
    try:
        config = kinds.resolve(model, options, preset)
    except ConfigError as e:
        if e.unknown:
            raise TypeError(f"train() got unknown options {e.unknown}; see cyclegan.training.config") from None
        raise
    return run(config, resume=resume)
