"""The model kinds a run can train, as plug-ins: each names its config sections, its defaults
and presets, and the training module whose ``job(run)`` builds its model and data.

What a kind must provide is written as code, not as a comment: :class:`ModelConfig` (its model
section), :class:`KindTraining` (its training module), and a model that subclasses
:class:`~cyclegan.models.gan.GANModel` and implements :data:`MODEL_METHODS`. :func:`contract_gaps`
holds a kind against all three (tests/test_pix2pix.py runs it over every kind in :data:`KINDS`), and a
type checker holds ``Kind``'s fields to the protocols. Adding a kind: a model module, a training
module, one entry here (pix2pix: models/pix2pix.py, data/paired.py, training/pix2pix.py).

Resolution is the same for ``cyclegan train``, ``cyclegan mnist train`` and :func:`cyclegan.train`:
the sections' dataclass defaults, then the kind's own defaults, then a preset, then what was
given, then the kind's rules (``adjust``). So the command line and Python agree.
"""

from __future__ import annotations

import importlib
from dataclasses import MISSING, dataclass, field, fields
from types import ModuleType
from typing import Any, Callable, Protocol, cast, runtime_checkable

from torch import nn

from cyclegan.models.cut import MODES, CUTConfig
from cyclegan.models.cut import PRESETS as CUT_PRESETS
from cyclegan.models.cyclegan import PAPER_MODEL, PRESETS as CYCLEGAN_PRESETS, CycleGANConfig
from cyclegan.models.gan import GANModel
from cyclegan.models.mnist import MnistGANConfig
from cyclegan.models.pix2pix import PRESETS as PIX2PIX_PRESETS, Pix2PixConfig
from cyclegan.training import mnist as mnist_training
from cyclegan.training.config import ConfigError, LoopConfig, OptimConfig, RunConfig, ScheduleConfig
from cyclegan.training import pix2pix as pix2pix_training
from cyclegan.training.cyclegan import UnpairedDataConfig


@runtime_checkable
class ModelConfig(Protocol):
    """A kind's model section: a dataclass stored in checkpoints and exports, read back with
    ``from_dict`` (fields it lacks take the values they had before they existed)."""

    @classmethod
    def from_dict(cls, d: dict) -> Any: ...

    def validate(self) -> None: ...


@runtime_checkable
class KindTraining(Protocol):
    """A kind's training module (``Kind.module``)."""

    def job(self, run: RunConfig) -> Any: ...                     # -> cyclegan.training.loop.Job

    def new_model(self, run: RunConfig) -> GANModel: ...          # freshly initialised

    def example_batch(self, run: RunConfig, batch_size: int, size: int,
                      generator: Any) -> dict: ...                # a random training batch (benchmarks)


#: what a kind's model (a GANModel) implements over the base (which raises NotImplementedError)
MODEL_METHODS = ("generate", "generator_loss", "discriminator_loss", "preview", "config_dict")


@dataclass(frozen=True)
class Kind:
    name: str
    model: type[ModelConfig]
    data: type
    #: the training module of the kind: job(run) -> Job builds a run, new_model(run) its model,
    #: example_batch(run, batch_size, size, generator) a random batch (benchmarks)
    module: str
    evaluate: type | None = None
    defaults: dict = field(default_factory=dict)          # flat: over the sections' defaults
    presets: dict[str, dict] = field(default_factory=dict)  # name -> flat values
    adjust: Callable[[dict, dict], dict] | None = None     # (given, resolved) -> resolved
    #: for configs stored before a field existed: the value it had then (the paper's)
    stored_defaults: dict = field(default_factory=dict)

    def classes(self) -> dict[str, type | None]:
        return {"model": self.model, "optim": OptimConfig, "schedule": ScheduleConfig, "data": self.data,
                "loop": LoopConfig, "evaluate": self.evaluate}

    def defaults_flat(self) -> dict:
        """Every field's default for this kind (what ``--help`` shows)."""
        values = {f.name: f.default for dc in self.classes().values() if dc for f in fields(dc)
                  if f.default is not MISSING}
        return {**values, **self.defaults}

    @property
    def training(self) -> KindTraining:
        """The kind's training module (see ``module``)."""
        return cast(KindTraining, importlib.import_module(self.module))


