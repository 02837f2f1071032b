"""The ``cyclegan`` command. Flags map one to one onto the config dataclasses; the values a user
did not give come from those dataclasses (the paper's settings) or, with --resume, from the run."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import sys

from cyclegan import __version__
from cyclegan.core.argtypes import image_size
from cyclegan.cli.help import use_everywhere
from cyclegan.cli.train import add_train_parser, cmd_bench, cmd_export


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cyclegan", description="Unpaired image-to-image translation (CycleGAN).")
    parser.add_argument("--version", action="version", version=f"cyclegan {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_train_parser(sub)

    e = sub.add_parser("export", help="write a run's generators to safetensors (config inside), ONNX or TorchScript",
                       description="Export G_A and G_B of a run (or one checkpoint file) for inference. "
                                   "onnx, torchscript and pt2 write one checked file per direction and also take a "
                                   "safetensors export or an original-release .pth.")
    e.add_argument("run", help="run folder (RUNS_DIR/NAME) or checkpoint .pt file (onnx/torchscript/pt2: also "
                               "generators.safetensors or a .pth)")
    e.add_argument("--output", "-o", help="output file [RUN/generators.safetensors; onnx/torchscript/pt2: "
                                          "RUN/generator_AtoB.onnx and _BtoA, or a folder for both]")
    e.add_argument("--format", choices=("safetensors", "onnx", "torchscript", "pt2"), default="safetensors",
                   help="safetensors: both generators + config for translate and the app; onnx: checked with "
                        "onnxruntime, dynamic batch/height/width; pt2: torch.export archive for "
                        "torch.export.load(path).module(), dynamic batch/height/width; torchscript: for "
                        "torch.jit.load (deprecated by torch, which warns on load; for LibTorch/mobile) [safetensors]")
    e.add_argument("--direction", choices=("AtoB", "BtoA"), help="onnx/torchscript/pt2: only this generator [both]")
    e.add_argument("--opset", type=int, help="onnx: opset version [the exporter's default]")
    e.add_argument("--static", action="store_true", help="onnx: fixed 1 x SIZE x SIZE input instead of dynamic axes")
    e.add_argument("--size", type=image_size, help="side of the example/check input [the training size]")
    e.add_argument("--no-check", action="store_true", help="onnx/torchscript/pt2: skip the check against PyTorch")
    from cyclegan.cli.translate import add_architecture_args

    add_architecture_args(e)
    e.set_defaults(func=cmd_export)

    from cyclegan.cli.bench import add_bench_args

    b = sub.add_parser("bench", help="measure training speed, memory and FLOPs on synthetic data")
    add_bench_args(b)
    b.set_defaults(func=cmd_bench)

    from cyclegan.cli.translate import add_translate_commands

    add_translate_commands(sub)

    from cyclegan.cli.download import add_download_commands

    add_download_commands(sub)

    from cyclegan.cli.evaluate import add_eval_commands

    add_eval_commands(sub)

    from cyclegan.cli.mnist import add_mnist_commands

    add_mnist_commands(sub)

    from cyclegan.cli.app import add_app_command

    add_app_command(sub)

    from cyclegan.cli.push import add_push_command

    add_push_command(sub)

    from cyclegan.cli.info import add_info_command

    add_info_command(sub)
    return use_everywhere(parser)


def main(argv: list[str] | None = None) -> int:
    from cyclegan.core.checkpoint import CheckpointError
    from cyclegan.data.images import DataError
    from cyclegan.training.runtime import TrainingDiverged, TrainingStopped

    # A native crash (a segfault or abort in a library) prints where every thread was, not
    # only "Aborted": enough to tell a data-loading bug from a communication one in a long run.
    if not faulthandler.is_enabled():
        try:
            faulthandler.enable()
        except (AttributeError, ValueError):  # stderr is not a file here (captured, embedded)
            pass
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except TrainingStopped as e:  # saved, and the loop already said how to resume
        return e.status
    except (DataError, CheckpointError, TrainingDiverged, ValueError) as e:
        # Problems with the user's input: one clear line, no traceback.
        print(f"cyclegan {args.command}: error: {e}", file=sys.stderr)
        return 2 if not isinstance(e, TrainingDiverged) else 3
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
