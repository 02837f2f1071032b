"""The ``cyclegan`` command. Flags map one to one onto the config dataclasses; the values a user
did not give come from those dataclasses (the paper's settings) or, with --resume, from the run."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import sys
from dataclasses import MISSING, fields
from pathlib import Path

from . import __version__
from .argtypes import ema_decay, image_size, nonneg_float, nonneg_int, positive_int, shrink_factor
from .cyclegan import PRESETS, CycleGANConfig, resolve_preset
from .gan import COMPILE_MODES, INIT_TYPES, LOSSES, LR_POLICIES, PRECISIONS
from .networks import DISCRIMINATORS, GENERATORS, NORM_LAYERS
from .data import PREPROCESS_MODES
from .train import TrainConfig




def _defaults(dc) -> dict:
    return {f.name: f.default for f in fields(dc) if f.default is not MISSING}


# (flag, dataclass field, argparse kwargs). Defaults are None so we know what the user gave.
#: the training loop's flags (LoopConfig), shared by `train` and `mnist train`
LOOP_FLAGS = [
    ("--name", "name", dict(help="run name; the run lives in RUNS_DIR/NAME")),
    ("--runs-dir", "runs_dir", dict(help="where runs are kept")),
    ("--batch-size", "batch_size", dict(type=positive_int, help="images per step per process; under torchrun "
                                                                 "the global batch is this x world size")),
    ("--num-workers", "num_workers", dict(type=int, help="DataLoader workers; -1 = one per spare core, max 4")),
    ("--device", "device", dict(help="auto, cpu, cuda, cuda:N or mps")),
    ("--precision", "precision", dict(choices=PRECISIONS, help="fp32, or bf16/fp16 autocast (fp16 with grad scaling)")),
    ("--seed", "seed", dict(type=int, help="seed for init, data order, augmentation, pools")),
    ("--max-iters", "max_iters", dict(type=positive_int, help="stop after this many iterations")),
    ("--save-every", "save_every", dict(type=nonneg_int, help="iterations between checkpoints (0: epoch ends only)")),
    ("--keep", "keep", dict(type=nonneg_int, help="numbered checkpoints to keep besides latest.pt")),
    ("--preview-every", "preview_every", dict(type=nonneg_int, help="iterations between preview grids (0: off)")),
    ("--log-every", "log_every", dict(type=positive_int, help="iterations between loss logs")),
    ("--compile-mode", "compile_mode", dict(choices=COMPILE_MODES, help="with --compile: inductor mode; "
                                             "reduce-overhead replays CUDA graphs (fewer launches at batch 1)")),
    ("--preview-count", "preview_count", dict(type=positive_int, help="image pairs in each preview grid")),
    ("--nan-retries", "nan_retries", dict(type=nonneg_int, help="on a NaN/inf loss, roll back to the last "
                                                                 "checkpoint and go on this many times (0: stop)")),
    ("--nan-lr-factor", "nan_lr_factor", dict(type=shrink_factor, help="learning rates x this at each roll-back")),
]
LOOP_SWITCHES = [
    ("--channels-last", "channels_last", True, "channels_last memory format"),
    ("--compile", "compile", True, "torch.compile the networks (falls back to eager on failure)"),
    ("--scale-lr", "scale_lr", True, "under torchrun: multiply learning rates by the world size "
                                     "(linear scaling rule; see docs/distributed.md)"),
]


#: the shared GAN base's flags (gan.py: init, loss, optimizers, schedules), for both models
GAN_FLAGS = [
    ("--init-type", "init_type", dict(choices=INIT_TYPES, help="weight initialisation")),
    ("--init-gain", "init_gain", dict(type=nonneg_float, help="scale of the initialisation")),
    ("--gan-mode", "gan_mode", dict(choices=tuple(LOSSES), help="adversarial loss")),
    ("--gp-weight", "gp_weight", dict(type=nonneg_float, help="gradient penalty weight for wgangp")),
    ("--d-steps", "d_steps", dict(type=positive_int, help="discriminator steps per generator step")),
    ("--lr", "lr", dict(type=nonneg_float, help="Adam learning rate")),
    ("--beta1", "beta1", dict(type=nonneg_float, help="Adam beta1")),
    ("--beta2", "beta2", dict(type=nonneg_float, help="Adam beta2")),
    ("--lr-policy", "lr_policy", dict(choices=LR_POLICIES, help="learning-rate schedule (per epoch)")),
    ("--n-epochs", "n_epochs", dict(type=nonneg_int, help="epochs at the initial learning rate")),
    ("--n-epochs-decay", "n_epochs_decay", dict(type=nonneg_int, help="epochs of linear decay to zero")),
    ("--lr-decay-iters", "lr_decay_iters", dict(type=positive_int, help="step policy: epochs per x0.1")),
]


def with_help(table: list, **helps: str) -> list:
    """A flag table with some help texts replaced (field=text)."""
    return [(flag, field, {**kw, "help": helps.get(field, kw["help"])}) for flag, field, kw in table]


_TRAIN_FLAGS = [
    ("--dataroot", "dataroot", dict(help="folder with trainA/ and trainB/ (the original release's layout)")),
    ("--domain-a", "domain_a", dict(help="folder of domain A images (instead of DATAROOT/trainA)")),
    ("--domain-b", "domain_b", dict(help="folder of domain B images (instead of DATAROOT/trainB)")),
    ("--size", "size", dict(type=image_size, help="crop size the networks train on (multiple of 4); "
                                              "<= 128 picks resnet_6blocks unless --netG is given")),
    ("--load-size", "load_size", dict(type=positive_int, help="resize before cropping (default size*286/256)")),
    ("--preprocess", "preprocess", dict(choices=PREPROCESS_MODES, help="how images become crops")),
    *LOOP_FLAGS,
]
_TRAIN_SWITCHES = [
    ("--no-flip", "flip", False, "no random horizontal flips"),
    ("--serial-batches", "serial_batches", True, "pair A[i] with B[i] instead of a random B"),
    *LOOP_SWITCHES,
]
_MODEL_FLAGS = [
    ("--channels", "input_nc", dict(type=int, choices=(1, 3), help="1 for grayscale, 3 for RGB (both domains)")),
    ("--netG", "netG", dict(choices=tuple(GENERATORS), help="generator architecture")),
    ("--netD", "netD", dict(choices=tuple(DISCRIMINATORS), help="discriminator: basic = 70x70 PatchGAN")),
    ("--n-layers-D", "n_layers_D", dict(type=positive_int, help="layers of the n_layers discriminator")),
    ("--ngf", "ngf", dict(type=positive_int, help="generator filters in the first conv")),
    ("--ndf", "ndf", dict(type=positive_int, help="discriminator filters in the first conv")),
    ("--norm", "norm", dict(choices=NORM_LAYERS, help="normalisation layers")),
    ("--lambda-A", "lambda_A", dict(type=nonneg_float, help="cycle loss weight A->B->A")),
    ("--lambda-B", "lambda_B", dict(type=nonneg_float, help="cycle loss weight B->A->B")),
    ("--lambda-identity", "lambda_identity", dict(type=nonneg_float, help="identity loss weight (x lambda); 0 disables")),
    ("--pool-size", "pool_size", dict(type=nonneg_int, help="image history pool size; 0 disables")),
    *GAN_FLAGS,
    ("--lr-d", "lr_d", dict(type=nonneg_float, help="discriminator learning rate (two time-scale rule); "
                                                   "None: --lr")),
    ("--ema", "ema_decay", dict(type=ema_decay, help="decay of the generators' weight average used for "
                                                     "inference and export, e.g. 0.999; 0 = off")),
    ("--diffaug", "diffaug", dict(help='DiffAugment of every discriminator input: comma-separated subset '
                                       'of color,translation,cutout; "" = off')),
    ("--r1-gamma", "r1_gamma", dict(type=nonneg_float, help="R1 penalty weight on real images; 0 = off")),
]


def _add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a CycleGAN on two unpaired image folders",
                       description="Train a CycleGAN on unpaired folders. Defaults are the paper's (ResNet-9 at "
                                   "256 px, 70x70 PatchGAN, batch 1, Adam 2e-4, 100 + 100 epochs, cycle 10, "
                                   "identity 0.5, pool 50) with two changes that measured better "
                                   "(docs/quality.md): the hinge loss instead of LSGAN and an EMA of the "
                                   "generators for inference. --preset paper is the original recipe exactly.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    tdef, mdef = _defaults(TrainConfig), _defaults(CycleGANConfig)
    data = p.add_argument_group("data and run")
    for flag, field, kw in _TRAIN_FLAGS:
        data.add_argument(flag, dest=f"train.{field}", default=None, **{**kw, "help": f"{kw['help']} [{tdef[field]}]"})
    for flag, field, value, text in _TRAIN_SWITCHES:
        data.add_argument(flag, dest=f"train.{field}", action="store_const", const=value, default=None, help=text)
    data.add_argument("--resume", action="store_true",
                      help="continue RUNS_DIR/NAME from its latest checkpoint (its stored settings win, "
                           "except max-iters, save/log/preview intervals, device and workers)")
    model = p.add_argument_group("model and objective")
    for flag, field, kw in _MODEL_FLAGS:
        model.add_argument(flag, dest=f"model.{field}", default=None,
                           **{**kw, "help": f"{kw['help']} [{mdef[field]}]"})
    model.add_argument("--dropout", dest="model.dropout", action="store_const", const=True, default=None,
                       help="dropout 0.5 in the generators")
    model.add_argument("--spectral-norm", dest="model.spectral_norm", action=argparse.BooleanOptionalAction,
                       default=None, help=f"spectral normalisation in the discriminators [{mdef['spectral_norm']}]")
    model.add_argument("--preset", choices=tuple(PRESETS),
                       help="start from a named recipe (paper: the original release's, exactly; see "
                            "docs/quality.md); flags given explicitly still win [our defaults]")
    p.set_defaults(func=_cmd_train)


def _given(args: argparse.Namespace, prefix: str) -> dict:
    return {k.split(".", 1)[1]: v for k, v in vars(args).items() if k.startswith(prefix + ".") and v is not None}


def train_configs(args: argparse.Namespace) -> tuple[CycleGANConfig, TrainConfig]:
    """The configs a ``train`` command line resolves to: preset, then the flags given."""
    m, t = resolve_preset(args.preset, _given(args, "model"), _given(args, "train"))
    if "input_nc" in m:
        m["output_nc"] = m["input_nc"]
    if "netG" not in _given(args, "model") and (t.get("size") or 256) <= 128:
        m["netG"] = "resnet_6blocks"  # the paper's choice for 128x128 images
    return CycleGANConfig(**m), TrainConfig(**t)


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import train_cyclegan

    model_cfg, train_cfg = train_configs(args)
    train_cyclegan(model_cfg, train_cfg, resume=args.resume, runtime_overrides=_given(args, "train"))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    if args.format != "safetensors":  # onnx / torchscript: any generator source, see cyclegan.export
        from .export import run_export

        return run_export(args)
    from .checkpoint import load_checkpoint
    from .cyclegan import CycleGAN
    from .train import export_cyclegan

    run = Path(args.run)
    ckpt = run / "checkpoints" / "latest.pt" if run.is_dir() else run
    state = load_checkpoint(ckpt)
    model = CycleGAN(CycleGANConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["model"])
    train_cfg = TrainConfig.from_dict(state["train_config"])
    out = Path(args.output) if args.output else (run if run.is_dir() else run.parent.parent) / "generators.safetensors"
    export_cyclegan(model, train_cfg, out)
    print(out)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cyclegan", description="Unpaired image-to-image translation (CycleGAN).")
    parser.add_argument("--version", action="version", version=f"cyclegan {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_train_parser(sub)

    e = sub.add_parser("export", help="write a run's generators to safetensors (config inside), ONNX or TorchScript",
                       description="Export G_A and G_B of a run (or one checkpoint file) for inference. "
                                   "onnx and torchscript write one checked file per direction and also take a "
                                   "safetensors export or an original-release .pth.")
    e.add_argument("run", help="run folder (RUNS_DIR/NAME) or checkpoint .pt file (onnx/torchscript: also "
                               "generators.safetensors or a .pth)")
    e.add_argument("--output", "-o", help="output file [RUN/generators.safetensors; onnx/torchscript: "
                                          "RUN/generator_AtoB.onnx and _BtoA, or a folder for both]")
    e.add_argument("--format", choices=("safetensors", "onnx", "torchscript"), default="safetensors",
                   help="safetensors: both generators + config for translate and the app; onnx: checked with "
                        "onnxruntime, dynamic batch/height/width; torchscript: for torch.jit.load [safetensors]")
    e.add_argument("--direction", choices=("AtoB", "BtoA"), help="onnx/torchscript: only this generator [both]")
    e.add_argument("--opset", type=int, help="onnx: opset version [the exporter's default]")
    e.add_argument("--static", action="store_true", help="onnx: fixed 1 x SIZE x SIZE input instead of dynamic axes")
    e.add_argument("--size", type=image_size, help="side of the example/check input [the training size]")
    e.add_argument("--no-check", action="store_true", help="onnx/torchscript: skip the check against PyTorch")
    from .translate import add_architecture_args

    add_architecture_args(e)
    e.set_defaults(func=_cmd_export)

    from .bench import add_bench_args

    b = sub.add_parser("bench", help="measure training speed, memory and FLOPs on synthetic data",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_bench_args(b)
    b.set_defaults(func=_cmd_bench)

    from .translate import add_translate_commands

    add_translate_commands(sub)

    from .download import add_download_commands

    add_download_commands(sub)

    from .evaluate import add_eval_commands

    add_eval_commands(sub)

    from .mnist_cli import add_mnist_commands

    add_mnist_commands(sub)

    from .app_logic import add_app_command

    add_app_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .checkpoint import CheckpointError
    from .data import DataError
    from .train import TrainingDiverged

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
    except (DataError, CheckpointError, TrainingDiverged, ValueError) as e:
        # Problems with the user's input: one clear line, no traceback.
        print(f"cyclegan {args.command}: error: {e}", file=sys.stderr)
        return 2 if not isinstance(e, TrainingDiverged) else 3
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
