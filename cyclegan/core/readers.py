"""Bounded, validated reading of what a file says: JSON text (a size limit, nesting that cannot
exhaust the recursion limit, bad UTF-8) and numbers that will size an allocation (a type and a
range that fit the machine). Every reader of a file the project opens (checkpoint and export
metadata, classifier caches, evaluation results) goes through these, so a crafted or damaged file
is a one-line ``BadFileError`` naming it, never a traceback, a RecursionError or a 22 GB
allocation. Imports nothing heavy."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["BadFileError", "MAX_JSON_BYTES", "bounded_int", "parse_json", "read_json_file"]

#: the largest JSON document read from a file (run configs, metadata, evaluation results are KBs)
MAX_JSON_BYTES = 16 << 20


class BadFileError(ValueError):
    """A file (or a field of it) that cannot be what it should be; the message names the file."""


def parse_json(text: str | bytes, what: str) -> Any:
    """``json.loads(text)``; a BadFileError saying ``what`` is not valid JSON (too long, bad
    UTF-8, nested past the recursion limit, or malformed) otherwise."""
    if len(text) > MAX_JSON_BYTES:
        raise BadFileError(f"{what} is {len(text)} bytes of JSON, more than the {MAX_JSON_BYTES >> 20} MiB allowed")
    try:
        return json.loads(text)
    except (ValueError, RecursionError, TypeError) as e:  # UnicodeDecodeError is a ValueError
        raise BadFileError(f"{what} is not valid JSON ({type(e).__name__}: {str(e)[:100]})") from None


def read_json_file(path: str | os.PathLike) -> Any:
    """The JSON document in ``path``, read with a size bound first (:func:`parse_json`)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_JSON_BYTES + 1)
    except OSError as e:
        raise BadFileError(f"cannot read {path}: {e.strerror or e}") from None
    return parse_json(data, str(path))


def bounded_int(value: Any, low: int, high: int, what: str) -> int:
    """``value`` when it is an integer (not a bool, not a float) in ``low..high``; a
    BadFileError naming ``what`` otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    raise BadFileError(f"{what} must be an integer {low}..{high}, got {repr(value)[:40]}")
