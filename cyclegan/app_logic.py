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

import argparse
import logging
import math
import os
import shutil
import tempfile
import threading
import time
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .argtypes import positive_int as _positive
from .checkpoint import EXPORT_FORMAT, CheckpointError
from .images import DataError, UnreadableImageError, load_image
from .mnist_infer import BUNDLED_GENERATOR, EXPORT_KIND, LatentSampler, to_pil
from .translate import PUBLISHED_GENERATORS, LoadedGenerator, Translator, load_generator, resolve_device

__all__ = [
    "BUNDLED_CYCLEGAN",
    "EXAMPLES_DIR",
    "AppBackend",
    "AppSettings",
    "Catalog",
    "Choice",
    "GenerateResult",
    "TranslateResult",
    "UserError",
    "add_app_arguments",
    "add_app_command",
    "read_upload",
    "settings_from_args",
]

log = logging.getLogger("cyclegan.app")

ASSETS = Path(__file__).resolve().parent / "assets"
#: the default CycleGAN: Fashion-MNIST T-shirt/top (A) <-> Pullover (B), 32 px, grayscale
BUNDLED_CYCLEGAN = ASSETS / "fmnist_tshirt2pullover.safetensors"
BUNDLED_DOMAINS = ("T-shirt/top", "Pullover")
#: example inputs shown under the Translate tab (Fashion-MNIST test images, enlarged to 112 px)
EXAMPLES_DIR = ASSETS / "examples"
#: published generators the Translate tab offers, or the command that downloads them
OFFERED_PUBLISHED = ("horse2zebra", "zebra2horse", "style_monet", "monet2photo")

DEFAULT_PORT = 7860
_SCAN_DEPTH = 4          # folders below runs/ or checkpoints/ that are searched for models
_SCAN_LIMIT = 200        # models listed per folder at most (a huge folder must not stall startup)
_SKIP_DIRS = {"tb", "previews", "samples", "eval", "__pycache__"}
ARROW = "\u2192"


class UserError(Exception):
    """A problem with the user's input or a model file; the message is shown in the UI as is."""


# --------------------------------------------------------------------------------------------
# Settings and flags (shared by `python app.py` and `cyclegan app`)
# --------------------------------------------------------------------------------------------


@dataclass
class AppSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    share: bool = False
    model: Path | None = None                 # --model: started on, and the default
    runs_dir: Path = Path("runs")
    checkpoints_dir: Path = Path("checkpoints")
    device: str = "auto"
    max_pixels: int = 1024 * 1024             # full-resolution translation: larger inputs are downscaled
    max_input_pixels: int = 40_000_000        # uploads larger than this are refused before decoding
    max_file_size: str = "20mb"               # gradio refuses larger uploads
    concurrency: int = 1                      # model calls running at once; the rest wait in the queue
    queue_size: int = 32                      # waiting requests; more are turned away
    cache_size: int = 4                       # loaded models kept in memory
    max_count: int = 64                       # images per Generate request
    max_steps: int = 16                       # images in an interpolation strip
    output_dir: Path | None = None            # where downloads are written [a temporary folder]
    bundled: bool = True                      # offer the bundled models (tests turn this off)
    threads: int | None = None                # torch intra-op threads [torch's default]


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"must be a port number 1..65535, got {text}")
    return value


def _env_port() -> int:
    text = os.environ.get("GRADIO_SERVER_PORT", "")
    try:
        return _port(text) if text else DEFAULT_PORT
    except (ValueError, argparse.ArgumentTypeError):
        log.warning("ignoring GRADIO_SERVER_PORT=%r (not a port number)", text)
        return DEFAULT_PORT


