"""Checkpoints: atomic writes, safe loading, and generator-only exports.

Every file is written to a temporary name in the same folder, flushed and fsynced, then renamed
over the target, so a crash or a full disk during a save leaves the previous file intact.
Loading never unpickles arbitrary objects: ``torch.load(weights_only=True)`` or safetensors.
"""

from __future__ import annotations

import errno
import json
import math
import os
import pickle
import re
import secrets
import subprocess
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from cyclegan import __version__
from cyclegan.core.readers import BadFileError, parse_json
from cyclegan.core.sniff import foreign_kind

CHECKPOINT_FORMAT = "cyclegan-checkpoint"
EXPORT_FORMAT = "cyclegan-generators"
_NUMBERED = re.compile(r"^iter_(\d+)\.pt$")


class CheckpointError(Exception):
    """A checkpoint or export that cannot be read or written; the message names the file."""


class NonFiniteError(CheckpointError):
    """Weights holding NaN or infinite values: never written to a checkpoint or export, never
    used for inference. ``names`` lists the offending tensors."""

    def __init__(self, message: str, names: list[str]) -> None:
        super().__init__(message)
        self.names = names


def nonfinite_tensors(obj: Any, prefix: str = "") -> list[str]:
    """Dotted names of the floating-point tensors (and Python floats) in ``obj`` (nested dicts,
    lists, tuples) that hold a NaN or an infinity."""
    if isinstance(obj, torch.Tensor):
        bad = (obj.is_floating_point() or obj.is_complex()) and not bool(torch.isfinite(obj).all())
        return [prefix or "tensor"] if bad else []
    if isinstance(obj, float):
        return [] if math.isfinite(obj) else [prefix or "value"]
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    else:
        return []
    return [n for k, v in items for n in nonfinite_tensors(v, f"{prefix}.{k}" if prefix else str(k))]


def check_finite(obj: Any, what: str) -> None:
    """Raise :class:`NonFiniteError` if ``obj`` holds a NaN or infinite value; ``what`` names the
    file (or weights) for the message."""
    bad = nonfinite_tensors(obj)
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise NonFiniteError(f"{what}: {len(bad)} tensor(s) hold NaN or infinite values ({shown})", bad)


def check_usable(net: torch.nn.Module, example: torch.Tensor, what: str) -> None:
    """The one "is this model usable" check: :class:`NonFiniteError` unless ``net``'s weights are
    finite *and* its output on ``example`` (a tiny probe input, e.g. 1x3x8x8) is. Finite weights
    can still overflow every output (1e30 after a learning rate of 1e30): such a model is never
    called good, saved as the last good checkpoint, exported or translated with. ``net`` is run
    in eval mode and left in the mode it was in."""
    check_finite(dict(net.state_dict()), what)
    was_training = net.training
    try:
        net.eval()
        with torch.inference_mode():
            out = net(example)
    except (RuntimeError, ValueError, TypeError, IndexError) as e:  # shapes that cannot run
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise CheckpointError(f"{what}: the model cannot run on a probe input of shape {tuple(example.shape)} "
                              f"({type(e).__name__}: {first})") from None
    finally:
        net.train(was_training)
    if nonfinite_tensors(out):
        raise NonFiniteError(f"{what}: the weights are finite but produce NaN or infinite outputs on a probe "
                             "input (a run that diverged, e.g. with a far too high learning rate)", ["output"])


def code_version() -> str:
    """Package version plus the git commit when running from a checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _WriteErrors:
    """File proxy that remembers the OSError a ``write`` raised. torch.save turns a failed write
    (a full disk) into a RuntimeError about zip positions; this keeps the real cause."""

    def __init__(self, f: Any) -> None:
        self._f = f
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def _create_temp(path: Path) -> tuple[int, str]:
    """A new ``.NAME.<random>.tmp`` beside ``path``, opened for writing. Created with mode 0666 so
    the kernel applies the umask, as for any other file the user writes (tempfile.mkstemp's 0600
    would survive the rename and make every output private)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temporary name beside {path}")


