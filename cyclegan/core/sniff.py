"""What a file is, from its first bytes: so that a wrong file given as a model or checkpoint gets a
message saying what it is ("an image (PNG)", "an ONNX model") instead of a decoder's KeyError.
Reads at most a few kilobytes; imports nothing heavy."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

_IMAGES = [
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
]


def _is_safetensors(head: bytes, size: int) -> bool:
    # 8-byte little-endian header length, then a JSON object
    return len(head) > 9 and 0 < int.from_bytes(head[:8], "little") <= size - 8 and head[8:9] == b"{"


def _zip_kind(path: Path) -> str | None:
    """None for a PyTorch zip checkpoint; else what the zip is."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return None  # damaged: torch.load names the damage
    if any(n.count("/") == 1 and n.endswith("/archive_format") for n in names):
        return "a torch.export program (.pt2), which holds a whole program rather than weights"
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        return "a TorchScript archive (torch.jit.save)"
    if not any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        return "a zip archive (not a PyTorch file)"
    return None


def foreign_kind(path: str | os.PathLike) -> str | None:
    """What ``path`` is when it is certainly not PyTorch weights (``"an image (PNG)"``, ``"an
    empty file"``, ...), or None when it may be (then torch.load decides)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return None
    if size == 0:
        return "an empty file"
    if not head.strip(b"\0"):
        return "a file of zero bytes only (damaged, or never written out)"
    for magic, name in _IMAGES:
        if head.startswith(magic):
            return f"an image ({name})"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "an image (WebP)"
    if path.suffix.lower() == ".onnx":
        return "an ONNX model"
    if _is_safetensors(head, size):
        return "a safetensors file (give it the .safetensors suffix)"
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(path)
    if head[:1] == b"\x80":  # a pickle: the legacy (pre-zip) torch format
        return None
    if head.startswith(b"\x1f\x8b"):
        return "a gzip archive"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "a text file"
    return None
