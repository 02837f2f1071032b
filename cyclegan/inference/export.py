"""Exports for deployment beyond our safetensors file: ONNX, TorchScript and torch.export (.pt2).

Each file holds one generator (one direction) and says what it is: the architecture, direction,
training size and input contract go into the ONNX model's ``metadata_props`` or the TorchScript
and .pt2 archives' ``cyclegan.json`` extra file. Every export is checked before it is kept: the
ONNX model in onnxruntime, the TorchScript module and the .pt2 program after a reload must
reproduce PyTorch's output (at two image sizes when the height and width are dynamic).

Input contract of every export: float32 (N, C, H, W) in [-1, 1], H and W multiples of the
generator's ``multiple`` (4 for ResNets, 2**num_downs for U-Nets); output the same shape in [-1, 1].
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from dataclasses import asdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any
import torch
from torch import Tensor

from cyclegan.core.checkpoint import atomic_write, code_version
from cyclegan.data.images import DataError
from cyclegan.inference.loading import LoadedGenerator

__all__ = ["TORCHSCRIPT_NOTE", "export_onnx", "export_pt2", "export_torchscript"]

log = logging.getLogger("cyclegan.export")

ONNX_INPUT, ONNX_OUTPUT = "image", "translated"
_TOLERANCE = 1e-3  # max abs difference allowed against PyTorch, in [-1, 1] output units


class ExportError(DataError):
    """An export that could not be produced or did not reproduce PyTorch's output."""


def _metadata(gen: LoadedGenerator, fmt: str, dynamic: bool, side: int) -> dict[str, str]:
    m = gen.multiple
    shape = f"H and W multiples of {m}" if dynamic else f"H = W = {side}"
    return {
        "format": f"cyclegan-generator-{fmt}",
        "spec": json.dumps(asdict(gen.spec)),
        "direction": gen.direction or "",
        "size": str(gen.size or ""),
        "multiple": str(m),
        "name": gen.name,
        "source": str(gen.source),
        "input": f"{ONNX_INPUT}: float32 (N, {gen.spec.input_nc}, H, W) in [-1, 1], {shape}",
        "output": f"{ONNX_OUTPUT}: float32 (N, {gen.spec.output_nc}, H, W) in [-1, 1]",
        "code_version": code_version(),
    }


def _check_sizes(gen: LoadedGenerator, side: int, dynamic: bool) -> list[tuple[int, int, int]]:
    """(batch, H, W) of the inputs an export is checked on: the example and, when dynamic, a
    different batch and a non-square size."""
    m = gen.multiple
    return [(1, side, side)] + ([(2, side + m, side + 2 * m)] if dynamic else [])


def _compare(name: str, run: Any, gen: LoadedGenerator, side: int, dynamic: bool) -> float:
    worst = 0.0
    g = torch.Generator().manual_seed(0)
    for n, h, w in _check_sizes(gen, side, dynamic):
        x = torch.rand(n, gen.spec.input_nc, h, w, generator=g) * 2 - 1
        with torch.inference_mode():
            want = gen.net(x)
        got = torch.as_tensor(run(x))
        if got.shape != want.shape:
            raise ExportError(f"{name}: output shape {tuple(got.shape)} differs from PyTorch's {tuple(want.shape)} "
                              f"for input {tuple(x.shape)}")
        worst = max(worst, float((got - want).abs().max()))
    if worst > _TOLERANCE:
        raise ExportError(f"{name}: outputs differ from PyTorch by up to {worst:.2e} (allowed {_TOLERANCE:g}); "
                          "the file was not written")
    return worst


