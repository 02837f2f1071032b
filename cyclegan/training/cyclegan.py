"""Training a CycleGAN (and CUT / FastCUT, which train on the same unpaired folders): the data
section of its run config, its data set and export, and the :class:`~cyclegan.training.loop.Job`
that :func:`cyclegan.training.run.run` trains."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from cyclegan.core.checkpoint import export_generators
from cyclegan.data.augment_config import AugmentConfig
from cyclegan.data.images import DataError
from cyclegan.data.unpaired import UnpairedImageDataset
from cyclegan.models.cut import build_model
from cyclegan.models.gan import GANModel
from cyclegan.training.config import RunConfig
from cyclegan.training.loop import Job, Trainer

log = logging.getLogger("cyclegan.train")


@dataclass
class UnpairedDataConfig:
    """The data section of an image-translation run: two image folders and augmentation."""

    dataroot: str | None = None
    domain_a: str | None = None       # overrides dataroot/trainA
    domain_b: str | None = None       # overrides dataroot/trainB
    size: int = 256                   # crop size fed to the networks
    load_size: int | None = None      # resize before cropping; default size * 286 / 256
    preprocess: str = "resize_and_crop"
    flip: bool = True
    data_on_device: str = "off"       # auto, on, off: images decoded once and augmented on the device (data.resident)

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


def export_cyclegan(model: GANModel, run: RunConfig, path: Path) -> Path:
    """Generators only (CycleGAN: G_A and G_B; CUT: its one), config inside: what translation and
    the app load. With an EMA, its averaged weights are the ones written (``weights: ema`` in the
    metadata)."""
    nets = model.inference_generators()
    meta = {"size": run.data.size, "preprocess": run.data.preprocess, "name": run.loop.name,
            "weights": "ema" if nets is model.ema_generators else "last"}
    out = export_generators(dict(nets.items()), model.config_dict(), path, meta)
    log.info("exported generators: %s", out)
    return out


def build_dataset(run: RunConfig) -> UnpairedImageDataset:
    model_cfg, data = run.model, run.data
    if model_cfg.input_nc != model_cfg.output_nc:
        raise DataError("unpaired folders are read with one channel count; --input-nc and --output-nc "
                        "must be equal (1 or 3)")
    folder_a, folder_b = data.domain_folders()
    aug = AugmentConfig(preprocess=data.preprocess, load_size=data.resolved_load_size(), crop_size=data.size,
                        flip=data.flip, channels=model_cfg.input_nc)
    dataset = UnpairedImageDataset(folder_a, folder_b, aug, seed=run.loop.seed, serial=run.loop.serial_batches)
    dataset.check_batchable(run.loop.batch_size)
    return dataset


def new_model(run: RunConfig) -> GANModel:
    """The trainable model of the run (CycleGAN, or CUT / FastCUT), freshly initialised."""
    return build_model(run.model, seed=run.loop.seed)


def example_batch(run: RunConfig, batch_size: int, size: int, generator: torch.Generator) -> dict:
    """Random images in [-1, 1] shaped as a training batch at ``size`` px: for benchmarks."""
    shape = (batch_size, run.model.input_nc, size, size)
    return {k: torch.rand(shape, generator=generator).mul(2).sub(1) for k in ("A", "B")}


def job(run: RunConfig) -> Job:
    """A CycleGAN, CUT or FastCUT run's model, data and export."""
    dataset = build_dataset(run)
    model = new_model(run)
    return Job(model, dataset,
               export=lambda run_dir, iteration: export_cyclegan(model, run, run_dir / "generators.safetensors"),
               data_summary=dataset.summary(), describe=lambda trainer: describe_run(trainer, run))


def describe_run(trainer: Trainer, run: RunConfig) -> str:
    model, m = trainer.model, run.model
    n_g = sum(p.numel() for p in model.generators.parameters())
    n_d = sum(p.numel() for p in model.discriminators.parameters())
    world, batch = trainer.dist.world_size, run.loop.batch_size
    ranks = f" x {world} ranks (global batch {batch * world})" if world > 1 else ""
    generators = "2 generators" if run.kind == "cyclegan" else f"{run.kind}, 1 generator {m.direction}"
    return (f"{m.netG} ({n_g / 1e6:.2f}M params, {generators}) | {m.netD} D ({n_d / 1e6:.2f}M) | "
            f"{run.data.size}px batch {batch}{ranks}")
