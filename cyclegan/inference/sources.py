"""Which model did the user mean? One answer for every command that takes a model: ``cyclegan
translate``, ``eval``, ``export``, ``mnist sample``, the app's ``--model`` and catalogue, and
``cyclegan download weights``.

What can be typed, in the order it is looked for:

* a path to a run folder (its ``generators.safetensors`` or ``checkpoints/latest.pt``, whichever
  is newer; an original-release run's ``latest_net_G_A.pth`` / ``_B.pth``), a training checkpoint
  (``.pt``), a safetensors export or an original-release ``.pth``;
* ``hf:USER/REPO[@REVISION]``: a model on the Hugging Face Hub (:mod:`cyclegan.inference.hub`: its
  generators file, fetched into huggingface_hub's cache; ``HF_HUB_OFFLINE=1`` reads that cache only);
* a name: ``RUNS_DIR/NAME`` (a run of yours), ``CHECKPOINTS_DIR/NAME_pretrained/latest_net_G.pth``
  (where ``cyclegan download weights NAME`` puts a published model), then a model bundled with the
  package (:data:`BUNDLED_MODELS`, e.g. ``demo``), so a run of yours with the same name wins.

The local-first rule: a path that exists always wins, whatever it looks like (a folder named
``hf:me`` with a ``model`` inside is that folder). ``hf:`` means the Hub otherwise. A bare
``USER/REPO`` is a local path to the commands (a typo in a path never turns into a download);
only :meth:`cyclegan.Translator.from_pretrained` takes it as a Hub id when no such path exists.

The published models' table (:data:`PUBLISHED_GENERATORS`) lives here too, as data: download, the
resolver and the app read it. Nothing is loaded here; :mod:`cyclegan.inference.loading` and
:mod:`cyclegan.inference.mnist_sampler` read the file this module names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cyclegan.core.checkpoint import CheckpointError
from cyclegan.inference.hub import download, parse_hub

__all__ = ["BUNDLED_MODELS", "EXPORT_NAME", "PUBLISHED_GENERATORS", "PUBLISHED_PIX2PIX", "PUBLISHED_SIZE", "ModelSource",
           "published_name", "resolve", "resolve_file", "resolve_location"]

#: The original release's published CycleGAN generators (its scripts/download_cyclegan_model.sh),
#: each mapped to the published model of the opposite direction, if any. All are ResNet-9, ngf 64,
#: instance norm, no dropout, RGB, trained at :data:`PUBLISHED_SIZE` px.
PUBLISHED_GENERATORS: dict[str, str | None] = {
    "apple2orange": "orange2apple",
    "orange2apple": "apple2orange",
    "summer2winter_yosemite": "winter2summer_yosemite",
    "winter2summer_yosemite": "summer2winter_yosemite",
    "horse2zebra": "zebra2horse",
    "zebra2horse": "horse2zebra",
    "monet2photo": "style_monet",
    "style_monet": "monet2photo",
    "style_cezanne": None,
    "style_ukiyoe": None,
    "style_vangogh": None,
    "sat2map": "map2sat",
    "map2sat": "sat2map",
    "cityscapes_photo2label": "cityscapes_label2photo",
    "cityscapes_label2photo": "cityscapes_photo2label",
    "facades_photo2label": "facades_label2photo",
    "facades_label2photo": "facades_photo2label",
    "iphone2dslr_flower": None,
}
PUBLISHED_SIZE = 256

#: The original release's published pix2pix generators (its scripts/download_pix2pix_model.sh), named
#: here ``pix2pix_`` + its name so that none can be confused with the CycleGAN generators it publishes
#: as sat2map, map2sat and facades_label2photo; each mapped to its reverse, if published. All are
#: :data:`PIX2PIX_ARCH` (U-Net 256, ngf 64, batch norm, dropout, RGB) trained at 256 px; they translate
#: in :data:`PIX2PIX_TEST_MODE` by default, as the release's test.py does.
PIX2PIX_PREFIX = "pix2pix_"
PUBLISHED_PIX2PIX: dict[str, str | None] = {
    "pix2pix_edges2shoes": None,
    "pix2pix_sat2map": "pix2pix_map2sat",
    "pix2pix_map2sat": "pix2pix_sat2map",
    "pix2pix_facades_label2photo": None,
    "pix2pix_day2night": None,
}
PIX2PIX_ARCH = dict(netG="unet_256", ngf=64, norm="batch", dropout=True, input_nc=3, output_nc=3)
#: how a generator runs at test time: ``eval`` (running statistics, no dropout: torch's eval mode) or
#: ``reference`` (batch statistics and active dropout, one image at a time: the original release's
#: test.py without --eval, which made the published pix2pix results)
TEST_MODES = ("eval", "reference")
PIX2PIX_TEST_MODE = "reference"


def published_kind(name: str) -> str | None:
    """"cyclegan" or "pix2pix" for a published generator's name (as used here), else None."""
    return "cyclegan" if name in PUBLISHED_GENERATORS else "pix2pix" if name in PUBLISHED_PIX2PIX else None

