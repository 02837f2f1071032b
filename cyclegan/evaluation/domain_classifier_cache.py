"""The A-vs-B domain classifier of `cyclegan eval domains`: trained on DATAROOT/trainA (class 0) and
trainB (class 1), cached beside the data (or per user when DATAROOT is read-only) with a
fingerprint of the training files, so that a changed data set retrains."""

from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cyclegan.core.checkpoint import CheckpointError
from cyclegan.data.images import DataError, find_images
from cyclegan.evaluation.classifier import ClassifierConfig, SmallClassifier, extract, load_classifier, save_classifier, train_classifier
from cyclegan.evaluation.domain_images import DOMAINS, domain_folder, read_images, spaced, stack_images

log = logging.getLogger("cyclegan.domains")

CLASSES = ["A", "B"]


def _train_files(dataroot: Path, max_train: int | None) -> dict[str, list[Path]]:
    return {d: spaced(domain_folder(dataroot, "train", d), max_train) for d in DOMAINS}


def fingerprint(files: dict[str, list[Path]]) -> dict[str, dict[str, Any]]:
    """Per domain: the number of files and a SHA-256 of their sorted names and byte sizes."""
    out = {}
    for domain, paths in files.items():
        h = hashlib.sha256()
        for path in sorted(paths, key=lambda p: p.name):
            h.update(f"{path.parent.name}/{path.name}\t{path.stat().st_size}\n".encode())
        out[domain] = {"count": len(paths), "sha256": h.hexdigest()}
    return out


def cache_name(channels: int, size: int, seed: int, max_train: int | None = None) -> str:
    cap = f"_n{max_train}" if max_train else ""
    return f"domain_classifier_c{channels}_s{size}_seed{seed}{cap}.safetensors"


def _user_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "cyclegan"


def cache_paths(dataroot: str | os.PathLike, channels: int, size: int, seed: int,
                max_train: int | None = None) -> tuple[Path, Path]:
    """(beside the data, the per-user fallback) for the classifier of these settings."""
    root = Path(dataroot).expanduser().resolve()
    name = cache_name(channels, size, seed, max_train)
    tag = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    return root / ".cyclegan" / name, _user_cache() / "domain_classifiers" / f"{root.name}-{tag}" / name


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def _auto_epochs(n: int, batch_size: int) -> int:
    """At least 3 epochs and about 120 optimizer steps (small data sets), at most 30 epochs."""
    steps = math.ceil(n / batch_size)
    return int(min(30, max(3, math.ceil(120 / steps))))


def _train(dataroot: Path, files: dict[str, list[Path]], channels: int, size: int, seed: int,
           epochs: int | None, batch_size: int, lr: float, device: torch.device | str,
           workers: int) -> tuple[SmallClassifier, dict]:
    images, labels = [], []
    for label, domain in enumerate(DOMAINS):
        got, _, _ = read_images(files[domain], channels, size, workers)
        if not got:
            raise DataError(f"{dataroot / ('train' + domain)}: no readable images; the classifier needs both domains")
        images += got
        labels += [label] * len(got)
    x, y = stack_images(images), torch.tensor(labels)
    held_out, per_domain = None, {}
    test = {}
    for label, domain in enumerate(DOMAINS):
        folder = dataroot / f"test{domain}"
        if folder.is_dir():
            got, _, _ = read_images(find_images(folder), channels, size, workers)
            if got:
                test[domain] = (stack_images(got), torch.full((len(got),), label))
    if test:
        held_out = (torch.cat([t[0] for t in test.values()]), torch.cat([t[1] for t in test.values()]))
    epochs = epochs or _auto_epochs(len(x), batch_size)
    cfg = ClassifierConfig(channels=channels, image_size=size, n_classes=2, classes=list(CLASSES))
    log.info("training the domain classifier: %d trainA + %d trainB images at %d px, %d channel(s), %d epochs, "
             "seed %d", int((y == 0).sum()), int((y == 1).sum()), size, channels, epochs, seed)
    model, metrics = train_classifier(x, y, cfg, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                                      device=device, held_out=held_out)
    for label, domain in enumerate(DOMAINS):
        if domain in test:
            probs = extract(model, test[domain][0], device=device)[1]
            per_domain[domain] = float((probs.argmax(1) == label).float().mean())
    meta = {"kind": "domain", "dataroot": str(dataroot.resolve()), "data_fingerprint": fingerprint(files),
            "metrics": metrics, "test_accuracy": per_domain, "seed": seed, "max_train": None}
    return model, meta


