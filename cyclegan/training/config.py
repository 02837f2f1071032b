"""The run config tree: what one training run is, in five sections.

    RunConfig
      kind      cyclegan, cut, fastcut or mnist (cyclegan.training.kinds)
      model     the networks and the objective (CycleGANConfig, CUTConfig, MnistGANConfig)
      optim     OptimConfig: Adam for the generators and for the discriminators
      schedule  ScheduleConfig: epochs and the per-epoch learning-rate policy
      data      what the model kind trains on (UnpairedDataConfig, MnistDataConfig)
      loop      LoopConfig: run folder, runtime, checkpoint and log cadence
      evaluate  what runs after training (the MNIST GAN's FID/KID), or None

Field names are unique across the sections, so a flat ``{field: value}`` (command-line flags, the
keyword arguments of :func:`cyclegan.train`, a preset, the flat configs older checkpoints
stored) routes to the tree without ambiguity (:meth:`RunConfig.from_flat`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from cyclegan.models.gan import LR_POLICIES, GANModel, make_scheduler


class ConfigError(ValueError):
    """Settings that do not make a run: unknown names (``unknown``) or values out of range."""

    def __init__(self, message: str, unknown: list[str] | None = None) -> None:
        super().__init__(message)
        self.unknown = unknown or []


@dataclass
class OptimConfig:
    """Adam for all generators together and all discriminators together."""

    lr: float = 2e-4
    lr_d: float | None = None        # D's learning rate (two time-scale update rule); None: lr
    beta1: float = 0.5
    beta2: float = 0.999

    def validate(self) -> None:
        for name in ("lr", "lr_d"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{name} must be >= 0, got {value}")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    def build(self, model: GANModel) -> dict[str, torch.optim.Optimizer]:
        """One Adam per side over the model's parameter groups (:meth:`GANModel.optimizer_groups`),
        torch's default implementation (the Trainer switches to the fused one on CUDA and CPUs)."""
        lrs = {"G": self.lr, "D": self.lr if self.lr_d is None else self.lr_d}
        optimizers = {}
        for side, groups in model.optimizer_groups().items():
            opt = torch.optim.Adam(groups[0], lr=lrs[side], betas=(self.beta1, self.beta2))
            for params in groups[1:]:
                opt.add_param_group({"params": params})
            optimizers[side] = opt
        return optimizers


@dataclass
class ScheduleConfig:
    """How long to train and the per-epoch learning-rate policy (:func:`~cyclegan.models.gan.lr_factor`)."""

    lr_policy: str = "linear"
    n_epochs: int = 100              # epochs at the initial learning rate
    n_epochs_decay: int = 100        # epochs of linear decay to zero
    lr_decay_iters: int = 50         # step policy: epochs between x0.1 steps

    @property
    def total_epochs(self) -> int:
        return self.n_epochs + self.n_epochs_decay

    def validate(self) -> None:
        if self.lr_policy not in LR_POLICIES:
            raise ConfigError(f"unknown lr policy {self.lr_policy!r}; choose one of: {', '.join(LR_POLICIES)}")
        if self.n_epochs < 0 or self.n_epochs_decay < 0 or self.lr_decay_iters < 1:
            raise ConfigError("n_epochs and n_epochs_decay must be >= 0 and lr_decay_iters >= 1")

    def build(self, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, torch.optim.lr_scheduler.LRScheduler]:
        return {k: make_scheduler(opt, self.lr_policy, self.n_epochs, self.n_epochs_decay, self.lr_decay_iters)
                for k, opt in optimizers.items()}


