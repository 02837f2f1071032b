"""``cyclegan mnist ...``: train, sample, interpolate, eval, classifier, bench.

Flags map one to one onto the fields of the run config tree (cyclegan.training.config, the
``mnist`` kind of cyclegan.training.kinds); what a user does not give comes from the kind's
defaults or, with --resume, from the run. Heavy modules are imported inside the commands so
``cyclegan --help`` stays fast.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from cyclegan.core.argtypes import image_size, nonneg_float, nonneg_int, positive_int
from cyclegan.core.checkpoint import write_json
from cyclegan.cli.flags import GAN_FLAGS, LOOP_FLAGS, LOOP_SWITCHES, add_flags, add_switches, given_values, with_help
from cyclegan.core.fastpath import PRECISIONS
from cyclegan.models.mnist import NOISE_DISTRIBUTIONS, MnistGANConfig
from cyclegan.data.mnist import TORCHVISION_DATASETS
from cyclegan.models.networks import LATENT_DISCRIMINATORS, LATENT_GENERATORS, NORM_LAYERS

# (flag, dataclass field, argparse kwargs); defaults stay None so we know what the user gave.
_DATA_FLAGS = [
    ("--dataset", "dataset", dict(choices=tuple(TORCHVISION_DATASETS),
                                  help="a torchvision dataset, read from --data-root (downloaded when missing)")),
    ("--idx-dir", "idx_dir", dict(help="folder with train-images-idx3-ubyte[.gz] (+ labels, + t10k-* held out)")),
    ("--image-dir", "image_dir", dict(help="folder of images (train/ and test/ subfolders = splits, "
                                           "subfolders of those = classes)")),
    ("--data-root", "data_root", dict(help="where --dataset is looked for and downloaded to")),
]
_RUN_FLAGS = [
    *with_help(LOOP_FLAGS, num_workers="DataLoader workers (the images are in memory)", seed="seed for init, data order, noise",
                precision="fp32, or bf16/fp16 autocast", preview_every="iterations between fixed-noise sample grids (0: off)",
                preview_count="samples in each preview grid"),
    ("--eval-samples", "eval_samples", dict(type=nonneg_int,
                                            help="generated images for FID/KID at the end (0: no evaluation)")),
    ("--classifier", "classifier", dict(help="classifier for the evaluation (default: the run's, the bundled "
                                             "one for the same data, or one trained at the end)")),
]
_RUN_SWITCHES = LOOP_SWITCHES
_MODEL_FLAGS = [
    ("--netG", "netG", dict(choices=tuple(LATENT_GENERATORS), help="generator: dcgan, or mlp (Goodfellow et al. 2014)")),
    ("--netD", "netD", dict(choices=tuple(LATENT_DISCRIMINATORS), help="discriminator")),
    ("--z-dim", "z_dim", dict(type=positive_int, help="latent dimensions")),
    ("--noise", "noise", dict(choices=NOISE_DISTRIBUTIONS, help="z ~ N(0, 1) or U(-1, 1)")),
    ("--channels", "channels", dict(type=int, choices=(1, 3), help="image channels (IDX data is grayscale)")),
    ("--image-size", "image_size", dict(type=image_size, help="image side (multiple of 4); data is resized to it")),
    ("--ngf", "ngf", dict(type=positive_int, help="generator width")),
    ("--ndf", "ndf", dict(type=positive_int, help="discriminator width")),
    ("--d-norm", "d_norm", dict(choices=("auto",) + NORM_LAYERS, help="D normalisation; auto: none for wgangp "
                                                                       "and the mlp D, else batch")),
    *GAN_FLAGS,
]


def _kind_defaults() -> dict:
    from cyclegan.training.kinds import KINDS

    return KINDS["mnist"].defaults_flat()


def _add_data_flags(group, defaults: dict) -> None:
    add_flags(group, _DATA_FLAGS, defaults)
    group.add_argument("--no-download", dest="run.download", action="store_const", const=False, default=None,
                       help="never download: fail if --dataset is not on disk")


def _model_config(args: argparse.Namespace) -> MnistGANConfig:
    """The model the model flags given resolve to, as ``mnist train`` would build it."""
    from cyclegan.training.kinds import resolve

    fields = MnistGANConfig.__dataclass_fields__
    return resolve("mnist", {k: v for k, v in given_values(args).items() if k in fields}).model


def _data_given(args: argparse.Namespace) -> dict:
    from cyclegan.data.mnist import DataSource

    return {k: v for k, v in given_values(args).items() if k in DataSource.__dataclass_fields__}


def _run_location(args: argparse.Namespace, t: dict) -> dict:
    """--out DIR is RUNS_DIR/NAME in one flag."""
    if args.out:
        if "name" in t or "runs_dir" in t:
            raise ValueError("--out DIR sets both the runs folder and the name; do not combine it with --name/--runs-dir")
        out = Path(args.out)
        t = {**t, "runs_dir": str(out.parent), "name": out.name}
    return t


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


def _cmd_train(args: argparse.Namespace) -> int:
    from cyclegan.training.kinds import resolve
    from cyclegan.training.run import run

    run(resolve("mnist", _run_location(args, given_values(args))), resume=args.resume)
    return 0


def _load_sampler(args: argparse.Namespace):
    from cyclegan.inference.mnist_sampler import LatentSampler
    from cyclegan.core.devices import pick_device

    sampler = LatentSampler.load(args.model, device=pick_device(args.device))
    print(f"generator: {sampler.path}", file=sys.stderr)
    return sampler


#: samples in one grid at most (32 x 32 images: a 962 x 962 PNG at 28 px); more is one run per seed
MAX_SAMPLES = 1024
#: pixels of one grid image at most, --scale included
MAX_GRID_PIXELS = 50_000_000


def _sample_count(text: str) -> int:
    value = positive_int(text)
    if value > MAX_SAMPLES:
        raise argparse.ArgumentTypeError(f"at most {MAX_SAMPLES} samples in one grid, got {value}; for more, "
                                         "run again with other --seed values")
    return value


def _cmd_sample(args: argparse.Namespace) -> int:
    from cyclegan.inference.mnist_sampler import save_grid

    sampler = _load_sampler(args)
    nrow = args.nrow or math.ceil(math.sqrt(args.n))
    cell = sampler.cfg.image_size + 2  # the grid's 2 px padding
    width, height = ((min(nrow, args.n) * cell + 2) * args.scale, (math.ceil(args.n / nrow) * cell + 2) * args.scale)
    if width * height > MAX_GRID_PIXELS:
        raise ValueError(f"the grid would be {width}x{height} pixels ({width * height / 1e6:.0f} MP; at most "
                         f"{MAX_GRID_PIXELS / 1e6:.0f} MP): lower --n, --nrow or --scale")
    images = sampler.sample(args.n, seed=args.seed)
    print(save_grid(images, args.out, nrow=nrow, scale=args.scale))
    return 0


def _cmd_interpolate(args: argparse.Namespace) -> int:
    from cyclegan.inference.mnist_sampler import save_grid

    sampler = _load_sampler(args)
    if args.dim is not None:
        images = sampler.walk(args.seeds[0], args.dim, args.steps, rows=args.rows, span=args.span)
    else:
        images = sampler.interpolate(args.seeds[0], args.seeds[1], args.steps, rows=args.rows, mode=args.mode)
    print(save_grid(images, args.out, nrow=args.steps, scale=args.scale))
    return 0


def _data_source(args: argparse.Namespace, recorded: dict | None):
    """The data flags if any were given, else the data the model was trained on."""
    from cyclegan.data.mnist import DataSource

    given = _data_given(args)
    if any(given.get(k) for k in ("dataset", "idx_dir", "image_dir")):
        return DataSource(**given)
    if recorded and any(recorded.get(k) for k in ("dataset", "idx_dir", "image_dir")):
        names = DataSource.__dataclass_fields__
        return DataSource(**{**{k: v for k, v in recorded.items() if k in names}, **given})
    raise ValueError("which data to compare with? This model does not record it: pass --dataset, --idx-dir or --image-dir")


def _cmd_eval(args: argparse.Namespace) -> int:
    from cyclegan.inference.mnist_sampler import EXPORT_NAME
    from cyclegan.inference.sources import resolve_location
    from cyclegan.training.mnist import evaluate, print_evaluation, resolve_classifier

    sampler = _load_sampler(args)
    cfg = sampler.cfg
    data = _data_source(args, sampler.meta.get("data")).load(cfg.channels, cfg.image_size)
    print(data.summary(), file=sys.stderr)
    run_dir = None
    if args.model is not None:  # a run folder (also one named by its run name), or a run's export
        path = resolve_location(args.model)
        run_dir = path if path.is_dir() else (path.parent if path.name == EXPORT_NAME else None)
    classifier, source = resolve_classifier(data, args.classifier, run_dir, sampler.device)
    report = evaluate(sampler, data, classifier, args.samples, seed=args.seed, device=sampler.device)
    report.update(model=str(sampler.path), classifier=source)
    print_evaluation(report, source, data.classes)
    if args.json:
        write_json(args.json, report)
    return 0


def _cmd_classifier(args: argparse.Namespace) -> int:
    from cyclegan.evaluation.classifier import save_classifier
    from cyclegan.data.mnist import DataSource
    from cyclegan.training.mnist import classifier_summary, fit_classifier
    from cyclegan.core.devices import pick_device

    data = DataSource(**_data_given(args)).load(args.channels, args.image_size)
    print(data.summary(), file=sys.stderr)
    model, meta = fit_classifier(data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                 width=args.width, seed=args.seed, device=pick_device(args.device))
    out = save_classifier(model, args.out, meta)
    print(f"{out}: {classifier_summary(meta)}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    """``cyclegan bench --model mnist --mode train`` with this command's flags: one harness times
    every model kind (cyclegan.bench.runner)."""
    from cyclegan.bench.runner import run_bench
    from cyclegan.cli.bench import add_bench_args

    cfg = _model_config(args)
    argv = ["--model", "mnist", "--mode", "train", "--size", str(cfg.image_size), "--channels-last", "off",
            "--batch-size", *map(str, args.batch_size), "--precision", args.precision, "--device", args.device,
            "--warmup", str(args.warmup), "--iters", str(args.iters), "--repeats", str(args.repeats),
            "--threads", str(args.threads), "--ngf", str(cfg.ngf), "--ndf", str(cfg.ndf)]
    parser = argparse.ArgumentParser(prog="cyclegan bench")
    add_bench_args(parser)
    bench_args = parser.parse_args([*argv, *(["--json", args.json] if args.json else [])])
    bench_args.model_settings = {k: v for k, v in given_values(args).items() if k in MnistGANConfig.__dataclass_fields__}
    return run_bench(bench_args)


# --------------------------------------------------------------------------------------------
# Parsers
# --------------------------------------------------------------------------------------------


def _model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", default=None,
                   help="run folder, generators.safetensors export, .pt checkpoint, a run name (runs/NAME) or a "
                        "bundled model (default: the bundled Fashion-MNIST generator, fashion_mnist_dcgan)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")


def add_mnist_commands(sub) -> None:
    """Add ``cyclegan mnist`` and its subcommands to the top-level subparsers ``sub``."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    mnist = sub.add_parser("mnist",  # its one-line help: cyclegan.cli.main.COMMANDS
                           description="Train and use a noise -> image GAN (DCGAN by default) on MNIST, "
                                       "Fashion-MNIST, IDX files or a folder of images.")
    msub = mnist.add_subparsers(dest="mnist_command", metavar="COMMAND")
    msub.required = True
    defaults = _kind_defaults()

    p = msub.add_parser("train", help="train a GAN", formatter_class=argparse.RawDescriptionHelpFormatter,
                        description="Train a noise -> image GAN. Defaults: DCGAN, non-saturating loss, "
                                    "Adam 2e-4 (beta1 0.5), batch 64, z ~ N(0, I) of 100 dims, 20 epochs.\n"
                                    "--gan-mode wgangp uses the paper's lr 1e-4, betas (0, 0.9), 5 D steps unless given.")
    data = p.add_argument_group("data")
    _add_data_flags(data, defaults)
    run = p.add_argument_group("run")
    run.add_argument("--out", help="run folder (same as --runs-dir PARENT --name NAME)")
    add_flags(run, _RUN_FLAGS, defaults)
    add_switches(run, _RUN_SWITCHES)
    run.add_argument("--resume", action="store_true",
                     help="continue the run from its latest checkpoint (its stored settings win, except "
                          "max-iters, intervals, device, workers and evaluation)")
    add_flags(p.add_argument_group("model and objective"), _MODEL_FLAGS, defaults)
    p.set_defaults(func=_cmd_train)

    p = msub.add_parser("sample", help="write a grid of samples", formatter_class=fmt)
    _model_arg(p)
    p.add_argument("--n", type=_sample_count, default=64, help=f"number of samples, at most {MAX_SAMPLES}")
    p.add_argument("--seed", type=int, default=0, help="noise seed (same seed, same images)")
    p.add_argument("--nrow", type=positive_int, default=None, help="images per row [ceil(sqrt(n))]")
    p.add_argument("--scale", type=positive_int, default=1, help="enlarge pixels by this factor")
    p.add_argument("--out", "-o", required=True, help="output image (.png)")
    p.set_defaults(func=_cmd_sample)

    p = msub.add_parser("interpolate", help="walk between two seeds, or along one latent dimension",
                        formatter_class=fmt)
    _model_arg(p)
    p.add_argument("--steps", type=positive_int, default=10, help="images per walk (one row)")
    p.add_argument("--seeds", type=int, nargs=2, default=[0, 1], metavar=("A", "B"), help="walk from seed A's z to seed B's")
    p.add_argument("--rows", type=positive_int, default=1, help="walks, one per row (the i-th z of each seed)")
    p.add_argument("--mode", choices=("auto", "slerp", "linear"), default="auto",
                   help="path between seeds (auto: slerp for normal noise, linear for uniform)")
    p.add_argument("--dim", type=nonneg_int, default=None,
                   help="instead: vary this latent dimension of seed A's z from -span to +span")
    p.add_argument("--span", type=nonneg_float, default=None, help="range of --dim [3 for normal noise, 1 for uniform]")
    p.add_argument("--scale", type=positive_int, default=1, help="enlarge pixels by this factor")
    p.add_argument("--out", "-o", required=True, help="output image (.png)")
    p.set_defaults(func=_cmd_interpolate)

    p = msub.add_parser("eval", help="FID, KID and classifier confidence of a generator", formatter_class=fmt,
                        description="Compare generated images with held-out real ones in the features of a small "
                                    "classifier trained on the same data. Without data flags, the data the "
                                    "model was trained on is used.")
    _model_arg(p)
    _add_data_flags(p.add_argument_group("data (default: what the model was trained on)"), defaults)
    p.add_argument("--classifier", help="classifier file (default: the run's, the bundled one for the same data, "
                                        "or one trained now)")
    p.add_argument("--samples", type=positive_int, default=10000, help="generated images")
    p.add_argument("--seed", type=int, default=0, help="noise seed of the generated images")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.set_defaults(func=_cmd_eval)

    p = msub.add_parser("classifier", help="train the small evaluation classifier", formatter_class=fmt,
                        description="Train the classifier whose features FID/KID use (and whose confidence is "
                                    "reported) on a dataset's training split; prints its held-out accuracy.")
    _add_data_flags(p.add_argument_group("data"), defaults)
    p.add_argument("--out", "-o", required=True, help="output .safetensors file")
    p.add_argument("--epochs", type=positive_int, default=3, help="passes over the training images")
    p.add_argument("--batch-size", type=positive_int, default=128, help="images per step")
    p.add_argument("--lr", type=nonneg_float, default=1e-3, help="Adam peak learning rate (one-cycle schedule)")
    p.add_argument("--width", type=positive_int, default=32, help="channels of the first conv")
    p.add_argument("--channels", type=int, choices=(1, 3), default=1, help="image channels")
    p.add_argument("--image-size", type=image_size, default=28, help="image side")
    p.add_argument("--seed", type=int, default=0, help="seed")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    p.set_defaults(func=_cmd_classifier)

    p = msub.add_parser("bench", help="training speed on synthetic images", formatter_class=fmt,
                        description="Iterations and images per second of the real training step on synthetic "
                                    "data; record the figures, command and machine in docs/benchmarks.md.")
    p.add_argument("--batch-size", type=positive_int, nargs="+", default=[64, 128], help="one or more batch sizes")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="autocast precision")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    p.add_argument("--warmup", type=nonneg_int, default=3, help="untimed steps first")
    p.add_argument("--iters", type=positive_int, default=20, help="timed steps per repeat")
    p.add_argument("--repeats", type=positive_int, default=3, help="repeats; the median is reported")
    p.add_argument("--threads", type=nonneg_int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--json", help="also write the results to this JSON file")
    add_flags(p.add_argument_group("model (as for train)"), _MODEL_FLAGS, defaults)
    p.set_defaults(func=_cmd_bench)
