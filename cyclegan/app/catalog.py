"""The app's catalogue of models: what runs/, checkpoints/ and the bundled files hold, listed
as choices for the model dropdown."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cyclegan.core.checkpoint import EXPORT_FORMAT
from cyclegan.core.readers import MAX_JSON_BYTES, BadFileError, parse_json
from cyclegan.models.cut import config_directions
from cyclegan.inference.mnist_sampler import EXPORT_KIND
from cyclegan.inference.sources import BUNDLED_MODELS, published_kind, published_name
from cyclegan.app.settings import UserError

__all__ = ["BUNDLED_CYCLEGAN", "BUNDLED_PIX2PIX", "Catalog", "Choice", "is_paired"]

#: the default CycleGAN: Fashion-MNIST T-shirt/top (A) <-> Pullover (B), 32 px, grayscale
BUNDLED_CYCLEGAN = BUNDLED_MODELS["demo"]
BUNDLED_DOMAINS = ("T-shirt/top", "Pullover")
#: the default of the Draw tab: a pix2pix model from Fashion-MNIST edge maps to items, 32 px, grayscale
BUNDLED_PIX2PIX = BUNDLED_MODELS["pix2pix_fmnist_edges"]
BUNDLED_PIX2PIX_DOMAINS = ("edges", "item")
#: published generators the Translate tab offers, or the command that downloads them
OFFERED_PUBLISHED = ("horse2zebra", "zebra2horse", "style_monet", "monet2photo")
_SCAN_DEPTH = 4          # folders below runs/ or checkpoints/ that are searched for models
_SCAN_LIMIT = 200        # models listed per folder at most (a huge folder must not stall startup)
_SKIP_DIRS = {"tb", "previews", "samples", "eval", "__pycache__"}
ARROW = "\u2192"


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
    #: the paired (pix2pix) models among ``translate``: the Draw tab's list
    draw: list[Choice] = field(default_factory=list)
    generate: list[ModelEntry] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)   # (published name, command that gets it)
    problems: list[str] = field(default_factory=list)              # files that could not be classified

    def translate_choices(self) -> list[tuple[str, str]]:
        return [(c.label, c.id) for c in self.translate]

    def generate_choices(self) -> list[tuple[str, str]]:
        return [(e.label, e.key) for e in self.generate]

    def draw_choices(self) -> list[tuple[str, str]]:
        return [(c.label, c.id) for c in self.draw]

    @property
    def default_draw(self) -> str | None:
        return self.draw[0].id if self.draw else None

    @property
    def default_translate(self) -> str | None:
        return self.translate[0].id if self.translate else None

    @property
    def default_generate(self) -> str | None:
        return self.generate[0].key if self.generate else None

    def missing_markdown(self) -> str:
        """What is not there yet and the one command that gets each."""
        lines = []
        if not self.translate:  # with models there, the page's download buttons say the rest
            lines.append("**No translation model found.** Train one (`cyclegan train ...`), put an export "
                         "under `checkpoints/`, or download a published one: click its name under **Published "
                         "models**, or run the command, then **Rescan models**:")
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


def export_kind(path: Path) -> tuple[str, tuple[str, ...], dict] | None:
    """(kind, directions, metadata) of one of our safetensors exports, read from its header only;
    None for a safetensors file of another kind."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        names = {k.partition(".")[0] for k in f.keys()}
    if meta.get("format") != EXPORT_FORMAT:
        return None
    extra = {}
    for k, v in meta.items():
        try:
            extra[k] = parse_json(v, k)
        except BadFileError:  # bounded: a crafted entry nested past the recursion limit is only text
            extra[k] = v
    if extra.get("kind") == EXPORT_KIND:
        return "latent", (), extra
    directions = tuple(d for d, key in (("AtoB", "G_A"), ("BtoA", "G_B")) if key in names)
    return ("cyclegan", directions, extra) if directions else None


