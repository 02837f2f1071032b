"""Evaluation: FID and KID between two image folders, and a model's cycle-reconstruction error.

The distances themselves are :mod:`cyclegan.evaluation.metrics`; this module turns folders into features.
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

import importlib
import importlib.util
import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from cyclegan.data.images import DataError, UnreadableImageError, find_images, load_image
from cyclegan.inference.translator import Translator
from cyclegan.inference.folder import ordered_map
from cyclegan.core.checkpoint import CheckpointError
from cyclegan.core.devices import pick_device
from cyclegan.core.install import import_torchvision
from cyclegan.core.pt2 import is_pt2, load_pt2_program

__all__ = ["FeatureExtractor", "cycle_errors", "folder_features", "load_feature_extractor"]

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
    from cyclegan.inference.http_download import DownloadError, download_file

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
    inception_v3 = import_torchvision("torchvision.models").inception_v3

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
    dev = pick_device(device)
    if spec == "inception":
        return _fidelity_inception(dev, inception_weights)
    if spec == "inception-torchvision":
        return _torchvision_inception(dev, inception_weights)
    path = Path(spec)
    if path.suffix in (".pt", ".pth", ".jit", ".ts", ".pt2") or path.is_file():
        if not path.is_file():
            raise DataError(f"--features {spec}: no such file")
        module = None
        program = path.suffix == ".pt2" or is_pt2(path)
        if program:
            try:  # checked before torch unpickles or evaluates anything in it
                module = load_pt2_program(path).module()
            except CheckpointError as e:
                raise DataError(f"--features {e}") from None
            except Exception as e:
                raise DataError(f"--features {spec}: not a usable .pt2 program ({type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''})") from e
        try:
            if module is None:
                with warnings.catch_warnings():  # deprecated in favour of torch.export, still widely used
                    warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated")
                    module = torch.jit.load(str(path), map_location=dev)
        except Exception as e:
            raise DataError(f"--features {spec}: not a TorchScript module or .pt2 program "
                            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
        if program:
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
        for path, result in ordered_map(pool, attempt, paths, ahead=batch_size + 2 * max(1, workers)):
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
                 workers: int = 4, progress: bool = True,
                 files: list[Path] | None = None) -> tuple[dict[str, float], list[tuple[Path, str]]]:
    """Mean |backward(forward(x)) - x| per image of ``folder`` (or of ``files`` in it: one rank's
    share under torchrun), in the networks' [-1, 1] units (the training cycle loss before its
    lambda weight). Returns ({relative path: error}, failures)."""
    root = Path(folder)
    errors: dict[str, float] = {}
    failed: list[tuple[Path, str]] = []
    files = find_images(root) if files is None else files
    for batch in _decoded_batches(files, lambda p: forward.prepare(load_image(p, forward.input_channels)),
                                  batch_size=batch_size, workers=workers, desc="cycle", progress=progress,
                                  failed=failed):
        x = torch.stack([t for _, t in batch])
        rec = backward.forward(forward.forward(x))
        for (path, _), err in zip(batch, (rec - x).abs().mean(dim=(1, 2, 3)).tolist()):
            errors[path.relative_to(root).as_posix()] = err
    return errors, failed
