"""Judging a CycleGAN with an offline domain classifier: ``cyclegan eval domains``.

A small CNN (:class:`cyclegan.classifier.SmallClassifier`, the one the MNIST evaluation uses) is
trained to tell DATAROOT/trainA (class 0) from DATAROOT/trainB (class 1) at a fixed resolution
(``--classifier-size``, 32 px by default). For each direction (AtoB: testA through G_A, judged
against the real testB; BtoA: testB through G_B against the real testA) we report:

* **hit rate**: the share of translations the classifier assigns to the target domain;
* **FID** and **KID** (:mod:`cyclegan.evaluation.metrics`) on the classifier's penultimate features, against
  the real target test images;
* **cycle L1**: mean |G_back(G_fwd(x)) - x| on [-1, 1] images at the generator's size.

A one-direction model (CUT, FastCUT) is judged in its direction only, without cycle L1 (it has no
generator back).

Two reference rows per direction frame those numbers:

* **untranslated**: the input test images themselves, judged as if they were translations (the
  floor a translation must beat: its hit rate is the classifier's error rate on the source domain);
* **real target**: the hit rate of the real target test images (the classifier's accuracy on that
  domain: the ceiling), and FID/KID of as many real target images from the *training* split as the
  test set has (never in the test set) against the test set: what a perfect translation, a fresh
  sample of the target domain, would reach. Without a train folder (possible only with
  ``--classifier``) the test set's even and odd images are compared instead, at half the count.

Translations run at the generator's own size (``LoadedGenerator.size`` or ``--size``), are
quantised to uint8 as a saved file would be, then resized (bicubic) to the classifier's size like
the real images.

The classifier is cached beside the data, DATAROOT/.cyclegan/domain_classifier_c{C}_s{S}_seed{N}.safetensors
(``_n{M}`` with ``--max-train M``), with a fingerprint of the training files (count and a hash of the
sorted names and sizes) inside: a changed data set retrains. A read-only DATAROOT caches it under
``$XDG_CACHE_HOME/cyclegan`` (``~/.cache/cyclegan``) instead.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from cyclegan.core.checkpoint import atomic_write
from cyclegan.data.images import DataError, find_images
from cyclegan.evaluation.classifier import SmallClassifier, extract
from cyclegan.evaluation.domain_classifier_cache import (CLASSES, ClassifierInfo, cache_paths, domain_classifier,
                                                          given_classifier, train_domain_classifier)
from cyclegan.evaluation.domain_images import (DOMAINS, convert_channels, detect_channels, domain_folder, read_images,
                                               resize_square, spaced, stack_images)
from cyclegan.evaluation.metrics import frechet_distance, kernel_distance
from cyclegan.core.install import import_torchvision

__all__ = ["DIRECTIONS", "DomainJudge", "cache_paths", "detect_channels", "domain_classifier", "evaluate_domains",
           "format_table", "train_domain_classifier"]

log = logging.getLogger("cyclegan.domains")

#: direction -> (source domain, target domain, the generator back)
DIRECTIONS = {"AtoB": ("A", "B", "BtoA"), "BtoA": ("B", "A", "AtoB")}
ROWS = ("translated", "untranslated", "real_target")


# -- the judge ---------------------------------------------------------------------------------


def _loaded_pair(model: Any, runs_dir: str | os.PathLike, checkpoints_dir: str | os.PathLike) -> dict[str, Any]:
    """{"AtoB": LoadedGenerator, "BtoA": LoadedGenerator} from a model path or such a mapping;
    only the one direction of a one-direction model (CUT)."""
    from cyclegan.inference.loading import LoadedGenerator, OneDirectionError, load_generator

    if isinstance(model, Mapping):
        given = {d: g for d, g in model.items() if d in DIRECTIONS and isinstance(g, LoadedGenerator)}
        if not given:
            raise ValueError("model: expected LoadedGenerators for AtoB and/or BtoA")
        return given
    gens = {}
    for d in DIRECTIONS:
        try:
            gens[d] = load_generator(model, d, runs_dir=runs_dir, checkpoints_dir=checkpoints_dir)
        except OneDirectionError:
            continue
    first = next(iter(gens.values()))
    if first.direction is None:
        raise DataError(f"--model {model}: {first.source} holds a single generator of unknown direction; `eval "
                        "domains` needs a run folder, checkpoint or generators.safetensors")
    return gens


def model_channels(gens: Mapping[str, Any]) -> int:
    """The channel count the classifier should see: the generators' (3 when A and B differ)."""
    spec = next(iter(gens.values())).spec
    return spec.input_nc if spec.input_nc == spec.output_nc else 3