def add_app_arguments(p: argparse.ArgumentParser) -> None:
    """The app's flags: one list for ``python app.py`` and ``cyclegan app``."""
    d = AppSettings()
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", d.host),
                   help="address to bind; 0.0.0.0 serves the whole network [$GRADIO_SERVER_NAME or 127.0.0.1]")
    p.add_argument("--port", type=_port, default=None,
                   help=f"port to serve on [$GRADIO_SERVER_PORT or {DEFAULT_PORT}]")
    p.add_argument("--share", action="store_true",
                   help="also open a public *.gradio.live link through gradio's share servers (needs internet)")
    p.add_argument("--model", "-m", type=Path,
                   help="start on this model, loaded at startup: a run folder, checkpoint .pt, "
                        "generators.safetensors or .pth (or a name found in --runs-dir/--checkpoints-dir)")
    p.add_argument("--runs-dir", type=Path, default=d.runs_dir, help="training runs to offer [runs]")
    p.add_argument("--checkpoints-dir", type=Path, default=d.checkpoints_dir,
                   help="exports and downloaded published weights to offer [checkpoints]")
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:N or mps [auto]")
    p.add_argument("--max-pixels", type=_positive, default=d.max_pixels,
                   help=f"full-resolution translation downscales larger images to this many pixels [{d.max_pixels:,}]")
    p.add_argument("--max-input-pixels", type=_positive, default=d.max_input_pixels,
                   help=f"uploads with more pixels are refused [{d.max_input_pixels:,}]")
    p.add_argument("--max-file-size", default=d.max_file_size,
                   help=f"largest upload, e.g. 20mb or 1gb [{d.max_file_size}]")
    p.add_argument("--concurrency", type=_positive, default=d.concurrency,
                   help=f"model calls that run at once; others wait in the queue [{d.concurrency}]")
    p.add_argument("--queue-size", type=_positive, default=d.queue_size,
                   help=f"requests that may wait; more are turned away with a message [{d.queue_size}]")
    p.add_argument("--cache-size", type=_positive, default=d.cache_size, help=f"models kept loaded [{d.cache_size}]")
    p.add_argument("--threads", type=_positive, help="CPU threads per model call [torch's default: all cores]")
    p.add_argument("--no-bundled", action="store_true", help="do not offer the bundled demo models")


def settings_from_args(args: argparse.Namespace) -> AppSettings:
    return AppSettings(host=args.host, port=args.port or _env_port(), share=args.share, model=args.model,
                       runs_dir=args.runs_dir, checkpoints_dir=args.checkpoints_dir, device=args.device,
                       max_pixels=args.max_pixels, max_input_pixels=args.max_input_pixels,
                       max_file_size=args.max_file_size, concurrency=args.concurrency,
                       queue_size=args.queue_size, cache_size=args.cache_size, bundled=not args.no_bundled,
                       threads=args.threads)


def app_script() -> Path:
    """The app's entry point, ``app.py`` at the top of the checkout."""
    return Path(__file__).resolve().parents[1] / "app.py"


def _argv_of(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    """The flags of ``args`` that differ from ``parser``'s defaults, as a command line again."""
    argv: list[str] = []
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "func"):
            continue
        value = getattr(args, action.dest, action.default)
        if value == action.default or value is None:
            continue
        if isinstance(action, argparse._StoreTrueAction):
            argv.append(action.option_strings[0])
        else:
            argv += [action.option_strings[0], str(value)]
    return argv