def run_kind(folder: Path) -> tuple[str, tuple[str, ...]]:
    """A run folder with a checkpoint but no export: its config.yaml says which GAN it is, and
    which directions it translates (a CUT run one)."""
    import yaml

    # A config.yaml that cannot be read, is not UTF-8, nests past the recursion limit or is not
    # what training writes says nothing: the run is listed, and loading its checkpoint decides.
    try:
        with open(folder / "config.yaml", "rb") as f:
            data = f.read(MAX_JSON_BYTES + 1)  # bounded: training writes a few KB
        if len(data) > MAX_JSON_BYTES:
            raise ValueError("too large")
        config = yaml.safe_load(data.decode("utf-8"))
    except (OSError, ValueError, yaml.YAMLError, RecursionError):
        return "cyclegan", ("AtoB", "BtoA")
    model = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model, dict):
        return "cyclegan", ("AtoB", "BtoA")
    if "z_dim" in model:
        return "latent", ()
    try:
        directions = config_directions(model)
    except (TypeError, ValueError, AttributeError):
        return "cyclegan", ("AtoB", "BtoA")
    return "cyclegan", tuple(d for d in directions if d in ("AtoB", "BtoA")) or ("AtoB", "BtoA")


def is_paired(entry: ModelEntry) -> bool:
    """Whether ``entry`` is a paired (pix2pix) model: a published pix2pix generator, an export whose
    config says so, or a run whose config.yaml does. Reads headers only."""
    import yaml

    if entry.published:
        return published_kind(entry.published) == "pix2pix"
    src = entry.source
    export = src / "generators.safetensors" if src.is_dir() else src
    try:
        if export.suffix == ".safetensors" and export.is_file():
            info = export_kind(export)
            config = info[2].get("config") if info else None
            return isinstance(config, dict) and config.get("model") == "pix2pix"
        folder = src if src.is_dir() else src.parent.parent if src.parent.name == "checkpoints" else None
        if folder is not None and (folder / "config.yaml").is_file():
            config = yaml.safe_load((folder / "config.yaml").read_bytes().decode("utf-8"))
            return isinstance(config, dict) and isinstance(config.get("model"), dict) and \
                config["model"].get("model") == "pix2pix"
    except Exception:  # unreadable: not offered for drawing; the Translate tab says what is wrong
        return False
    return False


def model_domains(meta: dict, fallback: tuple[str, str] = ("A", "B")) -> tuple[str, str]:
    a, b = meta.get("domain_a"), meta.get("domain_b")
    return (str(a), str(b)) if a and b else fallback


def scan_models(root: Path, shown: str, problems: list[str]) -> Iterator[ModelEntry]:
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
                info = export_kind(export) if export.is_file() else None
                kind, directions = (info[0], info[1] or ("AtoB", "BtoA")) if info else run_kind(folder)
                meta = info[2] if info else {}
                found.append(ModelEntry(key, f"{shown}/{name}" if depth else shown, folder, kind, directions,
                                        model_domains(meta)))
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
                    info = export_kind(path)
                    if info is None:
                        continue
                    kind, directions, meta = info
                    found.append(ModelEntry(fkey, f"{shown}/{(rel / f).as_posix()}", path, kind,
                                            directions or ("AtoB", "BtoA"), model_domains(meta)))
                elif f.endswith(".pth") and "net_D" not in f:  # an original run's discriminators: not generators
                    published = published_name(path)
                    known = published_kind(published) is not None
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


def download_command(name: str, checkpoints_dir: Path) -> str:
    root = "" if Path(checkpoints_dir) == Path("checkpoints") else f" --root {checkpoints_dir}"
    return f"cyclegan download weights {name}{root}"


def direction_label(entry: ModelEntry, direction: str | None) -> str:
    if direction is None:
        return entry.label
    a, b = entry.domains
    src, dst = (a, b) if direction == "AtoB" else (b, a)
    return f"{entry.label}: {src} {ARROW} {dst}"
