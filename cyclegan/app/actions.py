"""What the Gradio app (``app.py``) does, without the UI: which models exist, loading each once,
turning an upload into a translated image, drawing samples from the noise -> image GAN, and the
app's command-line flags. Every problem a user can cause is a :class:`UserError` whose message
is shown in the UI as is; nothing here imports gradio or any training code.

Where models come from (:meth:`AppBackend.catalog`, rescanned on request):

* the bundled demo CycleGAN (``cyclegan/assets/fmnist_tshirt2pullover.safetensors``, Fashion-MNIST
  T-shirt/top <-> Pullover, 32 px grayscale) and the bundled Fashion-MNIST DCGAN;
* ``--model PATH`` (a run folder, checkpoint, export or .pth), the default when given;
* every run folder, export and .pth under ``--runs-dir`` and ``--checkpoints-dir``, including the
  original release's published generators as ``cyclegan download weights NAME`` stores them.

The browser only ever sends a model's id (an entry of the server-side catalog) and an uploaded
file that gradio has checked is in its upload folder; the app reads nothing else.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
import torch
from PIL import Image

from cyclegan.core.checkpoint import CheckpointError
from cyclegan.inference.mnist_sampler import BUNDLED_GENERATOR, LatentSampler, to_pil
from cyclegan.inference.loading import LoadedGenerator, load_generator
from cyclegan.inference.sources import PUBLISHED_GENERATORS, PUBLISHED_PIX2PIX, published_kind, published_name, resolve_location
from cyclegan.inference.translator import Translator
from cyclegan.core.devices import pick_device
from cyclegan.app.catalog import BUNDLED_CYCLEGAN, BUNDLED_DOMAINS, BUNDLED_PIX2PIX, BUNDLED_PIX2PIX_DOMAINS, Catalog, is_paired, Choice, ModelEntry, OFFERED_PUBLISHED, direction_label, download_command, export_kind, model_domains, run_kind, scan_models
from cyclegan.app.settings import ASSETS, AppSettings, UserError
from cyclegan.app.uploads import NO_IMAGE, colour_note, enlarge, read_upload, to_image

__all__ = ["EXAMPLES_DIR", "AppBackend", "DrawResult", "GenerateResult", "TranslateResult", "drawing_array"]

log = logging.getLogger("cyclegan.app")
#: example inputs shown under the Translate tab (Fashion-MNIST test images, enlarged to 112 px)
EXAMPLES_DIR = ASSETS / "examples"


def slug(text: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)
    return "_".join(filter(None, keep.split("_")))[:60] or "image"


# --------------------------------------------------------------------------------------------
# The backend: catalog, cached models, the three actions
# --------------------------------------------------------------------------------------------


@dataclass
class TranslateResult:
    output: Image.Image                    # the result at its true size
    display: Image.Image                   # the same, enlarged for the page when small
    reconstruction: Image.Image | None     # translated back (cycle), enlarged like display
    download: Path                         # the PNG to download
    info: str                              # markdown: model, sizes, time
    notes: list[str] = field(default_factory=list)   # warnings to show
    input_display: Image.Image | None = None  # the input as the model saw it, enlarged like display (before/after)


@dataclass
class GenerateResult:
    image: Image.Image                     # the grid or strip, enlarged for the page
    download: Path
    info: str
    notes: list[str] = field(default_factory=list)


@dataclass
class DrawResult:
    display: Image.Image | None            # the translation, enlarged for the page (None: nothing drawn)
    info: str
    output: Image.Image | None = None      # at its true size


def drawing_array(drawing: Any) -> Any:
    """The uint8 HxWx3 array of a sketchpad value (a dict with ``composite``, or an image array;
    transparency flattened on white), or None when nothing is drawn (empty or all white)."""
    import numpy as np

    if isinstance(drawing, dict):
        drawing = drawing.get("composite")
    if drawing is None:
        return None
    array = np.asarray(drawing)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or array.dtype != np.uint8 or 0 in array.shape:
        raise UserError("The drawing could not be read (expected an 8-bit image).")
    if array.shape[2] == 4:  # RGBA: transparent parts are white paper
        alpha = array[:, :, 3:4].astype(np.float32) / 255.0
        array = np.round(array[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return None if array.min() >= 250 else np.ascontiguousarray(array)


def shrink_strokes(image: Any, size: int) -> Any:
    """A drawing (uint8 HxWxC, dark strokes on white) made about ``size`` px by taking the darkest pixel
    of each block, so that thin strokes on a large canvas survive at a small model's size (a bicubic
    resize would average a 6 px line on a 256 px canvas into a faint gray one at 32 px)."""
    factor = min(image.shape[0], image.shape[1]) // size
    if factor < 2:
        return image
    h, w = image.shape[0] // factor * factor, image.shape[1] // factor * factor
    blocks = image[:h, :w].reshape(h // factor, factor, w // factor, factor, image.shape[2])
    return blocks.min(axis=(1, 3))


class _Cache:
    """Loaded models by (source, direction, file stamps), least recently used dropped first.
    Loading holds a lock, so two requests for the same model load it once."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, key: tuple, load: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            value = load()
            self.loads += 1
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
            return value