def _cmd_app(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run app.py in a fresh interpreter, so that the serving process holds no training code
    (the ``cyclegan`` command imports the training loop to build its parser)."""
    import subprocess
    import sys

    script = app_script()
    if not script.is_file():
        raise DataError(f"{script} not found: `cyclegan app` runs the app.py of a source checkout "
                        "(pip install -e .); run `python app.py` there")
    argv = [sys.executable, str(script), *_argv_of(args, parser)]
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execv(sys.executable, argv)
    return subprocess.call(argv)  # pragma: no cover  (Windows: exec would detach from the console)


def add_app_command(sub: argparse._SubParsersAction) -> None:
    """Register ``cyclegan app`` (the same flags as ``python app.py``)."""
    p = sub.add_parser("app", help="start the web app (translate images, generate samples)",
                       description="Start the Gradio web app on http://127.0.0.1:7860 (see --host, --port). "
                                   "It works offline on the bundled demo models and offers every run and "
                                   "export under --runs-dir and --checkpoints-dir.")
    add_app_arguments(p)
    p.set_defaults(func=lambda args: _cmd_app(args, p))


# --------------------------------------------------------------------------------------------
# The catalog: every model the app can use
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelEntry:
    """One model on disk. ``source`` is what :func:`load_generator` / :meth:`LatentSampler.load`
    get; ``directions`` are those it can translate (a published .pth translates one way only)."""

    key: str
    label: str
    source: Path
    kind: str                            # "cyclegan" (image -> image) or "latent" (noise -> image)
    directions: tuple[str, ...] = ("AtoB", "BtoA")
    domains: tuple[str, str] = ("A", "B")
    published: str | None = None         # the published model's name, for one-way generators

    @property
    def short_name(self) -> str:
        """A name for file names: the run, export or published model's name."""
        if self.published:
            return self.published
        src = self.source
        if src.name == "latest.pt" and src.parent.name == "checkpoints":
            return src.parent.parent.name
        if src.name in ("generators.safetensors", "latest_net_G.pth"):
            return src.parent.name
        return src.name if src.is_dir() else src.stem

    def files(self) -> list[Path]:
        """The files whose change means the model must be loaded again."""
        if self.source.is_dir():
            return [self.source / "generators.safetensors", self.source / "checkpoints" / "latest.pt",
                    self.source / "latest_net_G_A.pth", self.source / "latest_net_G_B.pth"]
        return [self.source]


@dataclass(frozen=True)
class Choice:
    """One item of the Translate tab's model list: a model and a direction."""

    id: str
    label: str
    entry: ModelEntry
    direction: str | None                # AtoB / BtoA; None for a one-way published generator


@dataclass
class Catalog:
    translate: list[Choice] = field(default_factory=list)
    generate: list[ModelEntry] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)   # (published name, command that gets it)
    problems: list[str] = field(default_factory=list)              # files that could not be classified

    def translate_choices(self) -> list[tuple[str, str]]:
        return [(c.label, c.id) for c in self.translate]

    def generate_choices(self) -> list[tuple[str, str]]:
        return [(e.label, e.key) for e in self.generate]

    @property
    def default_translate(self) -> str | None:
        return self.translate[0].id if self.translate else None

    @property
    def default_generate(self) -> str | None:
        return self.generate[0].key if self.generate else None

    def missing_markdown(self) -> str:
        """What is not there yet and the one command that gets each."""
        lines = []
        if not self.translate:
            lines.append("**No translation model found.** Train one (`cyclegan train ...`), put an export "
                         "under `checkpoints/`, or download a published one:")
        if self.missing:
            if self.translate:
                lines.append("Published models not downloaded yet (run the command, then **Rescan models**):")
            lines += [f"- {name}: `{command}`" for name, command in self.missing]
        if self.problems:
            lines.append("")
            lines.append("Skipped (cannot be read as a model): " + "; ".join(self.problems))
        return "\n".join(lines)

    def generate_markdown(self) -> str:
        if self.generate:
            return ""
        return ("**No noise \u2192 image generator found.** The bundled Fashion-MNIST generator is missing; train "
                "one with `cyclegan mnist train --out runs/NAME`, then press Rescan models.")

    def find(self, choice_id: Any) -> Choice:
        for c in self.translate:
            if c.id == choice_id:
                return c
        raise UserError("Pick a model from the list (the one chosen is not available any more; "
                        "press Rescan models)." if choice_id else "Pick a model from the list first.")

    def find_latent(self, key: Any) -> ModelEntry:
        for e in self.generate:
            if e.key == key:
                return e
        if not self.generate:
            raise UserError("No noise -> image generator is available: the bundled one is missing and no "
                            "`cyclegan mnist train` run was found; train one, then press Rescan models.")
        raise UserError("Pick a generator from the list (the one chosen is not available any more).")


def is_inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except (ValueError, OSError):
        return False


def _export_kind(path: Path) -> tuple[str, tuple[str, ...], dict] | None:
    """(kind, directions, metadata) of one of our safetensors exports, read from its header only;
    None for a safetensors file of another kind."""
    import json

    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        names = {k.partition(".")[0] for k in f.keys()}
    if meta.get("format") != EXPORT_FORMAT:
        return None
    extra = {}
    for k, v in meta.items():
        try:
            extra[k] = json.loads(v)
        except ValueError:
            extra[k] = v
    if extra.get("kind") == EXPORT_KIND:
        return "latent", (), extra
    directions = tuple(d for d, key in (("AtoB", "G_A"), ("BtoA", "G_B")) if key in names)
    return ("cyclegan", directions, extra) if directions else None


