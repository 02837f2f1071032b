"""``cyclegan export``: the command's argument handling around cyclegan.inference.export."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cyclegan.inference.loading import LoadedGenerator, OneDirectionError, load_generator
from cyclegan.cli.translate import architecture_overrides
from cyclegan.inference.export import TORCHSCRIPT_NOTE, export_onnx, export_pt2, export_torchscript

__all__ = ["run_export"]


# -- `cyclegan export --format onnx|torchscript|pt2` -------------------------------------------


def _default_output(source: Path, gen: LoadedGenerator, suffix: str) -> Path:
    if gen.direction is None:  # a single published .pth: name it after the file
        return source.with_suffix(suffix)
    folder = source.parent.parent if source.parent.name == "checkpoints" else source.parent
    return folder / f"generator_{gen.direction}{suffix}"


def run_export(args: argparse.Namespace) -> int:
    """The onnx, torchscript and pt2 formats of ``cyclegan export`` (safetensors: cli/train.py)."""
    suffix = {"onnx": ".onnx", "torchscript": ".ts", "pt2": ".pt2"}[args.format]
    arch = architecture_overrides(args)
    first = load_generator(args.run, args.direction, arch=arch)
    gens = [first]
    if args.direction is None and first.direction is not None:  # a CycleGAN: both directions (CUT: one)
        try:
            gens.append(load_generator(args.run, "BtoA" if first.direction == "AtoB" else "AtoB", arch=arch))
        except OneDirectionError:
            pass
    if args.output and len(gens) > 1:
        outputs = [Path(args.output) / _default_output(g.source, g, suffix).name for g in gens]
    elif args.output:
        outputs = [Path(args.output)]
    else:
        outputs = [_default_output(g.source, g, suffix) for g in gens]
    for gen, out in zip(gens, outputs):
        if args.format == "onnx":
            export_onnx(gen, out, opset=args.opset, dynamic=not args.static, size=args.size, check=not args.no_check)
        elif args.format == "pt2":
            export_pt2(gen, out, size=args.size, check=not args.no_check)
        else:
            export_torchscript(gen, out, size=args.size, check=not args.no_check)
        print(out)
    if args.format == "torchscript":
        print(TORCHSCRIPT_NOTE, file=sys.stderr)
    return 0
