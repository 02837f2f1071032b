"""The ``cyclegan`` command. Flags map one to one onto the config dataclasses; the values a user
did not give come from those dataclasses (the paper's settings) or, with --resume, from the run."""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import logging
import sys

from cyclegan import __version__
from cyclegan.core import install
from cyclegan.cli.help import use_everywhere

#: the commands in the order ``cyclegan --help`` lists them: name -> (one line of help, the function that
#: adds its parser, as "module:function"). A command's module (and torch with it) is imported only when
#: that command is used, so ``cyclegan --help`` answers at once.
COMMANDS = {
    "train": ("train a CycleGAN on two unpaired image folders (or CUT, or pix2pix on pairs)",
              "cyclegan.cli.train:add_train_parser"),
    "export": ("write a run's generators to safetensors (config inside), ONNX or TorchScript",
               "cyclegan.cli.main:_add_export"),
    "bench": ("measure training speed, memory and FLOPs on synthetic data", "cyclegan.cli.main:_add_bench"),
    "translate": ("translate an image or a folder of images with a trained or published generator",
                  "cyclegan.cli.translate:add_translate_commands"),
    "download": ("download a standard CycleGAN or pix2pix data set or a published generator",
                 "cyclegan.cli.download:add_download_commands"),
    "eval": ("FID/KID between two folders, a model's cycle-reconstruction error, or a domain-classifier "
             "judgement of a model", "cyclegan.cli.evaluate:add_eval_commands"),
    "mnist": ("unconditional GAN on MNIST-format data (noise -> image)", "cyclegan.cli.mnist:add_mnist_commands"),
    "app": ("start the web app (translate images, generate samples)", "cyclegan.cli.app:add_app_command"),
    "push": ("share a trained model on the Hugging Face Hub (generators, config, model card, samples)",
             "cyclegan.cli.push:add_push_command"),
    "info": ("versions, device, and the fast path --precision/--compile auto pick here",
             "cyclegan.cli.info:add_info_command"),
}


class _LazyCommands(dict):
    """The sub-parsers by name, each built on first use (argparse looks a command up here only once it
    is on the command line); iterating lists every name and builds nothing."""

    def __init__(self, action: argparse._SubParsersAction) -> None:
        super().__init__()
        self._action = action

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        """What a command module calls: argparse's add_parser, minus the help line (COMMANDS has it)."""
        kwargs.pop("help", None)
        kwargs.setdefault("prog", f"{self._action._prog_prefix} {name}")
        parser = self._action._parser_class(**kwargs)
        dict.__setitem__(self, name, parser)
        return parser

    def __missing__(self, name: str) -> argparse.ArgumentParser:
        if name not in COMMANDS:
            raise KeyError(name)
        module, _, function = COMMANDS[name][1].partition(":")
        getattr(importlib.import_module(module), function)(self)
        return use_everywhere(dict.__getitem__(self, name))

    def __contains__(self, name: object) -> bool:
        return name in COMMANDS

    def __iter__(self):
        return iter(COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS)

    def keys(self):
        return list(COMMANDS)

    def values(self):
        return [self[name] for name in COMMANDS]

    def items(self):
        return [(name, self[name]) for name in COMMANDS]


def _add_export(sub) -> None:
    from cyclegan.core.argtypes import image_size
    from cyclegan.cli.train import cmd_export
    from cyclegan.cli.translate import add_architecture_args

    e = sub.add_parser("export", description="Export G_A and G_B of a run (or one checkpoint file) for inference. "
                                              "onnx, torchscript and pt2 write one checked file per direction and "
                                              "also take a safetensors export or an original-release .pth.")
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
    add_architecture_args(e)
    e.set_defaults(func=cmd_export)


def _add_bench(sub) -> None:
    from cyclegan.cli.bench import add_bench_args
    from cyclegan.cli.train import cmd_bench

    b = sub.add_parser("bench")
    add_bench_args(b)
    b.set_defaults(func=cmd_bench)


def build_parser() -> argparse.ArgumentParser:
    """The ``cyclegan`` parser. It imports no command module (and no torch) until a command is
    parsed or its parser is looked up."""
    parser = argparse.ArgumentParser(prog="cyclegan", description="Unpaired image-to-image translation (CycleGAN).")
    parser.add_argument("--version", action="version", version=f"cyclegan {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    sub.choices = sub._name_parser_map = _LazyCommands(sub)
    for name, (text, _) in COMMANDS.items():
        sub._choices_actions.append(sub._ChoicesPseudoAction(name, (), text))
    return use_everywhere(parser)


def main(argv: list[str] | None = None) -> int:
    # A native crash (a segfault or abort in a library) prints where every thread was, not
    # only "Aborted": enough to tell a data-loading bug from a communication one in a long run.
    if not faulthandler.is_enabled():
        try:
            faulthandler.enable()
        except (AttributeError, ValueError):  # stderr is not a file here (captured, embedded)
            pass
    parser = build_parser()
    args = parser.parse_args(argv)
    from cyclegan.core.checkpoint import CheckpointError
    from cyclegan.data.images import DataError
    from cyclegan.training.runtime import TrainingDiverged, TrainingStopped

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        install.check()  # a torchvision built for another torch: one line and the fix, before any work
        return args.func(args)
    except install.BrokenInstall as e:
        print(f"cyclegan {args.command}: error: {e}", file=sys.stderr)
        return 2
    except TrainingStopped as e:  # saved, and the loop already said how to resume
        return e.status
    except (DataError, CheckpointError, TrainingDiverged, ValueError) as e:
        # Problems with the user's input: one clear line, no traceback.
        print(f"cyclegan {args.command}: error: {e}", file=sys.stderr)
        return 2 if not isinstance(e, TrainingDiverged) else 3
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
