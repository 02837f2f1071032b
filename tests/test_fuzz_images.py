"""Fuzzing image decoding with hypothesis: images.load_image and the app's upload path
(app_logic.read_upload) on mutated bytes of real small PNG/JPEG/WebP/TIFF/BMP/GIF files, truncated
files, empty files and PNG headers declaring zero to 2**32-1 pixel dimensions (decompression
bombs). Every case must decode to a valid array or raise the project's own error
(UnreadableImageError / UserError), never anything else. FUZZ_EXAMPLES=N runs more cases."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _seed_files() -> dict[str, bytes]:
    """Small real files in every format the project reads (RGB, gray, palette, alpha, 16-bit)."""
    import io

    import numpy as np

    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
    out: dict[str, bytes] = {}
    for name, img, fmt, kw in [
        ("rgb.png", rgb, "PNG", {}), ("rgba.png", rgb.convert("RGBA"), "PNG", {}),
        ("p.png", rgb.convert("P"), "PNG", {}), ("i16.png", rgb.convert("L").convert("I;16"), "PNG", {}),
        ("rgb.jpg", rgb, "JPEG", {"quality": 80}), ("gray.jpg", rgb.convert("L"), "JPEG", {}),
        ("prog.jpg", rgb, "JPEG", {"progressive": True}),
        ("rgb.webp", rgb, "WEBP", {}), ("lossless.webp", rgb.convert("RGBA"), "WEBP", {"lossless": True}),
        ("rgb.tif", rgb, "TIFF", {}), ("lzw.tif", rgb, "TIFF", {"compression": "tiff_lzw"}),
        ("f.tif", rgb.convert("F"), "TIFF", {}), ("rgb.bmp", rgb, "BMP", {}), ("rgb.gif", rgb, "GIF", {}),
    ]:
        buf = io.BytesIO()
        img.save(buf, fmt, **kw)
        out[name] = buf.getvalue()
    return out


SEEDS = _seed_files()


def _bomb_png(width: int, height: int) -> bytes:
    """A PNG header declaring width x height with one tiny IDAT: decoding it whole would need
    width*height*3 bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


@st.composite
def hostile_images(draw) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["mutate", "mutate", "mutate", "truncate", "bomb", "empty"]))
    if kind == "empty":
        return "empty.png", b""
    if kind == "bomb":
        w = draw(st.sampled_from([0, 1, 2**14, 2**16, 2**31 - 1, 2**32 - 1]))
        h = draw(st.sampled_from([0, 1, 2**14, 2**16, 2**31 - 1, 2**32 - 1]))
        return "bomb.png", _bomb_png(w, h)
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    if kind == "truncate":
        return name, bytes(data[: draw(st.integers(0, len(data) - 1))])
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(0, min(len(data) - 1, draw(st.sampled_from([64, len(data) - 1])))))
        data[pos] = draw(st.integers(0, 255))  # header bytes (dimensions, modes) are hit often
    return name, bytes(data)


FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "600")), deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _check_load_image(path: Path) -> None:
    from cyclegan.data.images import UnreadableImageError, load_image

    for channels in (1, 3):
        try:
            arr = load_image(path, channels)
        except UnreadableImageError as e:
            assert str(path) in str(e)
            continue
        assert arr.dtype.name == "uint8" and arr.ndim == 3 and arr.shape[2] == channels
        assert arr.shape[0] > 0 and arr.shape[1] > 0 and arr.flags.c_contiguous


def _check_upload(path: Path) -> None:
    from cyclegan.app.settings import UserError
    from cyclegan.app.uploads import read_upload

    try:
        arr, _ = read_upload(path, 3, max_input_pixels=4_000_000, max_pixels=1_000_000)
    except UserError as e:
        assert path.name in str(e) and "Traceback" not in str(e)
        return
    assert arr.dtype.name == "uint8" and arr.ndim == 3 and arr.shape[2] == 3
    assert arr.shape[0] > 0 and arr.shape[1] > 0


@FUZZ
@given(case=hostile_images())
def test_fuzzed_files_decode_or_give_unreadable_image_error(tmp_path_factory, case):
    name, data = case
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_bytes(data)
    _check_load_image(path)


@FUZZ
@given(case=hostile_images())
def test_fuzzed_uploads_decode_or_give_user_error(tmp_path_factory, case):
    name, data = case
    path = tmp_path_factory.mktemp("up") / name
    path.write_bytes(data)
    _check_upload(path)


@pytest.mark.parametrize("w, h", [(0, 0), (0, 10), (10, 0), (1, 1), (2**16, 2**16), (2**31 - 1, 2**31 - 1),
                                  (2**32 - 1, 1)])
def test_declared_dimensions_zero_to_huge(tmp_path, w, h):
    path = tmp_path / f"dims_{w}x{h}.png"
    path.write_bytes(_bomb_png(w, h))
    _check_load_image(path)
    _check_upload(path)
