"""Training pix2pix on paired images: the data section of its run config, its data set, and the
:class:`~cyclegan.training.loop.Job` that :func:`cyclegan.training.run.run` trains. Export and the
run header are CycleGAN's (:mod:`cyclegan.training.cyclegan`): a pix2pix model exports its one
generator as CUT does."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from cyclegan.data.augment_config import AugmentConfig
from cyclegan.data.images import DataError
from cyclegan.data.paired import PairedImageDataset
from cyclegan.models.gan import GANModel
from cyclegan.models.pix2pix import Pix2Pix
from cyclegan.training.config import RunConfig
from cyclegan.training.cyclegan import UnpairedDataConfig, describe_run, export_cyclegan
from cyclegan.training.loop import Job


@dataclass
class PairedDataConfig(UnpairedDataConfig):
    """The data section of a pix2pix run: the fields of the unpaired one, read as pairs
    (:mod:`cyclegan.data.paired`): ``DATAROOT/train`` of aligned A|B files, else
    ``DATAROOT/trainA`` + ``trainB`` (or ``--domain-a`` + ``--domain-b``) matched by relative path."""

    def pair_source(self) -> tuple[Path, Path | None]:
        """(aligned folder, None) or (folder A, folder B)."""
        if self.domain_a and self.domain_b:
            return Path(self.domain_a), Path(self.domain_b)
        if self.dataroot and (Path(self.dataroot) / "train").is_dir() and not self.domain_a and not self.domain_b:
            return Path(self.dataroot) / "train", None
        if self.dataroot and not (Path(self.dataroot) / "trainA").is_dir():
            raise DataError(f"--dataroot {self.dataroot}: expected {self.dataroot}/train (aligned A|B files) or "
                            f"{self.dataroot}/trainA and trainB (paired folders); `cyclegan download dataset "
                            "pix2pix_facades` fetches a standard one")
        return self.domain_folders()


def build_dataset(run: RunConfig) -> PairedImageDataset:
    model, data = run.model, run.data
    folder_a, folder_b = data.pair_source()
    aug = AugmentConfig(preprocess=data.preprocess, load_size=data.resolved_load_size(), crop_size=data.size,
                        flip=data.flip, channels=model.input_nc)
    dataset = PairedImageDataset(folder_a, folder_b, aug, channels_b=model.output_nc, seed=run.loop.seed)
    dataset.check_batchable(run.loop.batch_size)
    return dataset


def new_model(run: RunConfig) -> GANModel:
    return Pix2Pix(run.model, seed=run.loop.seed)


def example_batch(run: RunConfig, batch_size: int, size: int, generator: torch.Generator) -> dict:
    """Random images in [-1, 1] shaped as a training batch at ``size`` px: for benchmarks."""
    m = run.model
    return {k: torch.rand((batch_size, nc, size, size), generator=generator).mul(2).sub(1)
            for k, nc in (("A", m.input_nc), ("B", m.output_nc))}


def job(run: RunConfig) -> Job:
    check_size(run.model.netG, run.data.size)
    dataset = build_dataset(run)
    model = new_model(run)
    return Job(model, dataset,
               export=lambda run_dir, iteration: export_cyclegan(model, run, run_dir / "generators.safetensors"),
               data_summary=dataset.summary(), describe=lambda trainer: describe_run(trainer, run))


UNET_SIDES = (256, 128, 64, 32)


def adjust(given: dict, values: dict) -> dict:
    """B has A's channel count unless ``output_nc`` is given; unless a generator is given, the deepest
    U-Net (unet_256 / 128 / 64 / 32) whose side divides the crop size (the paper's unet_256 at 256 px)."""
    values = {**values, "output_nc": given.get("output_nc", values["input_nc"])}
    if "netG" not in given:
        side = next((n for n in UNET_SIDES if n <= values["size"] and values["size"] % n == 0), None)
        if side is not None:
            values["netG"] = f"unet_{side}"
    return values


def check_size(netG: str, size: int) -> None:
    """DataError unless ``size`` suits a U-Net ``netG`` (a multiple of 2 ** its depth)."""
    if netG.startswith("unet_"):
        side = int(netG.split("_")[1])
        if size % side:
            raise DataError(f"--size {size} does not suit --netG {netG}, which needs a multiple of {side}; "
                            "pix2pix's U-Nets take multiples of 32 (unet_32), 64, 128 or 256")
