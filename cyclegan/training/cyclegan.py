"""Training a CycleGAN: its run config, dataset, export and the entry point that the
``cyclegan train`` command and :func:`cyclegan.train` call."""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from cyclegan.training import distributed
from cyclegan.core.checkpoint import export_generators
from dataclasses import fields

from cyclegan.models.cut import CUTConfig, build_model, config_from_dict
from cyclegan.models.cut import resolve_preset as resolve_cut_preset
from cyclegan.models.cyclegan import CycleGANConfig, resolve_preset
from cyclegan.models.gan import GANModel
from cyclegan.data.augment_config import AugmentConfig
from cyclegan.data.images import DataError
from cyclegan.data.unpaired import UnpairedImageDataset
from cyclegan.training.loop import LoopConfig, Trainer, prepare_run, seed_everything

log = logging.getLogger("cyclegan.train")


@dataclass
class TrainConfig(LoopConfig):
    """A CycleGAN run: the loop plus its two image folders and augmentation."""

    dataroot: str | None = None
    domain_a: str | None = None       # overrides dataroot/trainA
    domain_b: str | None = None       # overrides dataroot/trainB
    size: int = 256                   # crop size fed to the networks
    load_size: int | None = None      # resize before cropping; default size * 286 / 256
    preprocess: str = "resize_and_crop"
    flip: bool = True

    def resolved_load_size(self) -> int:
        return self.load_size if self.load_size else int(round(self.size * 286 / 256))

    def domain_folders(self) -> tuple[Path, Path]:
        if self.domain_a and self.domain_b:
            return Path(self.domain_a), Path(self.domain_b)
        if not self.dataroot:
            raise DataError("no training data given: pass --dataroot DIR (with DIR/trainA and DIR/trainB) "
                            "or both --domain-a and --domain-b")
        root = Path(self.dataroot)
        if not root.is_dir():
            raise DataError(f"dataroot not found: {root} (expected {root}/trainA and {root}/trainB; "
                            "`cyclegan download dataset NAME` fetches the standard ones)")
        return (Path(self.domain_a) if self.domain_a else root / "trainA",
                Path(self.domain_b) if self.domain_b else root / "trainB")


# --------------------------------------------------------------------------------------------
# CycleGAN entry point
# --------------------------------------------------------------------------------------------


def export_cyclegan(model: GANModel, train_cfg: TrainConfig, path: Path) -> Path:
    """Generators only (CycleGAN: G_A and G_B; CUT: its one), config inside: what translation and
    the app load. With an EMA, its averaged weights are the ones written (``weights: ema`` in the
    metadata)."""
    nets = model.inference_generators()
    meta = {"size": train_cfg.size, "preprocess": train_cfg.preprocess, "name": train_cfg.name,
            "weights": "ema" if nets is model.ema_generators else "last"}
    out = export_generators(dict(nets.items()), model.config_dict(), path, meta)
    log.info("exported generators: %s", out)
    return out


def build_dataset(cfg: TrainConfig, model_cfg: CycleGANConfig | CUTConfig) -> UnpairedImageDataset:
    if model_cfg.input_nc != model_cfg.output_nc:
        raise DataError("unpaired folders are read with one channel count; --input-nc and --output-nc "
                        "must be equal (1 or 3)")
    folder_a, folder_b = cfg.domain_folders()
    aug = AugmentConfig(preprocess=cfg.preprocess, load_size=cfg.resolved_load_size(), crop_size=cfg.size,
                        flip=cfg.flip, channels=model_cfg.input_nc)
    dataset = UnpairedImageDataset(folder_a, folder_b, aug, seed=cfg.seed, serial=cfg.serial_batches)
    dataset.check_batchable(cfg.batch_size)
    return dataset


def resolve_configs(model: dict, train: dict, preset: str | None = None,
                    kind: str = "cyclegan") -> tuple[CycleGANConfig | CUTConfig, TrainConfig]:
    """The configs a run resolves to: the preset's (or our defaults), then the values given. Used by
    ``cyclegan train`` and :func:`train`, so the command line and Python agree; sizes up to 128
    pick ResNet-6 unless a generator is given (the paper's choice for 128x128 images). ``kind``:
    cyclegan, or cut / fastcut (:mod:`cyclegan.models.cut`)."""
    if kind == "cyclegan":
        m, t = resolve_preset(preset, dict(model), dict(train))
    else:
        m, t = resolve_cut_preset(kind, preset, dict(model), dict(train))
    if "input_nc" in m:
        m["output_nc"] = m["input_nc"]
    if "netG" not in model and (t.get("size") or 256) <= 128:
        m["netG"] = "resnet_6blocks"
    return (CycleGANConfig if kind == "cyclegan" else CUTConfig)(**m), TrainConfig(**t)


