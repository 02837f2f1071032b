"""Training, evaluation and benchmarking of the noise -> image GAN, through the shared loop.

The run is driven by the same :class:`~cyclegan.training.loop.Trainer` as CycleGAN (checkpoints,
resume, previews, TensorBoard, SIGINT handling); this module only supplies the data and
evaluation sections of its run config and the :class:`~cyclegan.training.loop.Job`: data,
model, export and the evaluation that ends a run.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from cyclegan.core.checkpoint import export_generators, write_json
from cyclegan.evaluation.classifier import ClassifierConfig, SmallClassifier, format_report, load_classifier, quality_report, save_classifier, train_classifier
from cyclegan.data.images import DataError
from cyclegan.models.mnist import MnistGAN
from cyclegan.data.mnist import DataSource, MnistData, MnistDataset
from cyclegan.inference.mnist_sampler import BUNDLED_CLASSIFIER, EXPORT_KIND, EXPORT_NAME, LatentSampler
from cyclegan.training.config import RunConfig
from cyclegan.training.loop import Job, Trainer

log = logging.getLogger("cyclegan.mnist")

CLASSIFIER_NAME = "classifier.safetensors"


@dataclass
class MnistDataConfig:
    """The data section of an MNIST-format GAN run: where the images come from."""

    dataset: str | None = None        # mnist, fashion-mnist, kmnist (torchvision; downloaded if missing)
    idx_dir: str | None = None        # folder of IDX files
    image_dir: str | None = None      # folder of images
    data_root: str = "datasets"       # where --dataset looks for / downloads files
    download: bool = True

    RUNTIME_FIELDS = ("download", "data_root")

    def source(self) -> DataSource:
        return DataSource(self.dataset, self.idx_dir, self.image_dir, self.data_root, self.download)


@dataclass
class MnistEvalConfig:
    """The evaluation that ends an MNIST-format GAN run (FID/KID/confidence of generated images)."""

    eval_samples: int = 10000         # generated images at the end; 0: skip
    classifier: str | None = None     # feature extractor (default: see resolve_classifier)

    RUNTIME_FIELDS = ("eval_samples", "classifier")


#: The loop settings of an MNIST-format run that differ from LoopConfig's (cyclegan.training.kinds)
LOOP_DEFAULTS = dict(
    name="mnist", batch_size=64,
    num_workers=0,                    # images live in memory: worker processes would only add start-up time
    save_every=2000, preview_every=500,
    preview_count=64,                 # fixed-noise samples in each preview grid (8 per row)
)
#: 20 epochs at a constant rate: DCGAN's recipe at the widths of the bundled model
SCHEDULE_DEFAULTS = dict(n_epochs=20, n_epochs_decay=0)
#: WGAN-GP's published settings (Gulrajani et al. 2017, Algorithm 1), used unless given
WGANGP_DEFAULTS = {"lr": 1e-4, "beta1": 0.0, "beta2": 0.9, "d_steps": 5}


def adjust(given: dict, values: dict) -> dict:
    """WGAN-GP asked for: its paper's optimiser settings and D steps, unless given."""
    if given.get("gan_mode") != "wgangp":
        return values
    filled = {k: v for k, v in WGANGP_DEFAULTS.items() if k not in given}
    note = "wgangp: using the paper's " + ", ".join(f"{k} {v}" for k, v in filled.items()) + " (pass them to override)"
    if filled and note not in _SAID:  # once per process (a benchmark resolves the same run per row)
        _SAID.add(note)
        print(note, file=sys.stderr)
    return {**values, **filled}


_SAID: set[str] = set()


# --------------------------------------------------------------------------------------------
# Classifier and evaluation
# --------------------------------------------------------------------------------------------


def fit_classifier(data: MnistData, epochs: int = 3, batch_size: int = 128, lr: float = 1e-3, width: int = 32,
                   seed: int = 0, device: torch.device | str = "cpu") -> tuple[SmallClassifier, dict]:
    """Train the evaluation classifier on ``data``'s training split; returns (model, metadata
    to store with it: accuracy, the data it was trained on, class names)."""
    train = data.train
    if train.labels is None:
        raise DataError(f"{data.name} has no labels, and the evaluation classifier needs them (IDX: the "
                        "*-labels-idx1-ubyte files; image folders: one subfolder per class). Pass "
                        "--classifier FILE, or --eval-samples 0 to skip evaluation")
    n_classes = max(int(train.labels.max()) + 1, len(data.classes), 2)
    n, c, h, _ = train.images.shape
    cfg = ClassifierConfig(channels=c, image_size=h, n_classes=n_classes, width=width,
                           classes=list(data.classes))
    held_out = (data.test.images, data.test.labels) if data.test is not None and data.test.labels is not None else None
    log.info("training the evaluation classifier on %d images (%d epochs)", n, epochs)
    model, metrics = train_classifier(train.images, train.labels, cfg, epochs=epochs, batch_size=batch_size,
                                      lr=lr, seed=seed, device=device, held_out=held_out)
    meta = {"metrics": metrics, "data": data.name, "data_fingerprint": train.fingerprint()}
    return model, meta


def classifier_summary(meta: dict) -> str:
    m = meta.get("metrics", {})
    acc = m.get("held_out_accuracy", m.get("train_accuracy"))
    which = "held-out" if "held_out_accuracy" in m else "training"
    return f"trained on {meta.get('data', '?')}" + (f", {which} accuracy {acc:.2%}" if acc is not None else "")