def _row(hit: float, real: Tensor, other: Tensor, kid_subsets: int, subset_size: int, **extra: Any) -> dict:
    kid, kid_std = kernel_distance(real, other, subsets=kid_subsets, subset_size=subset_size)
    return {"hit_rate": hit, "fid": frechet_distance(real, other), "kid": kid, "kid_std": kid_std,
            "n": int(other.shape[0]), "n_real": int(real.shape[0]),
            "kid_subset_size": int(min(subset_size, real.shape[0], other.shape[0])), **extra}


class DomainJudge:
    """The domain classifier plus the real test images and their features, loaded once, to
    evaluate any number of models of one data set: ``judge.evaluate("runs/NAME")``."""

    def __init__(self, classifier: SmallClassifier, info: ClassifierInfo, dataroot: str | os.PathLike, *,
                 limit: int | None = None, device: torch.device | str = "cpu", kid_subsets: int = 100,
                 subset_size: int = 1000, workers: int = 4) -> None:
        self.classifier = classifier.eval()
        self.info = info
        self.dataroot = Path(dataroot).expanduser()
        self.device = torch.device(device)
        self.channels = classifier.cfg.channels
        self.size = classifier.cfg.image_size
        self.kid_subsets, self.subset_size, self.workers = kid_subsets, subset_size, workers
        self.unreadable: list[tuple[Path, str]] = []
        self.test: dict[str, list[np.ndarray]] = {}    # native size, classifier channels
        self.features: dict[str, Tensor] = {}
        self.probs: dict[str, Tensor] = {}
        for domain in DOMAINS:
            paths = domain_folder(self.dataroot, "test", domain, minimum=2)[:limit]
            images, _, failed = read_images(paths, self.channels, None, workers)
            self.unreadable += failed
            if len(images) < 2:
                raise DataError(f"{self.dataroot / ('test' + domain)}: {len(images)} readable image(s) "
                                f"({len(failed)} unreadable); FID needs at least 2")
            self.test[domain] = images
            self.features[domain], self.probs[domain] = self._judge(stack_images([resize_square(i, self.size) for i in images]))
        self.reference_rows = {d: self._static_rows(d) for d in DIRECTIONS}
        self.accuracy = {d: float((self.probs[d].argmax(1) == i).float().mean()) for i, d in enumerate(DOMAINS)}

    @classmethod
    def from_dataroot(cls, dataroot: str | os.PathLike, channels: int, *, classifier: str | os.PathLike | None = None,
                      classifier_size: int = 32, seed: int = 0, max_train: int | None = None,
                      epochs: int | None = None, force: bool = False, limit: int | None = None,
                      device: str | torch.device = "auto", kid_subsets: int = 100, subset_size: int = 1000,
                      workers: int = 4) -> "DomainJudge":
        """The judge of DATAROOT's test sets for ``channels``-channel models, with the classifier
        from ``classifier`` or else the cache (trained now when there is none)."""
        from cyclegan.core.devices import pick_device

        dev = pick_device(device)
        if classifier is not None:
            model, info = given_classifier(classifier, dev)
        else:
            root = Path(dataroot).expanduser()
            for domain in DOMAINS:  # say what is missing before spending minutes on training
                domain_folder(root, "test", domain, minimum=2)
            model, info = domain_classifier(dataroot, channels, size=classifier_size, seed=seed, max_train=max_train,
                                            epochs=epochs, force=force, device=dev, workers=workers)
        if model.cfg.channels != channels:
            raise DataError(f"--classifier {info.path} takes {model.cfg.channels}-channel images but the model "
                            f"translates {channels}-channel ones; train one for it with `cyclegan eval "
                            f"domain-classifier --dataroot {dataroot} --channels {channels}` or leave --classifier out")
        return cls(model, info, dataroot, limit=limit, device=dev, kid_subsets=kid_subsets, subset_size=subset_size,
                   workers=workers)

    def _judge(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return extract(self.classifier, images, device=self.device)

    def _static_rows(self, direction: str) -> dict[str, dict]:
        """The untranslated and real-target rows, which do not depend on the model."""
        src, dst, _ = DIRECTIONS[direction]
        target = DOMAINS.index(dst)
        real = self.features[dst]
        untranslated = _row(float((self.probs[src].argmax(1) == target).float().mean()), real, self.features[src],
                            self.kid_subsets, self.subset_size)
        hit = float((self.probs[dst].argmax(1) == target).float().mean())
        train_folder = self.dataroot / f"train{dst}"
        train = find_images(train_folder) if train_folder.is_dir() else []
        if len(train) >= 2:
            images, _, failed = read_images(spaced(train, len(real)), self.channels, self.size, self.workers)
        else:
            images, failed = [], []
        if len(images) >= 2:
            ref = self._judge(stack_images(images))[0]
            row = _row(hit, real, ref, self.kid_subsets, self.subset_size, reference=f"{train_folder} vs test{dst}")
        elif len(real) >= 4:
            log.info("no %s: the real-target reference compares the even and odd images of test%s", train_folder, dst)
            row = _row(hit, real[0::2], real[1::2], self.kid_subsets, self.subset_size,
                       reference=f"test{dst} even vs odd images")
        else:
            row = {"hit_rate": hit, "fid": None, "kid": None, "kid_std": None, "n": len(real),
                   "reference": "none (no train images, fewer than 4 test images)"}
        self.unreadable += failed
        return {"untranslated": untranslated, "real_target": row}

    def _translators(self, gens: Mapping[str, Any], size: int | None, precision: str) -> dict[str, Any]:
        from cyclegan.inference.translator import Translator

        fwd = {d: Translator(g, device=self.device, precision=precision, size=size) for d, g in gens.items()}
        back = {d: Translator(g, device=self.device, precision=precision, full_res=True) for d, g in gens.items()}
        return {"fwd": fwd, "back": back}

    def _for_classifier(self, x: Tensor) -> np.ndarray:
        """One translation, float CxHxW in [-1, 1] -> uint8 at the classifier's size and channels."""
        from cyclegan.inference.translator import Translator

        return resize_square(convert_channels(Translator.to_uint8(x), self.channels), self.size)

    @torch.inference_mode()
    def evaluate(self, model: Any, *, size: int | None = None, batch_size: int = 32, precision: str = "fp32",
                 strip: str | os.PathLike | None = None, runs_dir: str | os.PathLike = "runs",
                 checkpoints_dir: str | os.PathLike = "checkpoints") -> dict:
        """Figures of one model (a run folder, checkpoint, export, or {"AtoB": LoadedGenerator,
        "BtoA": ...}): {direction: {row: {hit_rate, fid, kid, kid_std, n, [cycle_l1]}}, ...}."""
        gens = _loaded_pair(model, runs_dir, checkpoints_dir)
        channels = model_channels(gens)
        if channels != self.channels:
            raise DataError(f"--model {model} translates {channels}-channel images but the domain classifier "
                            f"({self.info.path}) takes {self.channels}-channel ones; leave --classifier out to use "
                            f"(or train) one for {channels} channels, or train it with `cyclegan eval "
                            f"domain-classifier --dataroot {self.dataroot} --channels {channels}`")
        tr = self._translators(gens, size, precision)
        first = next(iter(gens))
        result: dict[str, Any] = {"model": str(model) if not isinstance(model, Mapping) else gens[first].name,
                                  "size": tr["fwd"][first].size}
        strips = []
        for direction, (src, dst, back_direction) in DIRECTIONS.items():
            if direction not in gens:
                continue
            fwd, back = tr["fwd"][direction], tr["back"].get(back_direction)
            target = DOMAINS.index(dst)
            judged: list[np.ndarray] = []
            l1: list[Tensor] = []
            shown: list[Tensor] = []
            images = self.test[src]
            for i in range(0, len(images), batch_size):
                x = torch.stack([fwd.prepare(convert_channels(im, fwd.input_channels)) for im in images[i:i + batch_size]])
                fake = fwd.forward(x)
                rec = back.forward(fake) if back is not None else None
                if rec is not None:
                    l1.append((rec - x).abs().mean(dim=(1, 2, 3)))
                judged += [self._for_classifier(f) for f in fake]
                if i == 0:
                    shown = [x[:8], fake[:8]] + ([rec[:8]] if rec is not None else [])
            feats, probs = self._judge(stack_images(judged))
            row = _row(float((probs.argmax(1) == target).float().mean()), self.features[dst], feats,
                       self.kid_subsets, self.subset_size, cycle_l1=float(torch.cat(l1).mean()) if l1 else None)
            result[direction] = {"translated": row, **self.reference_rows[direction]}
            strips.append(shown)
            log.info("%s: hit rate %.3f, FID %.3f, cycle L1 %s", direction, row["hit_rate"], row["fid"],
                     "-" if row["cycle_l1"] is None else f"{row['cycle_l1']:.4f}")
        if strip:
            result["strip"] = str(write_strip(strip, strips))
        return result

    def summary(self) -> dict:
        """What the judge is: classifier, data, test counts and accuracy (for the JSON report)."""
        return {"dataroot": str(self.dataroot), "classifier": str(self.info.path) if self.info.path else None,
                "classifier_trained_now": self.info.trained_now, "classifier_size": self.size,
                "channels": self.channels, "classes": list(self.classifier.cfg.classes or CLASSES),
                "test_accuracy": self.accuracy, "n_test": {d: len(v) for d, v in self.test.items()},
                "kid_subsets": self.kid_subsets, "unreadable": [str(p) for p, _ in self.unreadable]}


def write_strip(path: str | os.PathLike, strips: list[list[Tensor]]) -> Path:
    """Per direction three rows (input, translation, reconstruction; no reconstruction for a
    one-direction model) of up to 8 images, upscaled (nearest) so that small images are visible."""
    import torch.nn.functional as F
    vutils = import_torchvision("torchvision.utils")

    k = min(len(rows[0]) for rows in strips)
    tiles = [t[:k].float().clamp(-1, 1).add(1).div(2) for rows in strips for t in rows]
    tiles = [t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t for t in tiles]
    grid = vutils.make_grid(torch.cat(tiles), nrow=k, padding=2, pad_value=1)
    scale = max(1, 96 // max(tiles[0].shape[-2:]))
    if scale > 1:
        grid = F.interpolate(grid[None], scale_factor=scale, mode="nearest")[0]
    array = (grid * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    return atomic_write(path, lambda f: Image.fromarray(array).save(f, format="PNG"))


# -- one call ----------------------------------------------------------------------------------


def evaluate_domains(model: Any, dataroot: str | os.PathLike, *, classifier: str | os.PathLike | None = None,
                     classifier_size: int = 32, seed: int = 0, size: int | None = None, limit: int | None = None,
                     batch_size: int = 32, device: str | torch.device = "auto", precision: str = "fp32",
                     subset_size: int = 1000, kid_subsets: int = 100, max_train: int | None = None,
                     epochs: int | None = None, strip: str | os.PathLike | None = None, runs_dir: str = "runs",
                     checkpoints_dir: str = "checkpoints", workers: int = 4) -> dict:
    """Everything `cyclegan eval domains` prints, as a dict. For many models of one data set,
    build a :class:`DomainJudge` once and call its ``evaluate`` instead."""
    gens = _loaded_pair(model, runs_dir, checkpoints_dir)
    judge = DomainJudge.from_dataroot(dataroot, model_channels(gens), classifier=classifier,
                                      classifier_size=classifier_size, seed=seed, max_train=max_train, epochs=epochs,
                                      limit=limit, device=device, kid_subsets=kid_subsets, subset_size=subset_size,
                                      workers=workers)
    result = judge.evaluate(gens, size=size, batch_size=batch_size, precision=precision, strip=strip)
    result["model"] = str(model) if not isinstance(model, Mapping) else result["model"]
    return {**result, **judge.summary()}


def format_table(result: dict) -> str:
    """The figures as the table `cyclegan eval domains` prints."""
    labels = {"translated": "translated", "untranslated": "untranslated", "real_target": "real target"}
    lines = [f"{'direction':<10} {'rows':<16} {'hit rate':>9} {'FID':>9} {'KID':>9} {'cycle L1':>9}"]

    def num(value: float | None, fmt: str) -> str:
        return format(value, fmt) if value is not None else "-"

    for direction in (d for d in DIRECTIONS if d in result):
        for key in ROWS:
            r = result[direction][key]
            cyc = num(r.get("cycle_l1"), ".4f") if "cycle_l1" in r else ""
            lines.append(f"{direction:<10} {labels[key]:<16} {r['hit_rate']:>9.3f} {num(r['fid'], '.3f'):>9} "
                         f"{num(r['kid'], '.4f'):>9} {cyc:>9}")
    return "\n".join(lines)