def _run_kind(folder: Path) -> str:
    """A run folder with a checkpoint but no export: its config.yaml says which GAN it is."""
    import yaml

    try:
        config = yaml.safe_load((folder / "config.yaml").read_text()) or {}
        return "latent" if "z_dim" in (config.get("model") or {}) else "cyclegan"
    except (OSError, yaml.YAMLError, AttributeError):
        return "cyclegan"  # if it is not, loading says so


def _domains(meta: dict, fallback: tuple[str, str] = ("A", "B")) -> tuple[str, str]:
    a, b = meta.get("domain_a"), meta.get("domain_b")
    return (str(a), str(b)) if a and b else fallback


def _scan(root: Path, shown: str, problems: list[str]) -> Iterator[ModelEntry]:
    """Models under ``root`` (``shown`` is how the folder is named in labels): run folders, our
    exports, original-release runs and .pth generators. Symlinks leading out of ``root`` are
    not followed: the app reads nothing outside its model folders."""
    if not root.is_dir():
        return
    count = 0
    base = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        folder = Path(dirpath)
        rel = folder.relative_to(root)
        depth = len(rel.parts)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _SKIP_DIRS) \
            if depth < _SCAN_DEPTH else []
        files = sorted(f for f in filenames if not f.startswith(".") and is_inside(folder / f, base))
        name = rel.as_posix() if depth else root.name
        key = f"{shown}/{rel.as_posix()}" if depth else shown
        found: list[ModelEntry] = []
        try:
            if "generators.safetensors" in files or (folder / "checkpoints" / "latest.pt").is_file():
                export = folder / "generators.safetensors"
                info = _export_kind(export) if export.is_file() else None
                kind = info[0] if info else _run_kind(folder)
                meta = info[2] if info else {}
                directions = info[1] if info and info[1] else ("AtoB", "BtoA")
                found.append(ModelEntry(key, f"{shown}/{name}" if depth else shown, folder, kind, directions,
                                        _domains(meta)))
                dirnames[:] = []  # a run's checkpoints/ holds its history, not more models
                files = [f for f in files if f != "generators.safetensors"]
            elif "latest_net_G_A.pth" in files and "latest_net_G_B.pth" in files:
                found.append(ModelEntry(key, f"{shown}/{name} (original release run)", folder, "cyclegan"))
                files = [f for f in files if not f.startswith("latest_net_G_")]
        except Exception as e:  # an unreadable export: list the problem, keep scanning
            problems.append(f"{shown}/{rel.as_posix()}: {e}")
        for f in files:
            path = folder / f
            fkey = f"{shown}/{(rel / f).as_posix()}"
            try:
                if f.endswith(".safetensors"):
                    info = _export_kind(path)
                    if info is None:
                        continue
                    kind, directions, meta = info
                    found.append(ModelEntry(fkey, f"{shown}/{(rel / f).as_posix()}", path, kind,
                                            directions or ("AtoB", "BtoA"), _domains(meta)))
                elif f.endswith(".pth") and "net_D" not in f:  # an original run's discriminators: not generators
                    published = _published_name(path)
                    known = published in PUBLISHED_GENERATORS
                    label = f"{published} (published)" if known else f"{shown}/{(rel / f).as_posix()}"
                    found.append(ModelEntry(fkey, label, path, "cyclegan", (None,),  # type: ignore[arg-type]
                                            published=published if known else None))
            except Exception as e:
                problems.append(f"{fkey}: {e}")
        for entry in found:
            yield entry
            count += 1
            if count >= _SCAN_LIMIT:
                problems.append(f"{shown}: more than {_SCAN_LIMIT} models; only the first are listed")
                return


def _published_name(path: Path) -> str:
    """``NAME_pretrained/latest_net_G.pth`` (where ``cyclegan download weights`` puts it) -> NAME;
    any other ``X.pth`` -> X."""
    if path.name == "latest_net_G.pth" and path.parent.name.endswith("_pretrained"):
        return path.parent.name[: -len("_pretrained")]
    return path.stem


def _download_command(name: str, checkpoints_dir: Path) -> str:
    root = "" if Path(checkpoints_dir) == Path("checkpoints") else f" --root {checkpoints_dir}"
    return f"cyclegan download weights {name}{root}"


def _direction_label(entry: ModelEntry, direction: str | None) -> str:
    if direction is None:
        return entry.label
    a, b = entry.domains
    src, dst = (a, b) if direction == "AtoB" else (b, a)
    return f"{entry.label}: {src} {ARROW} {dst}"