@dataclass
class LoopConfig:
    """What every GAN's training loop needs: run folder, runtime, checkpoint and log cadence."""

    name: str = "experiment"
    runs_dir: str = "runs"
    batch_size: int = 1               # per process: under torchrun the global batch is batch_size * world size
    scale_lr: bool = False            # under torchrun: learning rates x world size (linear scaling rule)
    num_workers: int = -1             # -1: one per spare core, at most 4
    device: str = "auto"
    precision: str = "auto"           # auto: what core.fastpath picks for this machine; fp32 is the reference
    channels_last: bool = False
    compile: bool | None = None       # None: auto (core.fastpath); True/False as given
    compile_mode: str | None = None   # torch.compile mode: None (default), reduce-overhead (CUDA graphs), max-autotune
    step_graph: bool = False          # the whole training step as one CUDA graph (training.step_graph)
    seed: int = 0
    serial_batches: bool = False      # data in file order (CycleGAN: B[i] with A[i]); tests, debugging
    max_iters: int | None = None      # stop early after this many iterations
    save_every: int = 5000            # iterations between checkpoints
    save_every_epochs: int = 1        # also at every N-th epoch end (0: never); the last epoch always saves
    keep: int = 3                     # numbered checkpoints kept besides latest.pt
    preview_every: int = 500
    log_every: int = 50
    preview_count: int = 4
    nan_retries: int = 0              # on a NaN/inf loss: roll back to the last checkpoint this many times
    nan_lr_factor: float = 0.5        # ... multiplying the learning rates by this at each roll-back

    #: fields that may differ when resuming (they do not change what is computed)
    RUNTIME_FIELDS = ("max_iters", "save_every", "save_every_epochs", "keep", "preview_every", "log_every", "num_workers",
                      "device", "runs_dir", "compile", "compile_mode", "step_graph", "nan_retries", "nan_lr_factor")

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name


SECTIONS = ("model", "optim", "schedule", "data", "loop", "evaluate")


@dataclass
class RunConfig:
    """One training run (see the module docstring). ``given`` names the fields set explicitly
    (flags, keyword arguments): on resume, those of them that are runtime fields replace the
    stored ones. It is not stored."""

    kind: str
    model: Any
    data: Any
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    evaluate: Any = None
    given: frozenset = field(default_factory=frozenset, compare=False, repr=False)

    @classmethod
    def from_flat(cls, kind: str, classes: dict[str, type | None], values: dict,
                  given: frozenset = frozenset()) -> "RunConfig":
        """Route ``{field: value}`` to the sections whose dataclasses (``classes``, by section
        name) have those fields; a name no section has raises :class:`ConfigError`."""
        owner = {f.name: section for section, dc in classes.items() if dc for f in fields(dc)}
        unknown = sorted(k for k in values if k not in owner)
        if unknown:
            raise ConfigError(f"not a setting of a {kind} run: {', '.join(unknown)}", unknown)
        parts: dict[str, dict] = {section: {} for section in classes}
        for k, v in values.items():
            parts[owner[k]][k] = v
        built = {section: (dc(**parts[section]) if dc else None) for section, dc in classes.items()}
        return cls(kind=kind, given=frozenset(given), **built)

    def flat(self) -> dict:
        """Every field of every section in one dict (the inverse of :meth:`from_flat`)."""
        return {k: v for section in self.sections().values() for k, v in asdict(section).items()}

    def sections(self) -> dict[str, Any]:
        return {s: getattr(self, s) for s in SECTIONS if getattr(self, s) is not None}

    def to_dict(self) -> dict:
        """The nested form stored in checkpoints and config.yaml: ``kind`` and one dict per section."""
        return {"kind": self.kind, **{s: asdict(v) for s, v in self.sections().items()}}

    def validate(self) -> None:
        for section in self.sections().values():
            if hasattr(section, "validate"):
                section.validate()

    def with_runtime(self, newer: "RunConfig") -> "RunConfig":
        """This (stored) run with the runtime fields ``newer`` was given explicitly, and its
        name and runs folder: what a resumed run uses."""
        runtime = {"name", "runs_dir"} | (set(newer.given) & runtime_fields(self))
        changes = {}
        for s, section in self.sections().items():
            names = {f.name for f in fields(section)} & runtime
            if names:
                changes[s] = replace(section, **{k: getattr(getattr(newer, s), k) for k in names})
        return replace(self, **changes)


def runtime_fields(run: RunConfig) -> set[str]:
    """Fields that may change when a run resumes, from each section's ``RUNTIME_FIELDS``."""
    return {name for section in run.sections().values() for name in getattr(section, "RUNTIME_FIELDS", ())}


def with_optimizers(model: GANModel, optim: OptimConfig | None = None,
                    schedule: ScheduleConfig | None = None) -> GANModel:
    """``model`` with Adam optimizers (and, given ``schedule``, schedulers) attached: what the
    Trainer does, for code that runs ``train_step`` itself (benchmarks, quality protocols)."""
    model.optimizers = (optim or OptimConfig()).build(model)
    model.schedulers = schedule.build(model.optimizers) if schedule else {}
    return model
