"""Evaluation: FID and KID between two image folders, and a model's cycle-reconstruction error.

The distances themselves are :mod:`cyclegan.metrics`; this module turns folders into features.
Feature extractors (``--features``):

* ``inception`` (default): the Inception-v3 of the standard FID (the TensorFlow 2015 weights, as
  in pytorch-fid and torch-fidelity; needs the ``torch-fidelity`` package), so numbers compare
  with published FIDs;
* ``inception-torchvision``: torchvision's ImageNet Inception-v3 pool features; fine for
  comparing your own models with each other, *not* comparable with published FIDs;
* ``PATH`` to a TorchScript module (``torch.jit.save``) or a ``.pt2`` ``torch.export`` program;
* ``module:function`` or ``file.py:function``: a Python callable.

A TorchScript file, a .pt2 program or a Python function is code you run: use your own. Each takes
a float batch (N, 3, H, W) in [0, 1] on the evaluation device and returns (N, D) features.

The Inception weights are downloaded once into torch hub's cache (``$TORCH_HOME/hub/checkpoints``)
and read with ``torch.load(weights_only=True)``; offline, copy the file there or pass
``--inception-weights FILE``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from .checkpoint import atomic_write
from .images import DataError, UnreadableImageError, find_images, load_image
from .metrics import frechet_distance, kernel_distance
from .translate import (DIRECTIONS, Translator, _ordered_map, add_architecture_args,
                        architecture_overrides, load_generator, resolve_device)

__all__ = ["FeatureExtractor", "add_eval_commands", "cycle_errors", "folder_features", "load_feature_extractor"]

log = logging.getLogger("cyclegan.evaluate")

#: The FID Inception-v3 (TensorFlow's 2015-12-05 graph, ported by torch-fidelity / pytorch-fid).
INCEPTION_FID_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                     "weights-inception-2015-12-05-6726825d.pth")
#: torchvision's ImageNet Inception-v3; the hash in the name is a SHA-256 prefix (torch hub rule).
INCEPTION_TORCHVISION_URL = "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth"


@dataclass
class FeatureExtractor:
    """``fn(uint8 batch (N, 3, H, W) on device) -> (N, D) features``, with a name for reports."""

    name: str
    fn: Callable[[Tensor], Tensor]
    device: torch.device

    @torch.inference_mode()
    def __call__(self, images: Tensor) -> Tensor:
        feats = self.fn(images.to(self.device))
        if isinstance(feats, (tuple, list)):
            feats = feats[0]
        if not isinstance(feats, Tensor) or feats.shape[0] != images.shape[0]:
            raise DataError(f"feature extractor {self.name} must return an (N, D) tensor for N images, got "
                            f"{getattr(feats, 'shape', type(feats).__name__)}")
        return feats.reshape(feats.shape[0], -1).double().cpu()


def _as_unit_float(fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """Adapt a user extractor, which takes floats in [0, 1], to the uint8 batches we load."""
    return lambda x: fn(x.float() / 255.0)


# -- Inception ---------------------------------------------------------------------------------


def _inception_weights(url: str, given: str | None, sha256_prefix: str | None) -> dict[str, Tensor]:
    from .download import DownloadError, download_file

    if given:
        path = Path(given)
        if not path.is_file():
            raise DataError(f"--inception-weights {path}: no such file")
    else:
        path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
        if not path.is_file():
            try:
                download_file(url, path, sha256_prefix=sha256_prefix)
            except DownloadError as e:
                raise DownloadError(
                    f"the Inception-v3 weights for FID are not in {path.parent} and could not be downloaded: {e}\n"
                    f"Copy {path.name} into {path.parent} (set TORCH_HOME to move it), pass --inception-weights "
                    "FILE, or use your own features with --features PATH|module:function") from e
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DataError(f"cannot read the Inception weights {path} ({type(e).__name__}: {e}); delete the file "
                        "to download it again") from e


def _fidelity_inception(device: torch.device, weights: str | None) -> FeatureExtractor:
    state = _inception_weights(INCEPTION_FID_URL, weights, None)
    try:
        from torch_fidelity import feature_extractor_inceptionv3 as fid_inception
    except ImportError as e:
        raise DataError("--features inception (the standard FID network) needs torch-fidelity: "
                        "pip install 'cyclegan[fid]' (or torch-fidelity); --features inception-torchvision works "
                        "without it but its numbers are not comparable with published FIDs") from e
    from unittest import mock

    # torch-fidelity would fetch and unpickle the file itself (weights_only=False); hand it the state
    # dict we read with weights_only=True instead.
    with mock.patch.object(fid_inception, "load_state_dict_from_url", lambda *a, **k: state):
        net = fid_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    net.to(device).eval()
    return FeatureExtractor("inception (FID, 2048-d pool3)", lambda x: net(x)[0], device)


def _torchvision_inception(device: torch.device, weights: str | None) -> FeatureExtractor:
    from torchvision.models import inception_v3

    state = _inception_weights(INCEPTION_TORCHVISION_URL, weights, "0cc3c7bd" if not weights else None)
    net = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=False)
    net.load_state_dict(state)
    net.fc = nn.Identity()
    net.to(device).eval()

    def features(x: Tensor) -> Tensor:
        x = F.interpolate(x.float() / 255.0, size=(299, 299), mode="bilinear", align_corners=False)
        return net(x * 2 - 1)  # the ported TensorFlow weights take [-1, 1]

    return FeatureExtractor("inception-torchvision (ImageNet, 2048-d pool; not comparable with published FID)",
                            features, device)


# -- user extractors ---------------------------------------------------------------------------


def _python_callable(spec: str) -> Callable[[Tensor], Tensor]:
    target, _, attr = spec.rpartition(":")
    try:
        if target.endswith(".py") or Path(target).is_file():
            path = Path(target)
            if not path.is_file():
                raise DataError(f"--features {spec}: no such file {path}")
            module_spec = importlib.util.spec_from_file_location(f"_cyclegan_features_{path.stem}", path)
            assert module_spec is not None and module_spec.loader is not None
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"--features {spec}: cannot import {target} ({type(e).__name__}: {e})") from e
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise DataError(f"--features {spec}: {target} has no function {attr!r}")
    return fn


def load_feature_extractor(spec: str = "inception", device: str | torch.device = "auto",
                           inception_weights: str | None = None) -> FeatureExtractor:
    """See the module docstring for what ``spec`` may be."""
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    if spec == "inception":
        return _fidelity_inception(dev, inception_weights)
    if spec == "inception-torchvision":
        return _torchvision_inception(dev, inception_weights)
    path = Path(spec)
    if path.suffix in (".pt", ".pth", ".jit", ".ts", ".pt2") or path.is_file():
        if not path.is_file():
            raise DataError(f"--features {spec}: no such file")
        try:
            if path.suffix == ".pt2":
                module = torch.export.load(str(path)).module()
            else:
                with warnings.catch_warnings():  # deprecated in favour of torch.export, still widely used
                    warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated")
                    module = torch.jit.load(str(path), map_location=dev)
        except Exception as e:
            raise DataError(f"--features {spec}: not a TorchScript module or .pt2 program "
                            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
        if path.suffix == ".pt2":
            try:  # an exported program is already in inference form; moving it may not be supported
                module.to(dev)
            except Exception:
                log.warning("%s cannot be moved to %s; running it on the CPU", path, dev)
                dev = torch.device("cpu")
        else:
            module.eval().to(dev)
        return FeatureExtractor(path.name, _as_unit_float(module), dev)
    if ":" in spec:
        return FeatureExtractor(spec, _as_unit_float(_python_callable(spec)), dev)
    raise DataError(f"--features {spec}: expected inception, inception-torchvision, a TorchScript/.pt2 file or "
                    "module:function")


# -- folders -> features -----------------------------------------------------------------------


def _load_rgb(path: Path, size: int | None) -> Tensor:
    image = load_image(path, 3)
    if size and image.shape[:2] != (size, size):
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC))
    return torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1)


def _decoded_batches(paths: list[Path], decode: Callable[[Path], Tensor], *, batch_size: int, workers: int,
                     desc: str, progress: bool, failed: list[tuple[Path, str]]) -> Iterator[list[tuple[Path, Tensor]]]:
    """``decode`` every path in worker threads, in order, and yield batches of at most
    ``batch_size`` same-shaped results. Unreadable files are appended to ``failed`` and named
    once on the progress bar."""
    from tqdm import tqdm

    def attempt(path: Path) -> tuple[Path, Tensor | str]:
        try:
            return path, decode(path)
        except UnreadableImageError as e:
            return path, e.reason

    batch: list[tuple[Path, Tensor]] = []
    with ThreadPoolExecutor(max(1, workers)) as pool, \
            tqdm(total=len(paths), unit="img", desc=desc, file=sys.stderr, disable=not progress,
                 dynamic_ncols=True, mininterval=0.5) as bar:
        for path, result in _ordered_map(pool, attempt, paths, ahead=batch_size + 2 * max(1, workers)):
            bar.update(1)
            if isinstance(result, str):
                failed.append((path, result))
                bar.write(f"skipping {path}: {result}", file=sys.stderr)
                continue
            if batch and (len(batch) >= batch_size or batch[0][1].shape != result.shape):
                yield batch
                batch = []
            batch.append((path, result))
        if batch:
            yield batch


def folder_features(folder: str | Path, extractor: FeatureExtractor, *, image_size: int | None = None,
                    batch_size: int = 32, workers: int = 4, progress: bool = True) -> tuple[Tensor, list[tuple[Path, str]]]:
    """Features of every image under ``folder`` (recursive); same-sized images are batched.
    Returns (features (N, D), [(unreadable file, reason)])."""
    failed: list[tuple[Path, str]] = []
    chunks = [extractor(torch.stack([t for _, t in batch]))
              for batch in _decoded_batches(find_images(folder), lambda p: _load_rgb(p, image_size),
                                            batch_size=batch_size, workers=workers,
                                            desc=f"features {Path(folder).name}", progress=progress, failed=failed)]
    if sum(c.shape[0] for c in chunks) < 2:
        raise DataError(f"{folder}: need at least 2 readable images for FID/KID, found "
                        f"{sum(c.shape[0] for c in chunks)} ({len(failed)} unreadable)")
    return torch.cat(chunks), failed


# -- cycle reconstruction ----------------------------------------------------------------------


def cycle_errors(forward: Translator, backward: Translator, folder: str | Path, *, batch_size: int = 4,
                 workers: int = 4, progress: bool = True) -> tuple[dict[str, float], list[tuple[Path, str]]]:
    """Mean |backward(forward(x)) - x| per image of ``folder``, in the networks' [-1, 1] units (the
    training cycle loss before its lambda weight). Returns ({relative path: error}, failures)."""
    root = Path(folder)
    errors: dict[str, float] = {}
    failed: list[tuple[Path, str]] = []
    for batch in _decoded_batches(find_images(root), lambda p: forward.prepare(load_image(p, forward.input_channels)),
                                  batch_size=batch_size, workers=workers, desc="cycle", progress=progress,
                                  failed=failed):
        x = torch.stack([t for _, t in batch])
        rec = backward.forward(forward.forward(x))
        for (path, _), err in zip(batch, (rec - x).abs().mean(dim=(1, 2, 3)).tolist()):
            errors[path.relative_to(root).as_posix()] = err
    return errors, failed


# -- the `cyclegan eval` command ---------------------------------------------------------------


def _write_json(path: str, result: dict[str, Any]) -> None:
    text = json.dumps(result, indent=2) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def _cmd_fid(args: argparse.Namespace) -> int:
    extractor = load_feature_extractor(args.features, args.device, args.inception_weights)
    common = dict(image_size=args.image_size, batch_size=args.batch_size, workers=args.workers,
                  progress=not args.no_progress)
    real, bad_real = folder_features(args.real, extractor, **common)
    fake, bad_fake = folder_features(args.fake, extractor, **common)
    if real.shape[1] != fake.shape[1]:
        raise DataError(f"the two folders gave {real.shape[1]}- and {fake.shape[1]}-dimensional features; "
                        "pass --image-size so every image reaches the extractor at one size")
    fid = frechet_distance(real, fake)
    kid, kid_std = kernel_distance(real, fake, subsets=args.kid_subsets, subset_size=args.kid_subset_size)
    dims = real.shape[1]
    result = {"fid": fid, "kid": kid, "kid_std": kid_std, "real": str(args.real), "fake": str(args.fake),
              "n_real": real.shape[0], "n_fake": fake.shape[0], "features": extractor.name, "dims": dims,
              "unreadable": [str(p) for p, _ in bad_real + bad_fake]}
    print(f"FID {fid:.4f}  KID {kid:.5f} ± {kid_std:.5f}  ({real.shape[0]} real, {fake.shape[0]} fake images; "
          f"{extractor.name}, {dims} dims)")
    if min(real.shape[0], fake.shape[0]) <= dims:
        print(f"note: fewer images than feature dimensions ({dims}): FID is biased upwards; compare only "
              "numbers computed on the same image counts (KID is unbiased)", file=sys.stderr)
    if args.json:
        _write_json(args.json, result)
    unreadable = bad_real + bad_fake
    if unreadable:
        print(f"{len(unreadable)} unreadable image(s) skipped", file=sys.stderr)
    return 0 if not unreadable else 1


def _cmd_cycle(args: argparse.Namespace) -> int:
    direction = args.direction or "AtoB"
    reverse_direction = "BtoA" if direction == "AtoB" else "AtoB"
    arch = architecture_overrides(args)
    g = load_generator(args.model, args.direction, arch=arch, runs_dir=args.runs_dir,
                       checkpoints_dir=args.checkpoints_dir)
    if args.reverse:
        f = load_generator(args.reverse, None, arch=arch, runs_dir=args.runs_dir, checkpoints_dir=args.checkpoints_dir)
    elif g.direction is None:
        raise DataError(f"{g.source} holds one generator; pass --reverse with the opposite direction's weights "
                        "(e.g. zebra2horse.pth for horse2zebra.pth)")
    else:
        f = load_generator(args.model, reverse_direction, runs_dir=args.runs_dir, checkpoints_dir=args.checkpoints_dir)
    kw = dict(device=args.device, precision=args.precision, full_res=args.full_res, size=args.size, tile=args.tile,
              tile_overlap=args.tile_overlap, winograd=args.winograd)
    forward = Translator(g, **kw)
    backward = Translator(f, **{**kw, "device": forward.device, "full_res": True})  # already at the right size
    errors, failed = cycle_errors(forward, backward, args.input, batch_size=args.batch_size, workers=args.workers,
                                  progress=not args.no_progress)
    if not errors:
        raise DataError(f"--input {args.input}: no readable images ({len(failed)} unreadable)")
    values = np.array(list(errors.values()))
    worst = max(errors, key=errors.get)
    print(f"cycle L1 {g.direction or g.name} then back, over {len(values)} images ([-1, 1] units): "
          f"mean {values.mean():.5f}, median {np.median(values):.5f}, max {values.max():.5f} ({worst})")
    if args.json:
        _write_json(args.json, {"mean": float(values.mean()), "median": float(np.median(values)),
                                "max": float(values.max()), "n": len(values), "model": str(g.source),
                                "reverse": str(f.source), "per_image": errors,
                                "unreadable": [str(p) for p, _ in failed]})
    return 0 if not failed else 1


def _cmd_domains(args: argparse.Namespace) -> int:
    from .domains import format_table, evaluate_domains, write_json

    result = evaluate_domains(
        args.model, args.dataroot, classifier=args.classifier, classifier_size=args.classifier_size, seed=args.seed,
        size=args.size, limit=args.limit, batch_size=args.batch_size, device=args.device, precision=args.precision,
        subset_size=args.subset_size, kid_subsets=args.kid_subsets, max_train=args.max_train, epochs=args.epochs,
        strip=args.strip, runs_dir=args.runs_dir, checkpoints_dir=args.checkpoints_dir, workers=args.workers)
    acc = ", ".join(f"test{d} {v:.1%}" for d, v in result["test_accuracy"].items())
    print(f"model {result['model']} at {result['size']} px; domain classifier {result['classifier'] or '(not saved)'} "
          f"({'trained now' if result['classifier_trained_now'] else 'cached'}, {result['classifier_size']} px, "
          f"accuracy {acc}); {result['n_test']['A']} testA and {result['n_test']['B']} testB images")
    print(format_table(result))
    print("untranslated: the input images judged as if translated. real target: hit rate of the real target test "
          "images; FID/KID of as many real target training images vs the test set (the floor).")
    if args.json:
        write_json(args.json, result)
    if "strip" in result:
        print(f"wrote {result['strip']}")
    if result["unreadable"]:
        print(f"{len(result['unreadable'])} unreadable image(s) skipped", file=sys.stderr)
    return 0 if not result["unreadable"] else 1


def _cmd_domain_classifier(args: argparse.Namespace) -> int:
    from .classifier import extract
    from .domains import DOMAINS, detect_channels, domain_classifier, read_images, _stack

    device = resolve_device(args.device)
    channels = args.channels or detect_channels(args.dataroot)
    model, info = domain_classifier(args.dataroot, channels, size=args.classifier_size, seed=args.seed,
                                    max_train=args.max_train, epochs=args.epochs, force=args.force, device=device,
                                    workers=args.workers)
    print(f"domain classifier {info.path or '(not saved)'}: {'trained now' if info.trained_now else 'cached'}, "
          f"{channels} channel(s), {args.classifier_size} px, seed {args.seed}"
          + ("" if info.trained_now or args.force else " (--force retrains)"))
    for label, domain in enumerate(DOMAINS):
        folder = Path(args.dataroot) / f"test{domain}"
        if not folder.is_dir():
            print(f"test{domain}: no {folder}, accuracy not measured")
            continue
        images, _, _ = read_images(find_images(folder), channels, args.classifier_size, args.workers)
        if not images:
            print(f"test{domain}: no readable images in {folder}")
            continue
        probs = extract(model, _stack(images), device=device)[1]
        print(f"test{domain}: accuracy {float((probs.argmax(1) == label).float().mean()):.2%} "
              f"({len(images)} images)")
    return 0


def add_eval_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``cyclegan eval {fid,cycle,domains,domain-classifier}``."""
    from .translate import add_runtime_args

    p = sub.add_parser("eval", help="FID/KID between two folders, a model's cycle-reconstruction error, or a "
                                    "domain-classifier judgement of a model",
                       description="Evaluate translations: `eval fid` compares two image folders, "
                                   "`eval cycle` measures how well a model's two generators undo each other, "
                                   "`eval domains` judges both directions with a classifier trained on the data set "
                                   "(`eval domain-classifier` trains it explicitly).")
    kinds = p.add_subparsers(dest="eval_kind", metavar="KIND")
    kinds.required = True

    fid = kinds.add_parser("fid", help="FID and KID between two image folders",
                           description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    fid.add_argument("--real", required=True, help="folder of real images (e.g. datasets/horse2zebra/testB)")
    fid.add_argument("--fake", required=True, help="folder of translated images")
    fid.add_argument("--features", default="inception",
                     help="inception, inception-torchvision, a TorchScript/.pt2 file, or module:function [inception]")
    fid.add_argument("--inception-weights", help="a local copy of the Inception weights (no download)")
    fid.add_argument("--image-size", type=int,
                     help="resize every image to this square size before the extractor [as stored; Inception "
                          "resizes to 299 itself]")
    fid.add_argument("--kid-subsets", type=int, default=100, help="KID: random subsets averaged [100]")
    fid.add_argument("--kid-subset-size", type=int, default=1000, help="KID: images per subset (capped) [1000]")
    fid.add_argument("--batch-size", type=int, default=32, help="images per feature batch [32]")
    fid.add_argument("--workers", type=int, default=4, help="decoding threads [4]")
    fid.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps [auto]")
    fid.add_argument("--json", help="also write the results to this JSON file")
    fid.add_argument("--no-progress", action="store_true", help="no progress bar")
    fid.set_defaults(func=_cmd_fid)

    cyc = kinds.add_parser("cycle", help="mean L1 between images and their round trip through both generators")
    cyc.add_argument("--model", "-m", required=True, help="run folder, checkpoint, export, or .pth (with --reverse)")
    cyc.add_argument("--input", "-i", required=True, help="folder of images of the source domain")
    cyc.add_argument("--direction", choices=DIRECTIONS, default=None,
                     help="AtoB: A -> G_A -> G_B -> A (input is domain A); BtoA the other way [AtoB]")
    cyc.add_argument("--reverse", help="weights of the opposite direction, for a single published .pth")
    cyc.add_argument("--runs-dir", default="runs", help="where bare --model names are looked up [runs]")
    cyc.add_argument("--checkpoints-dir", default="checkpoints", help="where published weights live [checkpoints]")
    cyc.add_argument("--json", help="also write the results (and per-image errors) to this JSON file")
    add_runtime_args(cyc)
    add_architecture_args(cyc)
    cyc.set_defaults(func=_cmd_cycle)

    from .argtypes import positive_int
    from .domains import __doc__ as domains_doc

    def classifier_args(q: argparse.ArgumentParser) -> None:
        q.add_argument("--dataroot", required=True, help="data set with trainA, trainB, testA, testB")
        q.add_argument("--classifier-size", type=positive_int, default=32,
                       help="side the classifier sees; images are resized to it [32]")
        q.add_argument("--seed", type=int, default=0, help="seed of the classifier's training [0]")
        q.add_argument("--epochs", type=positive_int,
                       help="classifier training epochs [3; up to 30 for small data sets, to reach about 120 steps]")
        q.add_argument("--max-train", type=positive_int,
                       help="train the classifier on at most N images per domain (spread evenly) [all]")
        q.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps [auto]")
        q.add_argument("--workers", type=int, default=4, help="decoding threads [4]")

    dom = kinds.add_parser("domains", help="hit rate, FID/KID and cycle L1 of both directions, judged by a domain "
                                           "classifier trained on the data set",
                           description=domains_doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    dom.add_argument("--model", "-m", required=True, help="run folder, checkpoint or generators.safetensors")
    classifier_args(dom)
    dom.add_argument("--classifier", help="a domain classifier file instead of the cached one "
                                          "(`cyclegan eval domain-classifier`)")
    dom.add_argument("--size", type=positive_int, help="translate at SIZE x SIZE [the size the model was trained at]")
    dom.add_argument("--limit", type=positive_int, help="only the first N test images per domain [all]")
    dom.add_argument("--batch-size", type=positive_int, default=32, help="images per forward pass [32]")
    dom.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="fp32",
                     help="generator autocast dtype [fp32]")
    dom.add_argument("--subset-size", type=positive_int, default=1000,
                     help="KID: images per subset (clamped to the number of images) [1000]")
    dom.add_argument("--kid-subsets", type=positive_int, default=100, help="KID: random subsets averaged [100]")
    dom.add_argument("--json", help="also write every figure to this JSON file")
    dom.add_argument("--strip", help="also save a PNG: per direction 8 test images, their translations and "
                                     "reconstructions")
    dom.add_argument("--runs-dir", default="runs", help="where bare --model names are looked up [runs]")
    dom.add_argument("--checkpoints-dir", default="checkpoints", help="where published weights live [checkpoints]")
    dom.set_defaults(func=_cmd_domains)

    dc = kinds.add_parser("domain-classifier", help="train (or show) the cached A-vs-B classifier of a data set",
                          description="Train the classifier `eval domains` judges with on DATAROOT/trainA (0) and "
                                      "trainB (1), cache it in DATAROOT/.cyclegan and print its accuracy on testA "
                                      "and testB. A cached one for the same settings and files is reused unless "
                                      "--force.")
    classifier_args(dc)
    dc.add_argument("--channels", type=int, choices=(1, 3),
                    help="1 for grayscale, 3 for RGB: the model's channel count [1 if the data is grayscale]")
    dc.add_argument("--force", action="store_true", help="retrain even if a cached classifier fits")
    dc.set_defaults(func=_cmd_domain_classifier)