# --------------------------------------------------------------------------------------------
# Images in and out
# --------------------------------------------------------------------------------------------


NO_IMAGE = "No image yet: upload one, paste one, take one with the webcam, or click an example."


def _megapixels(n: int) -> str:
    return f"{n / 1e6:.1f} MP"


def read_upload(path: str | os.PathLike | None, channels: int, *, max_input_pixels: int,
                max_pixels: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Decode an uploaded file to uint8 HxWxC (C = ``channels``), EXIF-oriented, any mode (grayscale,
    RGBA onto white, CMYK, 16-bit, palette). Refuses non-images and images over
    ``max_input_pixels`` before decoding them; images over ``max_pixels`` are downscaled (aspect
    kept), with a note saying so. Returns (image, notes)."""
    if path is None or str(path) == "":
        raise UserError(NO_IMAGE)
    path = Path(path)
    if not path.is_file():
        raise UserError("The uploaded file is gone (uploads expire after a while); please upload it again.")
    name = path.name
    if path.stat().st_size == 0:
        raise UserError(f"{name} is empty (0 bytes); please upload an image file.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:  # reads the header only
                width, height = img.size
    except Image.DecompressionBombError:
        raise UserError(f"{name} is far too large to decode safely; downscale it below "
                        f"{_megapixels(max_input_pixels)} and try again.") from None
    except Exception:
        raise UserError(f"{name} is not an image this app can read; upload a PNG, JPEG, WebP, BMP, TIFF or GIF "
                        "file.") from None
    if width * height > max_input_pixels:
        raise UserError(f"{name} is {width}x{height} ({_megapixels(width * height)}); this app accepts images up "
                        f"to {_megapixels(max_input_pixels)}. Please downscale it and try again.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = load_image(path, channels)
    except UnreadableImageError as e:
        raise UserError(f"{name} could not be decoded ({e.reason}); is the file complete?") from None
    notes: list[str] = []
    h, w = image.shape[:2]
    if max_pixels and h * w > max_pixels:
        scale = math.sqrt(max_pixels / (h * w))
        nw, nh = max(1, int(w * scale)), max(1, int(h * scale))
        pil = Image.fromarray(image[:, :, 0] if channels == 1 else image)
        image = np.asarray(pil.resize((nw, nh), Image.Resampling.LANCZOS))
        image = image[:, :, None] if image.ndim == 2 else image
        notes.append(f"The image ({w}x{h}) was downscaled to {nw}x{nh} for full-resolution translation "
                     f"(limit {_megapixels(max_pixels)}, set with --max-pixels).")
    return image, notes


def to_image(array: np.ndarray) -> Image.Image:
    """uint8 HxWx1 or HxWx3 -> a PIL image (mode L or RGB)."""
    return Image.fromarray(array[:, :, 0], "L") if array.shape[2] == 1 else Image.fromarray(array, "RGB")


def enlarge(image: Image.Image, target: int = 512) -> Image.Image:
    """Small images blown up by a whole factor (nearest neighbour) so that the longest side is
    close to ``target``: a 32 px result is shown as crisp 512 px pixels, not a blurry thumbnail."""
    factor = target // max(image.size)
    if factor < 2:
        return image
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def _slug(text: str) -> str:
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


@dataclass
class GenerateResult:
    image: Image.Image                     # the grid or strip, enlarged for the page
    download: Path
    info: str
    notes: list[str] = field(default_factory=list)


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
            self.device = resolve_device(settings.device)
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
        """``--model``: a path, or a name found as runs/NAME or checkpoints/NAME_pretrained."""
        s = self.settings
        path = Path(model).expanduser()
        if not path.exists():
            for candidate in (s.runs_dir / str(model), s.checkpoints_dir / f"{model}_pretrained" / "latest_net_G.pth"):
                if candidate.exists():
                    path = candidate
                    break
            else:
                hint = f"; `cyclegan download weights {model}` fetches it" if str(model) in PUBLISHED_GENERATORS else ""
                raise UserError(f"--model {model}: no such file or folder{hint}")
        problems: list[str] = []
        if path.is_dir():
            entries = [e for e in _scan(path, path.as_posix(), problems) if e.source == path]
            if not entries:
                raise UserError(f"--model {path}: the folder holds no generators.safetensors, checkpoints/latest.pt "
                                "or latest_net_G*.pth")
            entry = entries[0]
        elif path.suffix == ".safetensors":
            try:
                info = _export_kind(path)
            except Exception as e:
                raise UserError(f"--model {path}: cannot read it as safetensors ({e})") from None
            if info is None:
                raise UserError(f"--model {path} is a safetensors file but not a cyclegan export")
            entry = ModelEntry("model", path.name, path, info[0], info[1] or ("AtoB", "BtoA"), _domains(info[2]))
        elif path.suffix == ".pth" and not path.stem.startswith("latest_net_G_"):
            published = _published_name(path)
            entry = ModelEntry("model", published, path, "cyclegan", (None,),  # type: ignore[arg-type]
                               published=published if published in PUBLISHED_GENERATORS else None)
        else:  # a .pt checkpoint (CycleGAN or noise GAN) or one file of an original-release run
            in_run = path.suffix == ".pt" and path.parent.name == "checkpoints"  # RUN/checkpoints/latest.pt
            kind = "latent" if in_run and _run_kind(path.parent.parent) == "latent" else "cyclegan"
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
        if s.bundled and BUNDLED_GENERATOR.is_file():
            entries.append(ModelEntry("bundled-latent", "Fashion-MNIST DCGAN (bundled)", BUNDLED_GENERATOR, "latent"))
        seen = {e.source.resolve() for e in entries}
        for root, shown in ((s.runs_dir, "runs"), (s.checkpoints_dir, "checkpoints")):
            for e in _scan(root, shown, cat.problems):
                if e.source.resolve() not in seen:
                    seen.add(e.source.resolve())
                    entries.append(e)
        for e in entries:
            if e.kind == "latent":
                cat.generate.append(e)
                continue
            for d in e.directions:
                cat.translate.append(Choice(f"{e.key}|{d}" if d else e.key, _direction_label(e, d), e, d))
        published_there = {e.published for e in entries if e.published}
        for name in OFFERED_PUBLISHED:
            if name not in published_there:
                cat.missing.append((name, _download_command(name, s.checkpoints_dir)))
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
            return choice.entry, "BtoA" if choice.direction == "AtoB" else "AtoB"
        reverse = PUBLISHED_GENERATORS.get(choice.entry.published or "")
        if not reverse:
            return f"{choice.entry.label} has no published reverse model, so there is no cycle reconstruction."
        for c in self.catalog().translate:
            if c.entry.published == reverse:
                return c.entry, None
        return (f"The cycle reconstruction needs the reverse model {reverse}: run "
                f"`{_download_command(reverse, self.settings.checkpoints_dir)}`, then Rescan models.")

    # -- the three actions ----------------------------------------------------------------------
    def _output_path(self, name: str) -> Path:
        self._prune()
        folder = self._out_root / uuid.uuid4().hex[:12]
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

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
        stem = _slug(Path(str(image_path)).stem)
        direction = f"_{choice.direction}" if choice.direction else ""
        download = self._output_path(f"{stem}_{_slug(choice.entry.short_name)}{direction}.png")
        result.save(download)
        h, w = image.shape[:2]
        how = (f"full resolution ({w}x{h})" if full_res else
               f"training size ({translator.size}x{translator.size}; input {w}x{h} resized)")
        trained = f", trained at {gen.size} px" if gen.size else ""
        info = (f"**{choice.label}** ({gen.spec.describe()}{trained}): translated at {how} in "
                f"{seconds * 1000:.0f} ms. Result: {result.width}x{result.height}"
                f"{' (shown enlarged)' if enlarge(result).size != result.size else ''}.")
        return TranslateResult(result, enlarge(result), enlarge(to_image(recon)) if recon is not None else None,
                               download, info, notes)

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
        download = self._output_path(f"samples_{_slug(entry.short_name)}_seed{seed}_n{count}.png")
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
        download = self._output_path(f"interpolation_{_slug(entry.short_name)}_{seed_a}_to_{seed_b}.png")
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


def parse_args(argv: Sequence[str] | None = None) -> AppSettings:
    p = argparse.ArgumentParser(prog="app.py", description="The cyclegan web app (Gradio).")
    add_app_arguments(p)
    return settings_from_args(p.parse_args(argv))