def _stamp(entry: ModelEntry) -> tuple:
    out = []
    for f in entry.files():
        try:
            st = f.stat()
            out.append((f.name, st.st_mtime_ns, st.st_size))
        except OSError:
            pass
    return tuple(out)


class AppBackend:
    """Everything the app does, callable without a browser (the tests drive it directly)."""

    def __init__(self, settings: AppSettings) -> None:
        self.settings = settings
        try:
            self.device = pick_device(settings.device)
        except ValueError as e:
            raise UserError(str(e)) from None
        if settings.threads:
            torch.set_num_threads(settings.threads)
        self._cache = _Cache(settings.cache_size)
        self._catalog_lock = threading.Lock()
        self._model_entry: ModelEntry | None = None
        if settings.model is not None:
            self._model_entry = self._entry_for_model(settings.model)
        self._out_root = Path(settings.output_dir) if settings.output_dir else \
            Path(tempfile.mkdtemp(prefix="cyclegan-app-"))
        self._owns_out_root = settings.output_dir is None
        self._catalog = self._scan()

    # -- the catalog ----------------------------------------------------------------------------
    def _entry_for_model(self, model: Path) -> ModelEntry:
        """``--model``: what :func:`resolve_location` accepts (a path, a run, published or bundled name)."""
        s = self.settings
        try:
            path = resolve_location(model, runs_dir=s.runs_dir, checkpoints_dir=s.checkpoints_dir)
        except CheckpointError as e:
            raise UserError(str(e)) from None
        problems: list[str] = []
        if path.is_dir():
            entries = [e for e in scan_models(path, path.as_posix(), problems) if e.source == path]
            if not entries:
                raise UserError(f"--model {path}: the folder holds no generators.safetensors, checkpoints/latest.pt "
                                "or latest_net_G*.pth")
            entry = entries[0]
        elif path.suffix == ".safetensors":
            try:
                info = export_kind(path)
            except Exception as e:
                raise UserError(f"--model {path}: cannot read it as safetensors ({e})") from None
            if info is None:
                raise UserError(f"--model {path} is a safetensors file but not a cyclegan export")
            entry = ModelEntry("model", path.name, path, info[0], info[1] or ("AtoB", "BtoA"), model_domains(info[2]))
        elif path.suffix == ".pth" and not path.stem.startswith("latest_net_G_"):
            published = published_name(path)
            entry = ModelEntry("model", published, path, "cyclegan", (None,),  # type: ignore[arg-type]
                               published=published if published_kind(published) else None)
        else:  # a .pt checkpoint (CycleGAN or noise GAN) or one file of an original-release run
            in_run = path.suffix == ".pt" and path.parent.name == "checkpoints"  # RUN/checkpoints/latest.pt
            kind = "latent" if in_run and run_kind(path.parent.parent) == "latent" else "cyclegan"
            entry = ModelEntry("model", path.name, path, kind)
        return ModelEntry("model", f"{entry.label} (--model)", entry.source, entry.kind, entry.directions,
                          entry.domains, entry.published)

    def _scan(self) -> Catalog:
        s = self.settings
        cat = Catalog()
        entries: list[ModelEntry] = []
        if self._model_entry is not None:
            entries.append(self._model_entry)
        if s.bundled and BUNDLED_CYCLEGAN.is_file():
            entries.append(ModelEntry("bundled", "Fashion-MNIST demo", BUNDLED_CYCLEGAN, "cyclegan",
                                      domains=BUNDLED_DOMAINS))
        if s.bundled and BUNDLED_PIX2PIX.is_file():
            entries.append(ModelEntry("bundled-edges", "Fashion-MNIST edges (bundled pix2pix)", BUNDLED_PIX2PIX,
                                      "cyclegan", ("AtoB",), BUNDLED_PIX2PIX_DOMAINS))
        if s.bundled and BUNDLED_GENERATOR.is_file():
            entries.append(ModelEntry("bundled-latent", "Fashion-MNIST DCGAN (bundled)", BUNDLED_GENERATOR, "latent"))
        seen = {e.source.resolve() for e in entries}
        for root, shown in ((s.runs_dir, "runs"), (s.checkpoints_dir, "checkpoints")):
            for e in scan_models(root, shown, cat.problems):
                if e.source.resolve() not in seen:
                    seen.add(e.source.resolve())
                    entries.append(e)
        for e in entries:
            if e.kind == "latent":
                cat.generate.append(e)
                continue
            paired = is_paired(e)
            for d in e.directions:
                cat.translate.append(Choice(f"{e.key}|{d}" if d else e.key, direction_label(e, d), e, d))
                if paired:
                    cat.draw.append(cat.translate[-1])
        published_there = {e.published for e in entries if e.published}
        for name in OFFERED_PUBLISHED:
            if name not in published_there:
                cat.missing.append((name, download_command(name, s.checkpoints_dir)))
        for p in cat.problems:
            log.warning("model scan: %s", p)
        return cat

    def catalog(self, refresh: bool = False) -> Catalog:
        with self._catalog_lock:
            if refresh:
                self._catalog = self._scan()
            return self._catalog

    def model_roots(self) -> list[Path]:
        """Folders the app reads models from (and gradio must never serve)."""
        roots = [self.settings.runs_dir, self.settings.checkpoints_dir]
        if self._model_entry is not None:
            roots.append(self._model_entry.source)
        return [r.resolve() for r in roots]

    def close(self) -> None:
        if self._owns_out_root:
            shutil.rmtree(self._out_root, ignore_errors=True)

    # -- loading ----------------------------------------------------------------------------------
    def generator(self, entry: ModelEntry, direction: str | None) -> LoadedGenerator:
        s = self.settings

        def load() -> LoadedGenerator:
            log.info("loading %s (%s)", entry.source, direction or "one-way")
            return load_generator(entry.source, direction, runs_dir=s.runs_dir, checkpoints_dir=s.checkpoints_dir)

        try:
            return self._cache.get(("G", str(entry.source), direction, _stamp(entry)), load)
        except (CheckpointError, ValueError, OSError, RuntimeError, KeyError) as e:
            log.warning("cannot load %s: %s", entry.source, e)
            raise UserError(f"Cannot load the model {entry.label!r}: {_first_line(e)}") from None

    def sampler(self, entry: ModelEntry) -> LatentSampler:
        def load() -> LatentSampler:
            log.info("loading %s", entry.source)
            return LatentSampler.load(entry.source, device=self.device)

        try:
            return self._cache.get(("Z", str(entry.source), _stamp(entry)), load)
        except (CheckpointError, ValueError, OSError, RuntimeError, KeyError) as e:
            log.warning("cannot load %s: %s", entry.source, e)
            raise UserError(f"Cannot load the generator {entry.label!r}: {_first_line(e)}") from None

    def preload(self) -> None:
        """Load the default models now, so the first request is fast and a broken ``--model``
        stops the start with its message."""
        cat = self.catalog()
        if cat.translate:
            first = cat.translate[0]
            self.generator(first.entry, first.direction)
        if cat.generate:
            self.sampler(cat.generate[0])
            to_pil(torch.zeros(1, 1, 4, 4), nrow=1)  # imports torchvision's grid code now, not on the first click

    def _reverse(self, choice: Choice) -> tuple[ModelEntry, str | None] | str:
        """The model that translates back, or a note saying why there is none."""
        if choice.direction is not None:
            back = "BtoA" if choice.direction == "AtoB" else "AtoB"
            if back not in choice.entry.directions:
                return (f"{choice.entry.label} translates {choice.direction} only (a CUT or pix2pix model learns "
                        "one direction), so there is no cycle reconstruction.")
            return choice.entry, back
        reverse = {**PUBLISHED_GENERATORS, **PUBLISHED_PIX2PIX}.get(choice.entry.published or "")
        if not reverse:
            return f"{choice.entry.label} has no published reverse model, so there is no cycle reconstruction."
        for c in self.catalog().translate:
            if c.entry.published == reverse:
                return c.entry, None
        return (f"The cycle reconstruction needs the reverse model {reverse}: run "
                f"`{download_command(reverse, self.settings.checkpoints_dir)}`, then Rescan models.")

    # -- the three actions ----------------------------------------------------------------------
    def output_folder(self) -> Path:
        """A fresh folder for one request's files (deleted after an hour)."""
        self._prune()
        folder = self._out_root / uuid.uuid4().hex[:12]
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _output_path(self, name: str) -> Path:
        return self.output_folder() / name

    def image_file(self, image: Image.Image, name: str) -> Path:
        """Save ``image`` as PNG under a fresh per-request folder of the output folder."""
        path = self._output_path(name)
        image.save(path, format="PNG")
        return path

    def _prune(self, max_age_s: float = 3600.0) -> None:
        """Drop downloads older than an hour (gradio keeps its own copy for the page)."""
        now = time.time()
        try:
            for d in self._out_root.iterdir():
                if d.is_dir() and now - d.stat().st_mtime > max_age_s:
                    shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass

    def translate(self, image_path: str | os.PathLike | None, choice_id: Any, *, full_res: bool = False,
                  cycle: bool = False) -> TranslateResult:
        """Translate the uploaded file at ``image_path`` with the catalog's choice ``choice_id``."""
        choice = self.catalog().find(choice_id)
        if image_path is None or str(image_path) == "":
            raise UserError(NO_IMAGE)
        gen = self.generator(choice.entry, choice.direction)
        image, notes = read_upload(image_path, gen.spec.input_nc, max_input_pixels=self.settings.max_input_pixels,
                                   max_pixels=self.settings.max_pixels if full_res else None)
        start = time.perf_counter()
        try:
            translator = Translator(gen, device=self.device, full_res=full_res)
            out = translator.translate(image)
        except (RuntimeError, ValueError) as e:  # out of memory, an image too small for the network
            log.warning("translation failed: %s", e)
            raise UserError(f"The model could not translate this image: {_first_line(e)}") from None
        note = colour_note(image_path, gen.spec.input_nc)
        if note:
            notes.append(note)
        recon = None
        if cycle:
            back = self._reverse(choice)
            if isinstance(back, str):
                notes.append(back)
            else:
                rev = self.generator(*back)
                recon = Translator(rev, device=self.device, full_res=True).translate(out)
        seconds = time.perf_counter() - start
        result = to_image(out)
        stem = slug(Path(str(image_path)).stem)
        direction = f"_{choice.direction}" if choice.direction else ""
        download = self._output_path(f"{stem}_{slug(choice.entry.short_name)}{direction}.png")
        result.save(download)
        h, w = image.shape[:2]
        if full_res and gen.size and max(h, w) >= 2 * gen.size:
            notes.append(f"The model was trained at {gen.size} px; at full resolution this {w}x{h} image shows it "
                         f"shapes {max(h, w) / gen.size:.1f}x larger than any it learned, which gives streaks and a "
                         "poor reconstruction. Training size translates it at the scale the model knows.")
        how = (f"full resolution ({w}x{h})" if full_res else
               f"training size ({translator.size}x{translator.size}; input {w}x{h} resized)")
        trained = f", trained at {gen.size} px" if gen.size else ""
        info = (f"**{choice.label}** ({gen.spec.describe()}{trained}): translated at {how} in "
                f"{seconds * 1000:.0f} ms. Result: {result.width}x{result.height}"
                f"{' (shown enlarged)' if enlarge(result).size != result.size else ''}.")
        seen = Translator.to_uint8(translator.prepare(image)) if not full_res else image  # what the model saw
        return TranslateResult(result, enlarge(result), enlarge(to_image(recon)) if recon is not None else None,
                               download, info, notes, enlarge(to_image(seen)))

    def draw(self, drawing: Any, choice_id: Any) -> DrawResult:
        """Translate a drawing (the Draw tab's sketchpad: its composite, flattened on white; or an
        uploaded image) with the paired model ``choice_id``, at the model's training size."""
        choice = next((c for c in self.catalog().draw if c.id == choice_id), None)
        if choice is None:
            raise UserError("Pick a pix2pix model for drawing (the one chosen is not available; press Rescan "
                            "models)." if choice_id else "No pix2pix model to draw with: the bundled one is "
                            "missing; train one with `cyclegan train --model pix2pix`, then press Rescan models.")
        image = drawing_array(drawing)
        if image is None:
            return DrawResult(None, "Draw with the mouse or a finger: the translation appears as you draw.")
        gen = self.generator(choice.entry, choice.direction)
        start = time.perf_counter()
        try:
            translator = Translator(gen, device=self.device)
            out = translator.translate(shrink_strokes(image, translator.size))
        except (RuntimeError, ValueError) as e:
            raise UserError(f"The model could not translate this drawing: {_first_line(e)}") from None
        ms = (time.perf_counter() - start) * 1000
        result = to_image(out)
        return DrawResult(enlarge(result), f"**{choice.label}**: {result.width}x{result.height} in {ms:.0f} ms.",
                          result)

    def _check_int(self, value: Any, name: str, lo: int, hi: int) -> int:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise UserError(f"{name} must be a whole number from {lo} to {hi}.") from None
        if not number.is_integer() or not lo <= number <= hi:
            raise UserError(f"{name} must be a whole number from {lo} to {hi}; got {value}.")
        return int(number)

    def generate(self, model_key: Any, seed: Any, count: Any) -> GenerateResult:
        """``count`` samples of the noise -> image generator from ``seed``, as one grid."""
        entry = self.catalog().find_latent(model_key)
        seed = self._check_int(seed, "Seed", 0, 2**31 - 1)
        count = self._check_int(count, "Count", 1, self.settings.max_count)
        sampler = self.sampler(entry)
        start = time.perf_counter()
        images = sampler.sample(count, seed)
        nrow = math.ceil(math.sqrt(count))
        grid = to_pil(images, nrow=nrow)
        download = self._output_path(f"samples_{slug(entry.short_name)}_seed{seed}_n{count}.png")
        grid.save(download)
        s = sampler.cfg.image_size
        info = (f"**{entry.label}**: {count} sample{'s' if count > 1 else ''} of {s}x{s} from seed {seed} "
                f"in {(time.perf_counter() - start) * 1000:.0f} ms (the same seed gives the same images).")
        return GenerateResult(enlarge(grid, 640), download, info)

    def interpolate(self, model_key: Any, seed_a: Any, seed_b: Any, steps: Any) -> GenerateResult:
        """A strip of ``steps`` images walking through latent space from seed A to seed B."""
        entry = self.catalog().find_latent(model_key)
        seed_a = self._check_int(seed_a, "Seed A", 0, 2**31 - 1)
        seed_b = self._check_int(seed_b, "Seed B", 0, 2**31 - 1)
        steps = self._check_int(steps, "Steps", 2, self.settings.max_steps)
        sampler = self.sampler(entry)
        start = time.perf_counter()
        images = sampler.interpolate(seed_a, seed_b, steps)
        strip = to_pil(images, nrow=steps)
        download = self._output_path(f"interpolation_{slug(entry.short_name)}_{seed_a}_to_{seed_b}.png")
        strip.save(download)
        mode = "spherical (slerp)" if sampler.cfg.noise == "normal" else "linear"
        info = (f"**{entry.label}**: {steps} steps from seed {seed_a} to seed {seed_b}, {mode} interpolation, "
                f"in {(time.perf_counter() - start) * 1000:.0f} ms.")
        return GenerateResult(enlarge(strip, 960), download, info)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def example_images() -> list[Path]:
    return sorted(EXAMPLES_DIR.glob("*.png")) if EXAMPLES_DIR.is_dir() else []


