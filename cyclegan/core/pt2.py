"""Opening a ``torch.export`` archive (.pt2) without running what it holds.

``torch.export.load`` is not safe on a file from someone else: entries its configs mark
``use_pickle`` are read with ``torch.load(weights_only=False)``, "opaque object" constants with
``pickle.loads``, sample inputs that ``weights_only`` refuses are read again without it, legacy
weight files are plain torch pickles, and every symbolic size expression in the program goes to
``sympy.sympify``, which evaluates Python. :func:`check_pt2` reads the zip itself first and
refuses the file unless it holds only what ``torch.export.save`` writes for plain tensors:
no pickle besides sample inputs that load with ``weights_only=True``, and size expressions made
of sympy names and numbers only. Only then is torch's loader called (:func:`load_pt2_program`).
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from pathlib import Path
from typing import Any

from cyclegan.core.checkpoint import CheckpointError
from cyclegan.core.readers import BadFileError, parse_json

__all__ = ["check_pt2", "is_pt2", "load_pt2_program"]

#: bounds on what is read from the archive before torch sees it
_MAX_MEMBERS = 100_000
_MAX_JSON_BYTES = 256 << 20
_MAX_PICKLE_BYTES = 256 << 20

# Entries torch.export.save writes for a program with plain tensor weights and constants (names
# relative to the archive's top folder). Anything else (legacy weights/constants .pt files,
# AOTInductor or ExecuTorch payloads, custom or opaque objects) is refused.
_ALLOWED = [re.compile(p) for p in (
    r"archive_format", r"archive_version", r"byteorder", r"\.data/version", r"\.data/serialization_id",
    r"models/[\w.-]+\.json",
    r"data/weights/[\w.-]+_weights_config\.json", r"data/weights/weight_\d+",
    r"data/constants/[\w.-]+_constants_config\.json", r"data/constants/tensor_\d+",
    r"data/sample_inputs/[\w.-]+\.pt",
    r"extra/[^/]+",
)]

# Size expressions as torch writes them, e.g. "Symbol('s77', positive=True, integer=True)" or
# "2*s0 + 1": sympy class and function names, symbol names, numbers, arithmetic. No attribute
# access, indexing or dunder names, so sympify's eval can only build sympy expressions.
_SYMPY_NAMES = frozenset("""Symbol Integer Rational Float Add Mul Pow Max Min Mod Abs floor ceiling sqrt
    Eq Ne Lt Le Gt Ge StrictLessThan StrictGreaterThan LessThan GreaterThan Equality Unequality And Or Not
    Piecewise ExprCondPair oo zoo nan true false True False None S Half One Zero NegativeOne Infinity
    NegativeInfinity positive negative nonnegative nonpositive integer real finite infinite even odd zero
    nonzero rational prime commutative FloorDiv ModularIndexing Where PythonMod CleanDiv CeilToInt FloorToInt
    CeilDiv LShift RShift PowByNatural FloatPow FloatTrueDiv IntTrueDiv IsNonOverlappingAndDenseIndicator
    TruncToFloat TruncToInt RoundToInt RoundDecimal ToFloat Identity BitwiseFn_bitwise_and BitwiseFn_bitwise_or
    OpaqueUnaryFn_log2 OpaqueUnaryFn_exp OpaqueUnaryFn_sqrt""".split())
_TOKEN = re.compile(r"\s+|\d+(?:\.\d*)?(?:e[+-]?\d+)?|[A-Za-z_]\w*|'[A-Za-z_]\w*'|\*\*|[-+*/%(),=<>!]=?")
_SYMBOL = re.compile(r"[a-z]{1,4}\d+")


def _refuse(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"{path}: {why}; refused before torch reads it, because torch.export.load would "
                           "unpickle or evaluate it (which can run code). Export the program again with "
                           "torch.export.save from plain tensors")


def _safe_expression(text: str) -> bool:
    if not isinstance(text, str) or len(text) > 10_000 or "__" in text:
        return False
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            return False
        token = m.group()
        if token[0].isalpha() or token[0] == "_":
            if token not in _SYMPY_NAMES and not _SYMBOL.fullmatch(token):
                return False
        elif token[0] == "'" and not _SYMBOL.fullmatch(token[1:-1]):
            return False
        pos = m.end()
    return True


def _expressions(obj: Any, depth: int = 0):
    """Every ``expr_str`` value in a decoded program (iteratively deep: the JSON decoder already
    bounded the nesting)."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key == "expr_str":
                    yield value
                else:
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)