def train_domain_classifier(dataroot: str | os.PathLike, channels: int, *, size: int = 32, seed: int = 0,
                            epochs: int | None = None, max_train: int | None = None, batch_size: int = 64,
                            lr: float = 2e-3, device: torch.device | str = "cpu", workers: int = 4
                            ) -> tuple[SmallClassifier, dict]:
    """Train (without caching) the A-vs-B classifier on DATAROOT/trainA and trainB; its accuracy
    on testA/testB (when present) is in the returned metadata."""
    root = Path(dataroot).expanduser()
    model, meta = _train(root, _train_files(root, max_train), channels, size, seed, epochs, batch_size, lr,
                         device, workers)
    meta["max_train"] = max_train
    return model, meta


def _check_meta(meta: dict, path: Path) -> None:
    """CheckpointError unless the metadata this module reads has the types it writes."""
    acc = meta.get("test_accuracy", {})
    if not (isinstance(acc, dict) and all(isinstance(k, str) and isinstance(v, (int, float))
                                          and not isinstance(v, bool) and 0 <= v <= 1 for k, v in acc.items())):
        raise CheckpointError(f"{path}: the metadata's test_accuracy is not a mapping of domains to accuracies")


@dataclass
class ClassifierInfo:
    """Where a domain classifier came from."""

    path: Path | None
    trained_now: bool
    meta: dict = field(default_factory=dict)

    def describe(self) -> str:
        acc = self.meta.get("test_accuracy") or {}
        accuracy = ", ".join(f"{d} {v:.1%}" for d, v in acc.items())
        where = str(self.path) if self.path else "not saved"
        return f"{where} ({'trained now' if self.trained_now else 'cached'}" + \
            (f"; test accuracy {accuracy})" if accuracy else ")")


def domain_classifier(dataroot: str | os.PathLike, channels: int, *, size: int = 32, seed: int = 0,
                      max_train: int | None = None, epochs: int | None = None, force: bool = False,
                      device: torch.device | str = "cpu", workers: int = 4) -> tuple[SmallClassifier, ClassifierInfo]:
    """The cached A-vs-B classifier of DATAROOT for these settings, trained (and cached) when there
    is none, when its training files changed, or with ``force``."""
    root = Path(dataroot).expanduser()
    files = _train_files(root, max_train)
    current = fingerprint(files)
    primary, fallback = cache_paths(root, channels, size, seed, max_train)
    if not force:
        for path in (primary, fallback):
            if not path.is_file():
                continue
            # a cache can come from anywhere (a downloaded data set's zip may carry one): one that
            # does not check out is ignored and rebuilt, never trusted and never a traceback
            try:
                model, meta = load_classifier(path, device)
                _check_meta(meta, path)
            except CheckpointError as e:
                log.warning("ignoring the cached domain classifier: %s; training a new one", e)
                continue
            same_shape = (model.cfg.channels, model.cfg.image_size, model.cfg.n_classes) == (channels, size, 2)
            if same_shape and meta.get("data_fingerprint") == current:
                log.info("reusing the domain classifier %s", path)
                return model, ClassifierInfo(path, False, meta)
            log.info("the cached domain classifier %s was trained on other files than %s/trainA and trainB now hold "
                     "(%s): retraining", path, root,
                     ", ".join(f"{d} {v['count']}" for d, v in current.items()))
    else:
        log.info("--force: retraining the domain classifier")
    model, meta = _train(root, files, channels, size, seed, epochs, 64, 2e-3, device, workers)
    meta["max_train"] = max_train
    saved = None
    for path in (primary, fallback):
        if path is primary and not _writable(root):
            log.info("%s is not writable; caching the domain classifier in %s instead", root, fallback)
            continue
        try:
            saved = save_classifier(model, path, meta)
            break
        except (CheckpointError, OSError) as e:
            log.info("cannot cache the domain classifier at %s (%s)%s", path, e,
                     f"; trying {fallback}" if path is primary else "")
    if saved is None:
        log.warning("the domain classifier could not be cached; it will be trained again next time")
    else:
        log.info("domain classifier cached in %s", saved)
    return model, ClassifierInfo(saved, True, meta)


def given_classifier(path: str | os.PathLike, device: torch.device | str) -> tuple[SmallClassifier, ClassifierInfo]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"--classifier {p}: no such file; make one with `cyclegan eval domain-classifier "
                        "--dataroot DATAROOT`, or leave --classifier out to use (or train) the cached one")
    model, meta = load_classifier(p, device)
    if model.cfg.n_classes != 2:
        raise DataError(f"--classifier {p} has {model.cfg.n_classes} classes; a domain classifier has 2 (A = 0, "
                        "B = 1): make one with `cyclegan eval domain-classifier --dataroot DATAROOT`")
    return model, ClassifierInfo(p, False, meta)