ASSETS = Path(__file__).resolve().parents[1] / "assets"
#: Models shipped inside the package, usable by name wherever a model is asked for.
BUNDLED_MODELS: dict[str, Path] = {
    # the demo CycleGAN: Fashion-MNIST T-shirt/top (A) <-> Pullover (B), 32 px, grayscale
    "demo": ASSETS / "fmnist_tshirt2pullover.safetensors",
    "fmnist_tshirt2pullover": ASSETS / "fmnist_tshirt2pullover.safetensors",
    # the pix2pix demo: Fashion-MNIST edge maps (A) -> items (B), 32 px grayscale (datasets/make_fmnist_edges.py)
    "pix2pix_fmnist_edges": ASSETS / "pix2pix_fmnist_edges.safetensors",
    # the noise -> image DCGAN trained on Fashion-MNIST (docs/mnist.md), `cyclegan mnist sample`'s default
    "fashion_mnist_dcgan": ASSETS / "fashion_mnist_dcgan.safetensors",
}

#: the export a run folder holds once training finished (``cyclegan export`` writes it too)
EXPORT_NAME = "generators.safetensors"
_CHECKPOINT = Path("checkpoints") / "latest.pt"
_ACCEPTED = ("a run folder, a checkpoint .pt, a .safetensors export, an original-release .pth, "
             "a published model's name after `cyclegan download weights NAME`, hf:USER/REPO[@REVISION] on the Hub")


@dataclass(frozen=True)
class ModelSource:
    """What ``typed`` named: ``location`` is the file or folder found, ``file`` the weights file to
    read (for a run folder, the one chosen in it)."""

    typed: str
    location: Path
    file: Path

    @property
    def published(self) -> str | None:
        """The published model's name when ``file`` is one of the original release's generators."""
        name = published_name(self.file) if self.file.suffix == ".pth" else None
        return name if name in PUBLISHED_GENERATORS else None


def published_name(path: Path) -> str:
    """The model name of an original-release weights file: ``horse2zebra.pth`` -> horse2zebra;
    ``checkpoints/horse2zebra_pretrained/latest_net_G.pth`` (the download layout) and an original
    run's ``NAME/latest_net_G_A.pth`` -> the folder's name without ``_pretrained``."""
    if path.stem.startswith("latest_net_G"):
        parent = path.parent.name
        return parent[: -len("_pretrained")] if parent.endswith("_pretrained") else parent
    return path.stem


def _accepted() -> str:
    return f"{_ACCEPTED}, or a bundled model ({', '.join(BUNDLED_MODELS)})"


def resolve_location(model: str | os.PathLike, *, runs_dir: str | os.PathLike = "runs",
                     checkpoints_dir: str | os.PathLike = "checkpoints", flag: str = "--model") -> Path:
    """The existing file or folder that ``model`` names (see the module docstring); a
    :class:`CheckpointError` saying where it looked and what is accepted when there is none."""
    p = Path(model).expanduser()
    if p.exists():
        return p
    name = str(model)
    hub = parse_hub(name)
    if hub is not None:  # the Hub's generators file, in huggingface_hub's cache
        return download(*hub, flag=flag)
    if p.name != name:  # a path with folders in it: no name lookup
        raise CheckpointError(f"{flag} {model}: no such file or folder; pass {_accepted()}")
    candidates = [Path(runs_dir) / name, Path(checkpoints_dir) / f"{name}_pretrained" / "latest_net_G.pth"]
    if name in BUNDLED_MODELS:
        candidates.append(BUNDLED_MODELS[name])
    found = next((c for c in candidates if c.exists()), None)
    if found is not None:
        return found
    if published_kind(name):
        hint = f"; `cyclegan download weights {name}` fetches the published model"
    elif PIX2PIX_PREFIX + name in PUBLISHED_PIX2PIX:
        hint = (f"; the original release's pix2pix model {name} is {PIX2PIX_PREFIX + name} here "
                f"(`cyclegan download weights {PIX2PIX_PREFIX + name}`)")
    elif name in BUNDLED_MODELS:
        hint = f"; the bundled file {BUNDLED_MODELS[name]} is missing (a partial install?)"
    else:
        hint = f"; pass {_accepted()}"
    raise CheckpointError(f"{flag} {model}: no such file or folder (also looked for {candidates[0]} and "
                          f"{candidates[1]}){hint}")


def resolve_file(location: Path, direction: str | None = None, *, flag: str = "--model") -> Path:
    """The weights file to read for ``location``: itself when it is a file; in a run folder its
    export or latest checkpoint (whichever is newer: a resumed run writes the export only when it
    finishes), else an original-release generator (``latest_net_G.pth``, or of an original run the
    file of ``direction``: ``latest_net_G_A.pth`` for AtoB, ``_B`` for BtoA)."""
    if location.is_file():
        return location
    export, latest = location / EXPORT_NAME, location / _CHECKPOINT
    if export.is_file() and latest.is_file():
        return latest if latest.stat().st_mtime > export.stat().st_mtime else export
    for candidate in (export, latest, location / "latest_net_G.pth"):
        if candidate.is_file():
            return candidate
    original = location / f"latest_net_G_{'B' if direction == 'BtoA' else 'A'}.pth"
    if original.is_file():
        return original
    raise CheckpointError(
        f"{flag} {location}: the folder holds no {EXPORT_NAME}, {_CHECKPOINT.as_posix()} or latest_net_G*.pth; "
        f"pass {_ACCEPTED}")


def resolve(model: str | os.PathLike, direction: str | None = None, *, runs_dir: str | os.PathLike = "runs",
            checkpoints_dir: str | os.PathLike = "checkpoints", flag: str = "--model") -> ModelSource:
    """``model`` as typed -> :class:`ModelSource` (the folder or file found and the file to read)."""
    location = resolve_location(model, runs_dir=runs_dir, checkpoints_dir=checkpoints_dir, flag=flag)
    return ModelSource(str(model), location, resolve_file(location, direction, flag=flag))