def _write_error(path: Path, cause: OSError) -> CheckpointError:
    reason = "no space left on device" if cause.errno == errno.ENOSPC else (cause.strerror or str(cause))
    return CheckpointError(f"could not write {path}: {reason}; the previous file, if any, is intact")


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it over
    ``path``. On any error the temporary file is removed and ``path`` is untouched; a failed
    write to the disk (full, read-only, ...) is a CheckpointError naming ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temp(path)
    except OSError as e:  # a full disk can refuse the folder or the temporary file already
        raise _write_error(path, e) from e
    proxy: _WriteErrors | None = None
    try:
        with os.fdopen(fd, mode) as f:
            proxy = _WriteErrors(f)
            write(proxy)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        cause = e if isinstance(e, OSError) else (proxy.error if proxy is not None else None)
        if cause is not None:
            raise _write_error(path, cause) from e
        raise
    _fsync_dir(path.parent)
    return path


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Atomically write a training checkpoint (a dict of tensors, numbers, strings, lists). A
    state with a NaN or infinite tensor is refused (:class:`NonFiniteError`) before anything is
    written: a diverged model must never replace the last good checkpoint."""
    check_finite(state, f"not writing {path}")
    state = {"format": CHECKPOINT_FORMAT, "code_version": code_version(), **state}
    return atomic_write(path, lambda f: torch.save(state, f))


def load_torch_file(path: str | os.PathLike, accepted: str, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: never unpickles code. A file that is not PyTorch
    weights (an image, an ONNX model, ...) or cannot be loaded is a CheckpointError saying what
    the file is and ``accepted``, what the caller takes instead."""
    kind = foreign_kind(path)
    if kind:
        raise CheckpointError(f"{path} is {kind}, not PyTorch weights; {accepted}")
    damage = zip_damage(path)
    if damage:
        raise CheckpointError(f"{path} is damaged ({damage}); {accepted}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, a pickle with code in it, ...: say which file and why
        raise CheckpointError(f"cannot load {path}: {_load_failure(e)}; {accepted}") from e


def zip_damage(path: str | os.PathLike) -> str | None:
    """What is wrong with the zip container of a torch file (a member whose CRC-32 does not
    match: bits flipped on disk; a cut-off central directory), or None when it checks out or is
    not a zip (the legacy format: torch.load decides). torch.load itself never checks the CRCs,
    so a flipped bit inside a tensor would load silently."""
    import zipfile

    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":
                return None
        with zipfile.ZipFile(path) as z:
            # torch.save stores members uncompressed: members claiming more than the file holds
            # are a crafted zip (a bomb for torch's reader), refused before anything is read
            claimed = sum(info.file_size for info in z.infolist())
            if claimed > 2 * os.path.getsize(path) + (1 << 20):
                return f"its members claim {claimed:,} bytes, more than the file holds (not written by torch.save)"
            bad = z.testzip()
    except zipfile.BadZipFile as e:
        return f"not an intact zip file: {e}"
    except Exception as e:  # OSError, EOFError, zlib.error (raised as-is by zipfile), ...
        return f"{type(e).__name__}: {str(e)[:100]}"
    return f"the CRC-32 of {bad} does not match its data: bits changed on disk" if bad else None


def _load_failure(e: Exception) -> str:
    # torch's own advice in these messages (rerun with weights_only=False) would run whatever code
    # the file holds: it is never shown, only what the file is.
    text = str(e)
    if "Unsupported global" in text:
        return ("it holds pickled Python objects besides tensors, which are never loaded because unpickling "
                "can run code (read with weights_only=True; save a state_dict() instead)")
    if "legacy .tar format" in text:
        return "it is in PyTorch's legacy .tar format (or damaged), which cannot be read without unpickling code"
    if "Weights only load failed" in text or isinstance(e, pickle.UnpicklingError):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        why = next((lines[i + 1] for i, line in enumerate(lines[:-1]) if line.endswith("WeightsUnpickler error:")),
                   type(e).__name__)
        return f"it is not a file torch.save wrote, or it is damaged ({why[:100]})"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if "weights_only" in first:
        first = ""
    if isinstance(e, (KeyError, EOFError, ValueError, UnicodeDecodeError, OverflowError, MemoryError)):
        return f"it is not a file torch.save wrote, or it is damaged ({type(e).__name__}{': ' + first[:80] if first else ''})"
    return f"{type(e).__name__}: {first}" if first else f"{type(e).__name__} (the file is damaged or truncated)"


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` without executing pickled code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    accepted = "expected a cyclegan training checkpoint (RUN/checkpoints/latest.pt or iter_*.pt)"
    state = load_torch_file(path, accepted, map_location)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a cyclegan training checkpoint")
    check_checkpoint_fields(state, path)
    return state


def check_checkpoint_fields(state: Mapping[str, Any], path: str | os.PathLike) -> None:
    """CheckpointError naming ``path`` unless the fields every reader looks into have the types
    cyclegan train writes: ``model`` a mapping of names to tensors, ``model_config``,
    ``run_config`` and ``train_config`` mappings with string keys. A crafted or damaged file is
    one line here, not a TypeError deep in a reader."""
    problems = []
    model = state.get("model")
    if model is not None and not (isinstance(model, Mapping) and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items())):
        problems.append(f"model is {_kind_of(model)}, not a mapping of names to tensors")
    for key in ("model_config", "run_config", "train_config"):
        value = state.get(key)
        if value is not None and not (isinstance(value, Mapping) and all(isinstance(k, str) for k in value)):
            problems.append(f"{key} is {_kind_of(value)}, not a mapping")
    run = state.get("run_config")
    if isinstance(run, Mapping) and not all(isinstance(v, (Mapping, str)) for v in run.values()):
        problems.append("run_config holds values that are neither sections nor its kind")
    if problems:
        raise CheckpointError(f"{path}: {'; '.join(problems)}; the checkpoint is damaged or was not written by "
                              "cyclegan train")


def _kind_of(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping with entries of other types"
    return f"a {type(value).__name__}"


def load_newest_intact(folder: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[dict, Path]:
    """(state, path) of ``folder/latest.pt`` or, when that cannot be loaded (damaged on disk) or
    holds non-finite tensors, of the newest ``iter_*.pt`` that can, with a warning naming both.
    latest.pt shares its data with the newest numbered file (see :func:`save_numbered`), so
    damage to that data falls back one save interval. CheckpointError if none is intact."""
    import logging

    folder = Path(folder)
    numbered = sorted(((int(m.group(1)), p) for p in folder.glob("iter_*.pt") if (m := _NUMBERED.match(p.name))),
                      reverse=True)
    errors: list[str] = []
    for path in [folder / "latest.pt", *(p for _, p in numbered)]:
        if not path.is_file():
            continue
        try:
            state = load_checkpoint(path, map_location)
            check_finite(state, str(path))
        except CheckpointError as e:
            errors.append(str(e))
            continue
        if errors:
            logging.getLogger("cyclegan.checkpoint").warning(
                "%s; using %s, the newest intact checkpoint, instead", "; ".join(errors), path)
        return state, path
    if not errors:
        raise CheckpointError(f"checkpoint not found: {folder / 'latest.pt'}")
    raise CheckpointError(f"no intact checkpoint in {folder}: {'; '.join(errors)}")


def run_settings(state: Mapping[str, Any]) -> dict:
    """A training checkpoint's settings other than the model's, flat (name, size, dataset, lr,
    ...): from the run config tree it stores, or from the flat ``train_config`` of checkpoints
    written before the tree. For readers that only look values up (inference, the app)."""
    stored = state.get("run_config")
    if isinstance(stored, Mapping):
        return {k: v for section in stored.values() if isinstance(section, Mapping) for k, v in section.items()}
    train = state.get("train_config")
    return dict(train) if isinstance(train, Mapping) else {}


def save_numbered(state: dict, folder: str | os.PathLike, iteration: int, keep: int) -> Path:
    """Write ``latest.pt`` and ``iter_<iteration>.pt`` in ``folder``; keep the newest ``keep``
    numbered files (0 keeps only latest.pt). The numbered file is a hard link to latest when the
    file system allows, so the data is written once: a checkpoint can be hundreds of MB, and
    damage to the shared data costs one save interval (:func:`load_newest_intact` falls back to
    the previous numbered file), not the run."""
    folder = Path(folder)
    latest = save_checkpoint(state, folder / "latest.pt")
    if keep > 0:
        numbered = folder / f"iter_{iteration:08d}.pt"
        tmp = folder / f".{numbered.name}.link"
        try:
            tmp.unlink(missing_ok=True)
            os.link(latest, tmp)
            os.replace(tmp, numbered)
        except OSError:
            save_checkpoint(state, numbered)
        _fsync_dir(folder)
    # A SIGKILL during an earlier save leaves its temp file behind: this folder has one writer (the
    # training process), so whatever is left now is stale and only fills the disk.
    for p in folder.iterdir():
        name = p.name
        if (name.startswith(".latest.pt.") and name.endswith(".tmp")) or (
                name.startswith(".iter_") and (name.endswith(".tmp") or name.endswith(".link"))):
            p.unlink(missing_ok=True)
    found = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _NUMBERED.match(p.name)))
    for _, old in found[: max(0, len(found) - keep)]:
        old.unlink(missing_ok=True)
    return latest


# --------------------------------------------------------------------------------------------
# Generator-only exports (safetensors, config inside)
# --------------------------------------------------------------------------------------------


def export_generators(generators: dict[str, torch.nn.Module], config: dict, path: str | os.PathLike,
                      meta: dict | None = None) -> Path:
    """Write the generators' weights to one safetensors file with the model config in its
    metadata, e.g. keys ``G_A.model.1.weight``. Loading it needs no flags and runs no code."""
    from safetensors.torch import save

    tensors = {f"{name}.{k}": v.detach().cpu().contiguous()
               for name, net in generators.items() for k, v in net.state_dict().items()}
    check_finite(tensors, f"not writing {path}")
    metadata = {"format": EXPORT_FORMAT, "config": json.dumps(config), "code_version": code_version()}
    metadata.update({k: json.dumps(v) for k, v in (meta or {}).items()})
    blob = save(tensors, metadata=metadata)
    return atomic_write(path, lambda f: f.write(blob))


def state_dict_misfit(weights: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> str:
    """What keeps ``weights`` from loading into a network with the ``expected`` state dict
    (missing, unexpected or wrongly shaped entries), or "" when they fit."""
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    shapes = [f"{k}: {tuple(weights[k].shape)} instead of {tuple(v.shape)}" for k, v in expected.items()
              if k in weights and weights[k].shape != v.shape]
    parts = [f"{what} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
             for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)) if keys]
    return "; ".join(parts)


def read_safetensors(path: str | os.PathLike, expected_format: str, missing: str,
                     wrong_format: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file whose metadata ``format`` is ``expected_format``;
    otherwise CheckpointError with the message ``missing`` (no such file), ``wrong_format`` (a
    foreign file) or one naming the file and the decoding error."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(missing)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(f"cannot read {path} as safetensors: {e}") from e
    if metadata.get("format") != expected_format:
        raise CheckpointError(wrong_format)
    return tensors, metadata


def load_export(path: str | os.PathLike) -> tuple[dict[str, dict[str, torch.Tensor]], dict, dict]:
    """Read an export: ({generator name: state_dict}, model config, other metadata)."""
    path = Path(path)
    tensors, metadata = read_safetensors(path, EXPORT_FORMAT, f"export not found: {path}",
                                         f"{path} is a safetensors file but not a cyclegan generator export")
    states: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        name, _, param = key.partition(".")
        states.setdefault(name, {})[param] = value
    decoded = {k: metadata_json(path, k, v) for k, v in metadata.items() if k not in ("format", "code_version")}
    config = decoded.pop("config", None)
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: the metadata's config is {'missing' if config is None else 'not a JSON object'}; "
                              "the export is damaged or was not written by cyclegan export")
    return states, config, decoded


def metadata_json(path: Path, key: str, text: str) -> Any:
    """The JSON value of the metadata entry ``key`` of the safetensors file ``path``, read with
    :func:`cyclegan.core.readers.parse_json`'s bounds; CheckpointError naming both otherwise."""
    try:
        return parse_json(text, f"{path}: the metadata's {key!r}")
    except BadFileError as e:
        raise CheckpointError(f"{e}; the file is damaged or was not written by cyclegan") from None


def write_json(path: str | os.PathLike, doc: Any) -> Path:
    """``doc`` as indented JSON at ``path``, written atomically (:func:`atomic_write`): a reader
    never sees half a file, an interrupted write leaves the previous one."""
    text = json.dumps(doc, indent=2) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode()))
