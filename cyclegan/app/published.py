"""The app's published-model buttons and its model info panel, without the UI.

* :func:`download_published`: one click on a published model's button downloads the original
  release's generator (:func:`cyclegan.inference.download.download_weights`: resumable, size- and
  name-checked), rescans the catalog and returns the id of the new model to select. Offline, the
  message is one line.
* :func:`model_info`: what the chosen model is before it is used: its domains (A and B names),
  the size it was trained at, grayscale or colour, the network, and the evaluation figures of
  ``cyclegan eval domains --json RUN/eval/domains.json`` when the run has them saved.
"""

from __future__ import annotations

import logging
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cyclegan.app.actions import AppBackend
from cyclegan.app.catalog import ARROW, ModelEntry, download_command
from cyclegan.app.settings import UserError
from cyclegan.core.readers import read_json_file
from cyclegan.inference.download import (DownloadError, download_weights, published_weights_mb, weights_path,
                                        weights_url)
from cyclegan.inference.loading import PUBLISHED_GENERATORS, PUBLISHED_SIZE, GeneratorSpec
from cyclegan.inference.sources import PIX2PIX_ARCH, PIX2PIX_PREFIX, PUBLISHED_PIX2PIX

__all__ = ["EVAL_FILE", "download_published", "eval_figures", "model_info", "published_domains"]

log = logging.getLogger("cyclegan.app")

#: where the app looks for a run's evaluation figures (``cyclegan eval domains --json``)
EVAL_FILE = Path("eval") / "domains.json"


def published_domains(name: str) -> tuple[str, str]:
    """The two domains of a published model, read off its name: horse2zebra -> (horse, zebra),
    cityscapes_photo2label -> (photo, label), style_monet -> (photo, Monet painting)."""
    name = name.removeprefix(PIX2PIX_PREFIX)
    if name.startswith("style_"):
        return "photo", f"{name[len('style_'):].capitalize()} painting"
    token = next((t for t in name.split("_") if "2" in t), name)
    a, _, b = token.partition("2")
    return (a, b) if a and b else ("A", "B")


def _offline(e: DownloadError) -> bool:
    cause = e.__cause__
    return isinstance(cause, (urllib.error.URLError, OSError)) and not isinstance(cause, urllib.error.HTTPError)


def download_published(backend: AppBackend, name: Any,
                       on_progress: Callable[[int, int | None], None] | None = None) -> str:
    """Download the published generator ``name`` into the checkpoints folder (nothing if it is
    there already), rescan, and return the catalog id of that model."""
    if name not in PUBLISHED_GENERATORS and name not in PUBLISHED_PIX2PIX:
        raise UserError(f"{name!r} is not a published model; choose one of: "
                        f"{', '.join({**PUBLISHED_GENERATORS, **PUBLISHED_PIX2PIX})}.")
    try:
        download_weights(name, backend.settings.checkpoints_dir, progress=False, on_progress=on_progress)
    except DownloadError as e:
        log.warning("download of %s failed: %s", name, e)
        if _offline(e):
            target = weights_path(name, backend.settings.checkpoints_dir).as_posix()
            raise UserError(f"Cannot download {name}: the model server cannot be reached (offline?). Try again when "
                            f"online, or get {weights_url(name)} ({published_weights_mb(name):g} MB) on another machine, "
                            f"copy it to {target} here and press Rescan models (or run "
                            f"`{download_command(name, backend.settings.checkpoints_dir)}` when online).") from None
        raise UserError(f"Cannot download {name}: {str(e).splitlines()[0]}") from None
    for choice in backend.catalog(refresh=True).translate:
        if choice.entry.published == name:
            return choice.id
    raise UserError(f"{name} was downloaded but is not listed; press Rescan models.")


def _eval_path(entry: ModelEntry) -> Path | None:
    src = entry.source
    if src.is_dir():
        return src / EVAL_FILE
    if src.name == "generators.safetensors":
        return src.parent / EVAL_FILE
    if src.name == "latest.pt" and src.parent.name == "checkpoints":
        return src.parent.parent / EVAL_FILE
    return None


def eval_figures(entry: ModelEntry, direction: str | None) -> str | None:
    """One line of the saved ``eval domains`` figures for ``direction``, or None."""
    path = _eval_path(entry)
    if path is None or not path.is_file():
        return None
    try:
        result = read_json_file(path)
        rows = result[direction or "AtoB"]
        t, u, r = rows["translated"], rows["untranslated"], rows["real_target"]
        cycle = f", cycle L1 {t['cycle_l1']:.3f}" if t.get("cycle_l1") is not None else ""
        fid = f", FID {t['fid']:.2f} (real images: {r['fid']:.2f})" if t.get("fid") is not None else ""
        return (f"hit rate {t['hit_rate']:.0%} (untranslated {u['hit_rate']:.0%}, real target {r['hit_rate']:.0%})"
                f"{fid}{cycle}, at {result.get('size', '?')} px, from {path.name}")
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:  # BadFileError too
        log.warning("cannot read %s: %s", path, e)
        return None


def model_info(backend: AppBackend, choice_id: Any) -> str:
    """Markdown for the panel beside the model list (see the module docstring)."""
    choice = backend.catalog().find(choice_id)
    entry = choice.entry
    if entry.published:
        a, b = published_domains(entry.published)
        pix2pix = entry.published in PUBLISHED_PIX2PIX
        # the table's architecture: no need to load it
        spec, size = (GeneratorSpec(**PIX2PIX_ARCH) if pix2pix else GeneratorSpec()), PUBLISHED_SIZE
        origin = ("published by the original pix2pix release; runs as its test.py did (batch statistics and "
                  "dropout)" if pix2pix else "published by the original CycleGAN release")
    else:
        gen = backend.generator(entry, choice.direction)
        spec, size = gen.spec, gen.size
        a, b = entry.domains
        origin = f"from {entry.label}"
    src, dst = (b, a) if choice.direction == "BtoA" else (a, b)
    channels = ("grayscale: colour inputs are translated as gray" if spec.input_nc == 1 else
                "colour (RGB)")
    trained = f"trained at {size} px" if size else "training size unknown (translated at 256 px)"
    lines = [f"**{src} {ARROW} {dst}**", "", f"- {trained}; {channels}", f"- {spec.describe()}, {origin}"]
    figures = eval_figures(entry, choice.direction)
    if figures:
        lines.append(f"- evaluation: {figures}")
    else:
        command = eval_command(entry)
        lines.append(f"- no evaluation saved; this command makes one: `{command}`" if command else
                     "- no evaluation saved")
    return "\n".join(lines)


def _run_folder(entry: ModelEntry) -> Path | None:
    path = _eval_path(entry)
    return path.parent.parent if path is not None else None


def eval_command(entry: ModelEntry) -> str | None:
    """The ``cyclegan eval domains`` command that saves the figures the panel shows, filled in for
    this run and the data set it was trained on; None where it would not work as pasted (no run
    folder, no data set named in its config.yaml, or that folder lacks testA and testB)."""
    import shlex

    import yaml

    run = _run_folder(entry)
    if run is None:
        return None
    try:
        config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
        dataroot = config["data"]["dataroot"]
    except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError):
        return None
    if not isinstance(dataroot, str) or not all((Path(dataroot) / f"test{d}").is_dir() for d in "AB"):
        return None
    out = run / EVAL_FILE
    return (f"cyclegan eval domains --model {shlex.quote(run.as_posix())} --dataroot {shlex.quote(dataroot)} "
            f"--json {shlex.quote(out.as_posix())}")
