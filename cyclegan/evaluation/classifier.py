"""A small image classifier as an offline feature extractor for judging generated images.

FID and KID usually compare Inception-v3 features, which need downloaded ImageNet weights and
mean little on 28x28 grayscale digits. Instead we train a small CNN on the same data (minutes on
a CPU) and compare its penultimate features (:mod:`cyclegan.evaluation.metrics`), plus how often it is
confident about a generated image (a proxy for "looks like some class"). Any channel count and
image size works, so the same code can judge a CycleGAN domain (classes = domains).

Images everywhere here are float tensors in [-1, 1] (what generators output) or uint8 in
[0, 255] (what datasets store); :func:`to_model_range` accepts both.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cyclegan.core.checkpoint import (CheckpointError, atomic_write, check_usable, code_version, metadata_json,
                                     read_safetensors, state_dict_misfit)
from cyclegan.core.readers import BadFileError, bounded_int
from cyclegan.evaluation.metrics import frechet_distance, kernel_distance

log = logging.getLogger("cyclegan.classifier")

CLASSIFIER_FORMAT = "cyclegan-classifier"


@dataclass
class ClassifierConfig:
    """Shape of the classifier. ``stages`` conv+pool stages (0: enough to bring the image down
    to 8 px or less, at least 2), channel width doubling per stage up to 4x ``width``."""

    channels: int = 1
    image_size: int = 28
    n_classes: int = 10
    width: int = 32
    feature_dim: int = 128
    stages: int = 0
    classes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.stages <= 0:
            self.stages = max(2, math.ceil(math.log2(max(self.image_size, 1) / 8)))
        if self.n_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {self.n_classes}")

    @classmethod
    def from_dict(cls, d: dict) -> "ClassifierConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_file(cls, d: Any, what: str) -> "ClassifierConfig":
        """A config read from a file, every size checked against a bound before anything is
        built (a crafted width of 10**9 would allocate terabytes); BadFileError naming ``what``."""
        if not isinstance(d, dict):
            raise BadFileError(f"{what} is a {type(d).__name__}, not a JSON object")
        for name, high in _CONFIG_BOUNDS.items():
            if name in d:
                bounded_int(d[name], 0 if name == "stages" else (2 if name == "n_classes" else 1), high,
                            f"{what}: {name}")
        classes = d.get("classes", [])
        if not (isinstance(classes, list) and len(classes) <= d.get("n_classes", 10)
                and all(isinstance(c, str) and len(c) < 200 for c in classes)):
            raise BadFileError(f"{what}: classes must be a list of at most n_classes names")
        return cls.from_dict(d)


#: the largest value of each field a file may ask for (our classifiers: width 32, 28..256 px)
_CONFIG_BOUNDS = {"channels": 4, "image_size": 512, "n_classes": 1000, "width": 128, "feature_dim": 4096,
                  "stages": 10}


class SmallClassifier(nn.Module):
    """``stages`` x [Conv3x3 -> BatchNorm -> ReLU -> MaxPool2], AdaptiveAvgPool to 4x4, a fully
    connected layer to ``feature_dim`` (+ ReLU): the features; then a linear layer to the logits."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        c_in = cfg.channels
        for i in range(cfg.stages):
            c_out = cfg.width * min(2**i, 4)
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(c_in * 16, cfg.feature_dim), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(cfg.feature_dim, cfg.n_classes)

    def embed(self, x: Tensor) -> Tensor:
        """Penultimate features (N, feature_dim): what FID and KID compare."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def to_model_range(images: Tensor) -> Tensor:
    """uint8 [0, 255] -> float [-1, 1]; float tensors are taken to be in [-1, 1] already."""
    if images.dtype == torch.uint8:
        return images.float().div(127.5).sub(1.0)
    return images.float()


# -------------------------------------------------------------------------------------------
# Training
# -------------------------------------------------------------------------------------------


@torch.no_grad()
def accuracy(model: SmallClassifier, images: Tensor, labels: Tensor, batch_size: int = 500,
             device: torch.device | str = "cpu") -> float:
    _, probs = extract(model, images, batch_size, device)
    return float((probs.argmax(1) == labels.cpu()).float().mean())


def train_classifier(images: Tensor, labels: Tensor, cfg: ClassifierConfig, epochs: int = 3,
                     batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
                     device: torch.device | str = "cpu", held_out: tuple[Tensor, Tensor] | None = None,
                     ) -> tuple[SmallClassifier, dict]:
    """Train with Adam and cross-entropy; returns (model in eval mode, metrics). ``images``
    (N, C, H, W) uint8 or [-1, 1] floats, ``labels`` (N,) int in [0, n_classes). Seeded and
    independent of (and not disturbing) the global RNG."""
    if labels is None or len(labels) != len(images):
        raise ValueError("the classifier needs one label per training image; this data has no labels "
                         "(for an image folder: put each class in its own subfolder)")
    if int(labels.min()) < 0 or int(labels.max()) >= cfg.n_classes:
        raise ValueError(f"labels must be in 0..{cfg.n_classes - 1}, got {int(labels.min())}..{int(labels.max())}")
    device = torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallClassifier(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * math.ceil(len(images) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, steps))
    g = torch.Generator().manual_seed(seed)
    start, step = time.time(), 0
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=g)
        total = 0.0
        for i in range(0, len(images), batch_size):
            idx = order[i:i + batch_size]
            x = to_model_range(images[idx]).to(device)
            y = labels[idx].to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            total += float(loss.detach()) * len(idx)
        log.info("classifier epoch %d/%d: loss %.4f (%.0f s)", epoch + 1, epochs, total / len(images),
                 time.time() - start)
    model.eval()
    metrics = {"epochs": epochs, "train_images": len(images), "train_seconds": round(time.time() - start, 1),
               "train_accuracy": accuracy(model, images, labels, device=device)}
    if held_out is not None:
        metrics["held_out_images"] = len(held_out[0])
        metrics["held_out_accuracy"] = accuracy(model, held_out[0], held_out[1], device=device)
    return model, metrics


# -------------------------------------------------------------------------------------------
# Files
# -------------------------------------------------------------------------------------------


def save_classifier(model: SmallClassifier, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Weights in safetensors with the config (and e.g. accuracy, data fingerprint) inside."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": CLASSIFIER_FORMAT, "config": json.dumps(asdict(model.cfg)), "code_version": code_version()}
    metadata.update({k: json.dumps(v) for k, v in (meta or {}).items()})
    blob = save(tensors, metadata=metadata)
    return atomic_write(path, lambda f: f.write(blob))


def load_classifier(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[SmallClassifier, dict]:
    """(model in eval mode, metadata) from a file written by :func:`save_classifier`."""
    path = Path(path)
    tensors, metadata = read_safetensors(
        path, CLASSIFIER_FORMAT, f"classifier not found: {path} (make one with `cyclegan mnist classifier`, or "
                                 "`cyclegan eval domain-classifier` for a CycleGAN data set)",
        f"{path} is not a classifier written by `cyclegan mnist classifier` or `cyclegan eval domain-classifier`")
    # Everything the file says is checked before it sizes anything: the config's bounds, the
    # tensors' shapes against a shape-only (meta) build, finite weights giving finite outputs.
    try:
        cfg = ClassifierConfig.from_file(metadata_json(path, "config", metadata.get("config", "null")),
                                         f"{path}: the metadata's config")
        with torch.device("meta"):
            shapes = SmallClassifier(cfg)
    except (BadFileError, ValueError, TypeError) as e:
        raise CheckpointError(f"{e}" if str(path) in str(e) else f"{path}: {e}") from None
    misfit = state_dict_misfit(tensors, shapes.state_dict())
    if misfit:
        raise CheckpointError(f"{path} does not fit the classifier its metadata describes ({misfit})")
    meta = {k: metadata_json(path, k, v) for k, v in metadata.items() if k not in ("format", "config", "code_version")}
    model = SmallClassifier(cfg)
    model.load_state_dict(tensors)
    check_usable(model, torch.zeros(1, cfg.channels, cfg.image_size, cfg.image_size), str(path))
    return model.to(device).eval(), meta


# -------------------------------------------------------------------------------------------
# Features and the quality report
# -------------------------------------------------------------------------------------------


@torch.no_grad()
def extract(model: SmallClassifier, images: Tensor, batch_size: int = 500,
            device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """(features (N, feature_dim), class probabilities (N, n_classes)), on the CPU, in float32."""
    model.eval()
    feats, probs = [], []
    for i in range(0, len(images), batch_size):
        x = to_model_range(images[i:i + batch_size]).to(device)
        f = model.embed(x)
        feats.append(f.float().cpu())
        probs.append(model.head(f).float().softmax(1).cpu())
    return torch.cat(feats), torch.cat(probs)


def quality_report(model: SmallClassifier, real: Tensor, fake: Tensor, reference: Tensor | None = None,
                   threshold: float = 0.9, kid_subsets: int = 100, kid_subset_size: int = 1000,
                   device: torch.device | str = "cpu") -> dict:
    """Compare generated images ``fake`` with held-out ``real`` ones in the classifier's feature
    space: FID, KID (mean and std over ``kid_subsets`` subsets of ``kid_subset_size``, torch-fidelity's
    protocol), the share of fakes (and, for comparison, of real
    images) whose top class probability is >= ``threshold``, and the share of fakes assigned to
    each class (a collapsed generator piles into a few). With ``reference`` (e.g. training
    images), ``fid_reference`` is the FID between two real samples: the floor to read FID against.
    """
    real_f, real_p = extract(model, real, device=device)
    fake_f, fake_p = extract(model, fake, device=device)
    kid, kid_std = kernel_distance(real_f, fake_f, subsets=kid_subsets, subset_size=kid_subset_size)
    counts = torch.bincount(fake_p.argmax(1), minlength=fake_p.shape[1]).float()
    report = {
        "fid": frechet_distance(real_f, fake_f),
        "kid": kid,
        "kid_std": kid_std,
        "confident": float((fake_p.max(1).values >= threshold).float().mean()),
        "real_confident": float((real_p.max(1).values >= threshold).float().mean()),
        "threshold": threshold,
        "class_share": (counts / counts.sum()).tolist(),
        "n_real": len(real),
        "n_fake": len(fake),
    }
    if reference is not None:
        report["fid_reference"] = frechet_distance(real_f, extract(model, reference, device=device)[0])
    return report


def format_report(report: dict, classes: list[str] | None = None) -> str:
    """The report as a few readable lines."""
    lines = [f"FID {report['fid']:.3f}  KID {report['kid']:.5f} +- {report['kid_std']:.5f}  "
             f"({report['n_fake']:,} generated vs {report['n_real']:,} held-out real images, classifier features)"]
    if "fid_reference" in report:
        lines.append(f"  reference: FID of real training images vs the held-out ones = {report['fid_reference']:.3f}")
    lines.append(f"confidently classified (p >= {report['threshold']:g}): {report['confident']:.1%} of generated, "
                 f"{report['real_confident']:.1%} of real images")
    names = classes if classes and len(classes) == len(report["class_share"]) else \
        [str(i) for i in range(len(report["class_share"]))]
    lines.append("generated images per class: " + ", ".join(
        f"{n} {s:.1%}" for n, s in zip(names, report["class_share"])))
    return "\n".join(lines)