def contract_gaps(k: Kind, run: RunConfig | None = None) -> list[str]:
    """What kind ``k`` lacks of the contract (empty: none). With ``run`` (a resolved run of the
    kind), its model is built and checked too."""
    gaps = [f"model config {k.model.__name__} lacks {name}" for name in ("from_dict", "validate")
            if not callable(getattr(k.model, name, None))]
    module: ModuleType = importlib.import_module(k.module)
    gaps += [f"{k.module} lacks {name}()" for name in ("job", "new_model", "example_batch")
             if not callable(getattr(module, name, None))]
    if run is not None:
        model = k.training.new_model(run)
        if not isinstance(model, GANModel):
            return [*gaps, f"{k.module}.new_model returns a {type(model).__name__}, not a GANModel"]
        gaps += [f"{type(model).__name__} does not implement {name}" for name in MODEL_METHODS
                 if getattr(type(model), name, None) is getattr(GANModel, name, None)]
        if not isinstance(model.generators, nn.ModuleDict) or not isinstance(model.discriminators, nn.ModuleDict):
            gaps.append(f"{type(model).__name__} must set generators and discriminators (nn.ModuleDicts)")
    return gaps


def _image_rules(given: dict, values: dict) -> dict:
    """Both domains are read with one channel count; sizes up to 128 pick ResNet-6 unless a
    generator is given (the paper's choice for 128x128 images)."""
    values = {**values, "output_nc": values["input_nc"]}
    if "netG" not in given and values["size"] <= 128:
        values["netG"] = "resnet_6blocks"
    return values


def _flat_presets(presets: dict[str, tuple[dict, dict]]) -> dict[str, dict]:
    return {name: {**model, **train} for name, (model, train) in presets.items()}


KINDS: dict[str, Kind] = {
    "cyclegan": Kind("cyclegan", CycleGANConfig, UnpairedDataConfig, "cyclegan.training.cyclegan",
                     presets=_flat_presets(CYCLEGAN_PRESETS), adjust=_image_rules, stored_defaults=PAPER_MODEL),
    **{mode: Kind(mode, CUTConfig, UnpairedDataConfig, "cyclegan.training.cyclegan",
                  defaults={**settings, "model": mode}, presets=_flat_presets(CUT_PRESETS[mode]), adjust=_image_rules)
       for mode, settings in MODES.items()},
    "pix2pix": Kind("pix2pix", Pix2PixConfig, pix2pix_training.PairedDataConfig, "cyclegan.training.pix2pix",
                    presets=_flat_presets(PIX2PIX_PRESETS), adjust=pix2pix_training.adjust),
    "mnist": Kind("mnist", MnistGANConfig, mnist_training.MnistDataConfig, "cyclegan.training.mnist",
                  evaluate=mnist_training.MnistEvalConfig,
                  defaults={**mnist_training.LOOP_DEFAULTS, **mnist_training.SCHEDULE_DEFAULTS},
                  adjust=mnist_training.adjust),
}


def kind(name: str) -> Kind:
    if name not in KINDS:
        raise ConfigError(f"unknown model kind {name!r}; choose one of: {', '.join(KINDS)}")
    return KINDS[name]


def resolve(kind_name: str, given: dict, preset: str | None = None) -> RunConfig:
    """The run config of ``given`` (flat ``{field: value}``, as flags or keyword arguments) for
    a model kind and an optional preset."""
    k = kind(kind_name)
    values = k.defaults_flat()
    if preset is not None:
        if preset not in k.presets:
            raise ConfigError(f"unknown preset {preset!r} for --model {kind_name}; choose one of: "
                              f"{', '.join(k.presets) or 'none'}")
        values.update(k.presets[preset])
    values.update(given)  # a name no section has is refused by RunConfig.from_flat
    if k.adjust:
        values = k.adjust(given, values)
    run = RunConfig.from_flat(kind_name, k.classes(), values, given=frozenset(given))
    run.validate()
    return run


def stored_kind(model_config: dict) -> str:
    """The kind of a stored model config that predates the run config tree."""
    if "z_dim" in model_config:
        return "mnist"
    return str(model_config.get("model") or "cyclegan")


def from_state(state: dict) -> RunConfig:
    """The run config stored in a checkpoint: the nested form (``model_config`` + ``run_config``)
    or the flat one written before the tree (``model_config`` + ``train_config``, with the
    learning rates and epochs inside the model config). Fields that no longer exist are dropped;
    fields that did not exist yet take the values they had then."""
    model = dict(state.get("model_config") or {})
    stored = state.get("run_config")
    if isinstance(stored, dict):
        name = stored["kind"]
        flat = {k: v for section, values in stored.items() if isinstance(values, dict) for k, v in values.items()}
    else:
        name = stored_kind(model)
        flat = dict(state.get("train_config") or {})
    k = kind(name)
    flat = {**k.stored_defaults, **model, **flat}
    classes = k.classes()
    known = {f.name for s, dc in classes.items() if dc and s != "model" for f in fields(dc)}
    run = RunConfig.from_flat(name, {**classes, "model": None}, {key: v for key, v in flat.items() if key in known})
    run.model = k.model.from_dict({key: v for key, v in flat.items() if key not in known})
    return run