def _example_side(gen: LoadedGenerator, size: int | None) -> int:
    m = gen.multiple
    return max(m, (size or gen.size or 256) // m * m)


# -- ONNX --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _onnx_bytes(gen: LoadedGenerator, example: Tensor, opset: int | None, dynamic: bool) -> bytes:
    """Export with torch.export (the default exporter since PyTorch 2.9); H and W are declared as
    multiples of the generator's multiple so one file serves every image size. Falls back to the
    TorchScript-based exporter if that fails (e.g. onnxscript missing)."""
    m = gen.multiple
    net = gen.net.eval()
    errors = []
    try:
        dims = None
        if dynamic:
            Dim = torch.export.Dim
            dims = ({0: Dim("batch", max=4096), 2: m * Dim("h_div", max=16384), 3: m * Dim("w_div", max=16384)},)
        with _quiet_loggers("onnx_ir", "onnxscript", "torch.onnx"):  # per-pass INFO lines otherwise
            program = torch.onnx.export(net, (example,), dynamo=True, dynamic_shapes=dims, input_names=[ONNX_INPUT],
                                        output_names=[ONNX_OUTPUT], opset_version=opset, verbose=False)
        return program.model_proto.SerializeToString()
    except Exception as e:  # an exporter limitation: try the older one before giving up
        errors.append(f"torch.export-based exporter: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        log.info("torch.export-based ONNX export failed (%s); trying the TorchScript-based exporter", errors[-1])
    try:
        buf = io.BytesIO()
        axes = {ONNX_INPUT: {0: "batch", 2: "height", 3: "width"}, ONNX_OUTPUT: {0: "batch", 2: "height", 3: "width"}}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its deprecation notice and instance-norm training-mode chatter
            torch.onnx.export(net, (example,), buf, dynamo=False, input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
                              dynamic_axes=axes if dynamic else None, opset_version=opset or 17)
        return buf.getvalue()
    except Exception as e:
        errors.append(f"TorchScript-based exporter: {type(e).__name__}: {e}")
    raise ExportError("ONNX export failed: " + "; ".join(errors))


def export_onnx(gen: LoadedGenerator, path: str | Path, *, opset: int | None = None, dynamic: bool = True,
                size: int | None = None, check: bool = True) -> Path:
    """Write ``gen`` as an ONNX model to ``path`` (atomically), after checking it in onnxruntime
    against PyTorch unless ``check`` is False. ``dynamic``: any batch, H and W (multiples of the
    generator's multiple); otherwise fixed at 1 x ``size`` x ``size``."""
    try:
        import onnx
    except ImportError as e:
        raise ExportError("--format onnx needs the onnx package: pip install 'cyclegan[onnx]'") from e
    gen.net.cpu().eval()
    side = _example_side(gen, size)
    example = torch.zeros(1, gen.spec.input_nc, side, side)
    model = onnx.load_from_string(_onnx_bytes(gen, example, opset, dynamic))
    for key, value in _metadata(gen, "onnx", dynamic, side).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = f"cyclegan.{key}", value
    data = model.SerializeToString()
    if check:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ExportError("checking the ONNX export needs onnxruntime: pip install 'cyclegan[onnx]', or pass "
                              "--no-check") from e
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        worst = _compare(str(path), lambda x: session.run(None, {ONNX_INPUT: x.numpy()})[0], gen, side, dynamic)
        log.info("ONNX export matches PyTorch (max abs difference %.2e)", worst)
    return atomic_write(path, lambda f: f.write(data))


# -- TorchScript -------------------------------------------------------------------------------


def export_torchscript(gen: LoadedGenerator, path: str | Path, *, size: int | None = None, check: bool = True) -> Path:
    """Write ``gen`` as a TorchScript archive (``torch.jit.load`` needs no cyclegan code) with its
    metadata in the ``cyclegan.json`` extra file; checked after a reload unless ``check`` is False.
    (torch.jit is deprecated in favour of torch.export but still what C++/mobile runtimes load.)"""
    net = gen.net.cpu().eval()
    side = _example_side(gen, size)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated", category=Warning)
        try:
            module = torch.jit.script(net)
        except Exception as e:  # scripting limitation: tracing is exact for these conv nets
            log.info("torch.jit.script failed (%s); tracing instead", e)
            module = torch.jit.trace(net, torch.zeros(1, gen.spec.input_nc, side, side))
        buf = io.BytesIO()
        extra = {"cyclegan.json": json.dumps(_metadata(gen, "torchscript", True, side))}
        torch.jit.save(module, buf, _extra_files=extra)
        data = buf.getvalue()
        if check:
            loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")
            worst = _compare(str(path), lambda x: loaded(x), gen, side, True)
            log.info("TorchScript export matches PyTorch (max abs difference %.2e)", worst)
    return atomic_write(path, lambda f: f.write(data))


#: said after a TorchScript export: torch.jit.load itself warns that it is deprecated
TORCHSCRIPT_NOTE = ("note: torch.jit.load warns that TorchScript is deprecated; in Python, `--format pt2` writes "
                    "the same generator for torch.export.load, which does not. TorchScript stays for LibTorch (C++) "
                    "and mobile runtimes.")


# -- torch.export (.pt2) ------------------------------------------------------------------------


def export_pt2(gen: LoadedGenerator, path: str | Path, *, size: int | None = None, check: bool = True) -> Path:
    """Write ``gen`` as a ``torch.export`` archive (``torch.export.load(path).module()`` needs no
    cyclegan code; TorchScript's successor in Python) with dynamic batch, height and width
    (multiples of the generator's ``multiple``) and its metadata in the ``cyclegan.json`` extra
    file; checked after a reload unless ``check`` is False."""
    net = gen.net.cpu().eval()
    side = _example_side(gen, size)
    m = gen.multiple
    h, w = torch.export.Dim("h", min=1, max=16384 // m), torch.export.Dim("w", min=1, max=16384 // m)
    batch = torch.export.Dim("batch", min=1, max=1024)
    example = torch.zeros(2, gen.spec.input_nc, side, side)  # batch 2: a batch of 1 would be specialised
    try:
        program = torch.export.export(net, (example,), dynamic_shapes=({0: batch, 2: m * h, 3: m * w},))
    except Exception as e:
        raise ExportError(f"{path}: torch.export could not export the generator ({type(e).__name__}: "
                          f"{str(e).strip().splitlines()[0] if str(e).strip() else ''})") from e
    buf = io.BytesIO()
    torch.export.save(program, buf, extra_files={"cyclegan.json": json.dumps(_metadata(gen, "pt2", True, side))})
    data = buf.getvalue()
    if check:
        loaded = torch.export.load(io.BytesIO(data)).module()
        worst = _compare(str(path), lambda x: loaded(x), gen, side, True)
        log.info("torch.export archive matches PyTorch (max abs difference %.2e)", worst)
    return atomic_write(path, lambda f: f.write(data))