def resolve_classifier(data: MnistData, explicit: str | None = None, run_dir: Path | None = None,
                       device: torch.device | str = "cpu") -> tuple[SmallClassifier, str]:
    """The classifier to evaluate with, and where it came from. In order: ``explicit``; the run's
    own ``classifier.safetensors``; the bundled one when it was trained on exactly this data
    (same content fingerprint), so Fashion-MNIST figures are comparable across runs; else one
    is trained now (a minute or two on a CPU) and saved in the run folder."""
    fingerprint = data.train.fingerprint()

    def checked(path: Path) -> tuple[SmallClassifier, str]:
        model, meta = load_classifier(path, device)
        if meta.get("data_fingerprint") not in (None, fingerprint):
            log.warning("classifier %s was trained on other data (%s) than %s; its FID/KID are only "
                        "comparable with figures measured with the same classifier", path, meta.get("data"), data.name)
        return model, f"{path} ({classifier_summary(meta)})"

    if explicit:
        return checked(Path(explicit))
    if run_dir is not None and (run_dir / CLASSIFIER_NAME).is_file():
        return checked(run_dir / CLASSIFIER_NAME)
    if BUNDLED_CLASSIFIER.is_file():
        model, meta = load_classifier(BUNDLED_CLASSIFIER, device)
        if meta.get("data_fingerprint") == fingerprint:
            return model, f"bundled {BUNDLED_CLASSIFIER.name} ({classifier_summary(meta)})"
    model, meta = fit_classifier(data, device=device)
    where = "not saved"
    if run_dir is not None:
        where = str(save_classifier(model, run_dir / CLASSIFIER_NAME, meta))
    return model, f"{where} (trained now; {classifier_summary(meta)})"


def evaluate(sampler: LatentSampler, data: MnistData, classifier: SmallClassifier, n_samples: int = 10000,
             seed: int = 0, device: torch.device | str = "cpu") -> dict:
    """FID/KID/confidence of ``n_samples`` generated images (z from ``seed``) against the held-out
    split (the training split when there is none); the reference FID compares as many training
    images with the held-out ones."""
    if data.test is not None:
        real, reference = data.test.images, data.train.images[: len(data.test)]
    else:
        real, reference = data.train.images, None
    fake = sampler.sample(n_samples, seed=seed)
    if fake.shape[1:] != real.shape[1:]:
        raise DataError(f"the generator makes {tuple(fake.shape[1:])} images but {data.name} holds "
                        f"{tuple(real.shape[1:])}; evaluate against the data it was trained on")
    return quality_report(classifier, real, fake, reference=reference, device=device)


def print_evaluation(report: dict, classifier_source: str, classes: list[str]) -> None:
    print(f"evaluation classifier: {classifier_source}")
    print(format_report(report, classes))


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def export_mnist(model: MnistGAN, run: RunConfig, data: MnistData, iteration: int, path: Path) -> Path:
    """The generator alone, config inside: what sampling and the app load."""
    meta = {"kind": EXPORT_KIND, "name": run.loop.name, "iteration": iteration, "classes": data.classes,
            # where the data came from, for `cyclegan mnist eval` (whether to download is the user's call then)
            "data": {k: v for k, v in asdict(run.data.source()).items() if k != "download"},
            "data_fingerprint": data.train.fingerprint()}
    out = export_generators({"G": model.generators["G"]}, model.config_dict(), path, meta)
    log.info("exported the generator: %s", out)
    return out


def new_model(run: RunConfig) -> MnistGAN:
    return MnistGAN(run.model, seed=run.loop.seed, preview_count=run.loop.preview_count)


def example_batch(run: RunConfig, batch_size: int, size: int, generator: torch.Generator) -> dict:
    """Random images in [-1, 1] shaped as a training batch (the model's image size): for benchmarks."""
    m = run.model
    return {"image": torch.rand(batch_size, m.channels, m.image_size, m.image_size, generator=generator).mul(2).sub(1)}


def job(run: RunConfig) -> Job:
    """An MNIST-format GAN run: data in memory, the model, its export and the closing evaluation."""
    m = run.model
    m.validate()
    data = run.data.source().load(m.channels, m.image_size)
    model = new_model(run)

    def describe(trainer: Trainer) -> str:
        n_g = sum(p.numel() for p in model.generators.parameters())
        n_d = sum(p.numel() for p in model.discriminators.parameters())
        return (f"{m.netG} G ({n_g / 1e6:.2f}M params, z {m.z_dim} {m.noise}) | {m.netD} D "
                f"({n_d / 1e6:.2f}M, norm {m.d_norm}) | {m.gan_mode}, {m.d_steps} D step(s) per G step | "
                f"batch {run.loop.batch_size} x {trainer.dist.world_size} rank(s)")

    return Job(model, MnistDataset(data.train),
               export=lambda run_dir, iteration: export_mnist(model, run, data, iteration, run_dir / EXPORT_NAME),
               data_summary=data.summary(), describe=describe,
               finish=lambda trainer, exports: _finish(trainer, run, data, exports))


def _finish(trainer: Trainer, run: RunConfig, data: MnistData, exports: list) -> None:
    """After a finished run (not one stopped by a signal): say where the generator is and
    evaluate it (``eval_samples`` > 0)."""
    if not exports:
        return
    print(f"trained to iteration {trainer.counters.iteration} in {trainer.elapsed:.0f} s; generator: {exports[0]}", file=sys.stderr)
    if run.evaluate.eval_samples > 0:
        device = trainer.device
        classifier, source = resolve_classifier(data, run.evaluate.classifier, run.loop.run_dir, device)
        sampler = LatentSampler(trainer.model.generators["G"], run.model, device=device)
        report = evaluate(sampler, data, classifier, run.evaluate.eval_samples, seed=run.loop.seed, device=device)
        report.update(iteration=trainer.counters.iteration, classifier=source)
        write_json(run.loop.run_dir / "eval.json", report)
        print_evaluation(report, source, data.classes)