def train(dataroot: str | Path | None = None, *, preset: str | None = None, resume: bool = False,
          **options) -> Path:
    """Train a CycleGAN from Python, as ``cyclegan train`` does with the same defaults: ``options`` are
    the fields of :class:`TrainConfig` (name, size, batch_size, max_iters, ...) and of
    :class:`CycleGANConfig` (netG, ngf, lambda_A, ...). Returns the last checkpoint."""
    train_fields = {f.name for f in fields(TrainConfig)}
    model_fields = {f.name for f in fields(CycleGANConfig)}
    unknown = sorted(set(options) - train_fields - model_fields)
    if unknown:
        raise TypeError(f"train() got unknown options {unknown}; see TrainConfig and CycleGANConfig")
    given_train = {k: v for k, v in options.items() if k in train_fields}
    if dataroot is not None:
        given_train["dataroot"] = str(dataroot)
    given_model = {k: v for k, v in options.items() if k in model_fields and k not in train_fields}
    model_cfg, train_cfg = resolve_configs(given_model, given_train, preset)
    return train_cyclegan(model_cfg, train_cfg, resume=resume, runtime_overrides=given_train)


def train_cyclegan(model_cfg: CycleGANConfig | CUTConfig, cfg: TrainConfig, resume: bool = False,
                   runtime_overrides: dict | None = None) -> Path:
    """Train (or, with ``resume``, continue: see :func:`prepare_run`) the run ``cfg.run_dir``: a
    CycleGAN, or CUT / FastCUT when ``model_cfg`` is a :class:`~cyclegan.models.cut.CUTConfig`.
    Returns the last checkpoint. Under torchrun, one data-parallel rank (see cyclegan.training.distributed)."""
    with distributed.process_group(cfg.device):
        return _train_cyclegan(model_cfg, cfg, resume, runtime_overrides)


def _train_cyclegan(model_cfg: CycleGANConfig | CUTConfig, cfg: TrainConfig, resume: bool,
                    runtime_overrides: dict | None) -> Path:
    state, cfg = prepare_run(cfg, resume, runtime_overrides)
    if state is not None:
        model_cfg = config_from_dict(state["model_config"])
    seed_everything(cfg.seed)
    dataset = build_dataset(cfg, model_cfg)
    model = build_model(model_cfg, seed=cfg.seed)
    trainer = Trainer(model, asdict(model_cfg), cfg, dataset,
                      total_epochs=model_cfg.n_epochs + model_cfg.n_epochs_decay,
                      export=lambda run_dir: export_cyclegan(model, cfg, run_dir / "generators.safetensors"))
    trainer.start(state)
    if trainer.dist.is_main:
        _print_summary(trainer, model, model_cfg, cfg, dataset)
    return trainer.fit()


def _print_summary(trainer: Trainer, model: GANModel, model_cfg, cfg: TrainConfig, dataset) -> None:
    n_g = sum(p.numel() for p in model.generators.parameters())
    n_d = sum(p.numel() for p in model.discriminators.parameters())
    world = trainer.dist.world_size
    ranks = f" x {world} ranks (global batch {cfg.batch_size * world})" if world > 1 else ""
    print(dataset.summary(), file=sys.stderr)
    print(f"fast path: {trainer.fast_path.describe()} ({trainer.fast_path.why})", file=sys.stderr)
    print(f"run {cfg.run_dir} | device {trainer.device} | {trainer.fast_path.describe()} | {model_cfg.netG} "
          f"({n_g / 1e6:.2f}M params, {_generators_text(model_cfg)}) | {model_cfg.netD} D ({n_d / 1e6:.2f}M) | "
          f"{cfg.size}px batch {cfg.batch_size}{ranks} | {model_cfg.n_epochs}+{model_cfg.n_epochs_decay} epochs"
          + (f" | stop at iteration {cfg.max_iters}" if cfg.max_iters else ""), file=sys.stderr)


def _generators_text(model_cfg) -> str:
    kind = getattr(model_cfg, "model", "cyclegan")
    return "2 generators" if kind == "cyclegan" else f"{kind}, 1 generator {model_cfg.direction}"