#: example file name prefix -> (its domain's name, the bundled demo's direction that translates it)
_EXAMPLE_DOMAINS = {"tshirt": (BUNDLED_DOMAINS[0], "AtoB"), "pullover": (BUNDLED_DOMAINS[1], "BtoA")}


def labelled_examples(catalog: Catalog) -> list[tuple[Path, str, str | None]]:
    """(image, label, choice id) of each example image: labelled by its domain ("T-shirt/top 1"),
    with the bundled demo's direction that translates it when the demo is offered (else None)."""
    ids = {c.id for c in catalog.translate}
    out = []
    for path in example_images():
        prefix, _, number = path.stem.rpartition("_")
        domain, direction = _EXAMPLE_DOMAINS.get(prefix, (path.stem, None))
        choice = f"bundled|{direction}" if f"bundled|{direction}" in ids else None
        out.append((path, f"{domain} {number}" if prefix in _EXAMPLE_DOMAINS else domain, choice))
    return out


def example_choice(catalog: Catalog, current: Any, suggested: str | None) -> tuple[str | None, str]:
    """The model to keep selected when an example is clicked, and a note for the page. A model of
    the user's own stays selected (every model takes any image); on the bundled demo the
    direction that translates the example's domain is picked, and the note says so."""
    ids = {c.id: c for c in catalog.translate}
    if suggested not in ids:
        return (current if current in ids else catalog.default_translate), ""
    mine = ids.get(current)
    if mine is not None and mine.entry.key != ids[suggested].entry.key:
        return current, ""
    if current == suggested:
        return current, ""
    return suggested, (f"The model is now **{ids[suggested].label}**: the direction that translates this example. "
                       "Pick another model above to translate it with that one.")