def _read_json(z: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> Any:
    if info.file_size > _MAX_JSON_BYTES:
        raise _refuse(path, f"{info.filename} claims {info.file_size} bytes")
    try:
        return parse_json(z.read(info), info.filename)
    except BadFileError as e:
        raise _refuse(path, str(e)) from None


def is_pt2(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zip with a torch.export ``archive_format`` member, whatever its suffix."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.count("/") == 1 and n.endswith("/archive_format") for n in z.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False


def check_pt2(path: str | os.PathLike) -> None:
    """CheckpointError naming ``path`` unless it is a torch.export archive that
    ``torch.export.load`` reads without unpickling anything but weights-only sample inputs and
    without evaluating anything but sympy size expressions."""
    import torch

    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            if len(infos) > _MAX_MEMBERS:
                raise _refuse(path, f"it has {len(infos)} members")
            names = [i.filename for i in infos]
            if len({n.lower() for n in names}) != len(names):
                raise _refuse(path, "it names one member twice")
            top = names[0].split("/", 1)[0] if names else ""
            members: dict[str, zipfile.ZipInfo] = {}
            for info in infos:
                head, _, rel = info.filename.partition("/")
                if head != top or not rel or not any(p.fullmatch(rel) for p in _ALLOWED):
                    raise _refuse(path, f"it holds {info.filename!r}, which torch.export.save does not write "
                                        "for plain tensors")
                members[rel] = info
            if not any(rel.startswith("models/") for rel in members):
                raise _refuse(path, "it holds no models/*.json program (an older or foreign archive)")
            for rel, info in members.items():
                if rel.endswith("_config.json"):
                    config = _read_json(z, info, path)
                    entries = config.get("config") if isinstance(config, dict) else None
                    if not isinstance(entries, dict):
                        raise _refuse(path, f"{info.filename} is not a payload config")
                    prefix = "weight_" if rel.startswith("data/weights/") else "tensor_"
                    for fqn, meta in entries.items():
                        if not isinstance(meta, dict) or meta.get("use_pickle") is not False \
                                or not re.fullmatch(prefix + r"\d+", str(meta.get("path_name"))):
                            raise _refuse(path, f"{info.filename} entry {str(fqn)[:80]!r} is not a plain tensor")
                elif rel.startswith("models/"):
                    bad = next((e for e in _expressions(_read_json(z, info, path)) if not _safe_expression(e)), None)
                    if bad is not None:
                        raise _refuse(path, f"{info.filename} holds the size expression {str(bad)[:80]!r}")
                elif rel.startswith("data/sample_inputs/"):
                    if info.file_size > _MAX_PICKLE_BYTES:
                        raise _refuse(path, f"{info.filename} claims {info.file_size} bytes")
                    try:
                        torch.load(io.BytesIO(z.read(info)), map_location="cpu", weights_only=True)
                    except Exception as e:
                        raise _refuse(path, f"{info.filename} is not weights-only data "
                                            f"({type(e).__name__})") from None
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as e:
        raise CheckpointError(f"{path}: not an intact torch.export archive ({type(e).__name__}: "
                              f"{str(e)[:100]})") from None
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror or e}") from None


def load_pt2_program(path: str | os.PathLike) -> Any:
    """``torch.export.load(path)`` once :func:`check_pt2` has passed; torch's own errors become a
    CheckpointError naming the file."""
    import torch

    check_pt2(path)
    try:
        return torch.export.load(str(path))
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(f"{path}: torch.export.load failed ({type(e).__name__}: {first[:200]})") from e
