"""``cyclegan translate``: argparse only; the work is in cyclegan.inference."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from cyclegan.core.argtypes import int_between
from cyclegan.core.distributed import DistInfo, device_for, launched_by_torchrun, process_group
from cyclegan.core.argtypes import nonneg_int as _nonneg
from cyclegan.core.argtypes import positive_int as _positive
from cyclegan.models import networks
from cyclegan.data.images import DataError
from cyclegan.inference.folder import OUTPUT_FORMATS, plan_jobs, translate_folder
from cyclegan.inference.loading import DIRECTIONS, TEST_MODES, LoadedGenerator, load_generator
from cyclegan.core.fastpath import PRECISION_CHOICES
from cyclegan.inference.translator import Translator
from cyclegan.inference.video import DEFAULT_CRF, is_video, translate_video

__all__ = ["add_translate_commands"]


# --------------------------------------------------------------------------------------------
# The `cyclegan translate` command
# --------------------------------------------------------------------------------------------


_quality = int_between(1, 100, "a JPEG/WebP quality")


def _smoothing(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return value


_crf = int_between(0, 51, "a video quality (CRF: 0 lossless, 51 worst)")


def add_architecture_args(p: argparse.ArgumentParser) -> None:
    """Flags for .pth weights, which carry no config (ignored for our own files)."""
    g = p.add_argument_group("architecture of .pth weights (our checkpoints and exports carry theirs)")
    g.add_argument("--netG", choices=tuple(networks.GENERATORS),
                   help="generator architecture [published models: resnet_9blocks; otherwise read off the weights]")
    g.add_argument("--ngf", type=_positive, help="filters in the first conv [64]")
    g.add_argument("--norm", choices=networks.NORM_LAYERS, help="normalisation layers [instance]")
    g.add_argument("--channels", type=int, choices=(1, 3), help="1 for grayscale, 3 for RGB [3]")
    g.add_argument("--dropout", action="store_const", const=True, default=None,
                   help="the generator was built with dropout (changes parameter names)")


def architecture_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in ("netG", "ngf", "norm", "channels", "dropout")
            if getattr(args, k, None) is not None}


def add_model_args(p: argparse.ArgumentParser, direction_help: str) -> None:
    p.add_argument("--model", "-m", required=True,
                   help="run folder (runs/NAME), checkpoint .pt, generators.safetensors, original-release "
                        ".pth, a name looked up in --runs-dir and --checkpoints-dir, a bundled model (demo), or "
                        "hf:USER/REPO[@REVISION] on the Hugging Face Hub (an existing local path always wins)")
    p.add_argument("--direction", choices=DIRECTIONS, default=None, help=direction_help)
    p.add_argument("--runs-dir", default="runs", help="where bare --model names are looked up [runs]")
    p.add_argument("--checkpoints-dir", default="checkpoints",
                   help="where downloaded published weights live: DIR/NAME_pretrained/latest_net_G.pth [checkpoints]")


def add_runtime_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("how to run the generator")
    g.add_argument("--full-res", action="store_true",
                   help="translate at the input's own size (padded to the generator's multiple and cropped "
                        "back) instead of resizing to the training size")
    g.add_argument("--size", type=_positive,
                   help="resize inputs to SIZE x SIZE [the size the model was trained at; 256 for .pth]")
    g.add_argument("--tile", type=_nonneg, default=1024,
                   help="memory cap: at most TILE x TILE pixels per forward pass; larger images run in "
                        "overlapping tiles with whole-image normalisation statistics (0: no cap) [1024]")
    g.add_argument("--tile-overlap", type=_nonneg, default=64,
                   help="context each tile sees beyond its share of the image, in pixels [64]")
    g.add_argument("--batch-size", type=_positive, default=4, help="images per forward pass [4]")
    g.add_argument("--workers", type=_nonneg, default=min(4, os.cpu_count() or 1),
                   help="threads decoding images while the network runs [min(4, cores)]")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps [auto]")
    g.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                   help="autocast dtype; auto = bf16 on CUDA and on CPUs with AMX, fp32 elsewhere (printed before "
                        "the run) [auto]")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the generator (falls back to eager on failure) [auto: off; compiling "
                        "each image size costs more than it saves on a folder]")
    g.add_argument("--winograd", action=argparse.BooleanOptionalAction, default=None,
                   help="Winograd F(4x4,3x3) for the residual blocks' convolutions: 1.2-1.5x faster on a CPU "
                        "in fp32, results equal to ~1e-6 [on for CPU fp32, off elsewhere]")
    g.add_argument("--test-mode", choices=TEST_MODES, default=None,
                   help="eval: batch norm from its running statistics and no dropout (torch's eval mode); "
                        "reference: batch statistics of each image and active dropout, as the original "
                        "release's test.py without --eval, which made its published pix2pix results [reference "
                        "for the published pix2pix_* models, eval for everything else]")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def _cmd_translate(args: argparse.Namespace) -> int:
    if (args.input is None) == (args.input_flag is None):
        raise DataError("give one input: `cyclegan translate INPUT ...` or --input INPUT")
    args.input = args.input or args.input_flag
    sharded = launched_by_torchrun()
    if sharded and is_video(args.input):
        raise DataError(f"--input {args.input}: a video is translated by one process; run it without torchrun")
    # Under torchrun every rank checks the model and the input before any of them joins the process
    # group (a bad flag fails on each alike instead of leaving the others waiting); each on its device.
    device = device_for(args.device, int(os.environ.get("LOCAL_RANK", 0))) if sharded else args.device
    generator = load_generator(args.model, args.direction, arch=architecture_overrides(args),
                               runs_dir=args.runs_dir, checkpoints_dir=args.checkpoints_dir)
    translator = Translator(generator, device=device, precision=args.precision, full_res=args.full_res,
                            size=args.size, tile=args.tile, tile_overlap=args.tile_overlap, winograd=args.winograd,
                            compile=args.compile, test_mode=args.test_mode)
    if sharded:
        jobs = plan_jobs(args.input, args.output, args.format)
        with process_group(args.device) as me:
            return _translate_sharded(args, jobs, me, translator)
    if is_video(args.input):
        return _translate_video(args, generator, translator)
    jobs = plan_jobs(args.input, args.output, args.format)
    mode = "full resolution" if args.full_res else f"resized to {translator.size}x{translator.size}"
    print(f"{generator.describe()}\non {translator.device} ({translator.fast_path.describe()}), {mode}: "
          f"{len(jobs)} image(s) -> {args.output}", file=sys.stderr)
    summary = translate_folder(translator, args.input, args.output, fmt=args.format, batch_size=args.batch_size,
                               workers=args.workers, quality=args.quality, side_by_side=args.side_by_side,
                               overwrite=args.overwrite, html=not args.no_html, progress=not args.no_progress,
                               jobs=jobs)
    if summary.index:
        print(f"index: {summary.index}", file=sys.stderr)
    print(summary.describe(), file=sys.stderr)
    return 0 if summary.ok else 1


def _translate_sharded(args: argparse.Namespace, jobs: list, me: DistInfo, translator: Translator) -> int:
    """Under torchrun: this rank's share of the folder; rank 0 prints for all (inference.sharded)."""
    from cyclegan.inference.folder import write_index_html
    from cyclegan.inference.sharded import translate_sharded

    generator = translator.generator
    if me.is_main:
        mode = "full resolution" if args.full_res else f"resized to {translator.size}x{translator.size}"
        print(f"{generator.describe()}\n{me.world_size} processes, rank 0 on {translator.device} "
              f"({translator.fast_path.describe()}), {mode}: {len(jobs)} image(s) -> {args.output}", file=sys.stderr)
    summary = translate_sharded(translator, jobs, me, batch_size=args.batch_size, workers=args.workers,
                                fmt=args.format, quality=args.quality, side_by_side=args.side_by_side,
                                overwrite=args.overwrite, progress=not args.no_progress)
    if me.is_main:
        if Path(args.input).is_dir() and not args.no_html:
            index = write_index_html(Path(args.output) / "index.html", jobs,
                                     f"{generator.name} ({generator.direction or 'translation'})", generator.describe())
            print(f"index: {index}", file=sys.stderr)
        print(summary.describe(), file=sys.stderr)
    return 0 if summary.ok else 1


def _translate_video(args: argparse.Namespace, generator: LoadedGenerator, translator: Translator) -> int:
    """``cyclegan translate clip.mp4 --output OUT``: OUT is a video file name, or a folder that
    gets the clip's name."""
    source, output = Path(args.input), Path(args.output)
    if not is_video(output):
        output = output / source.name
    mode = "full resolution" if translator.full_res else f"frames resized to {translator.size}x{translator.size}"
    smooth = f", smoothing {args.smooth}" if args.smooth else ""
    print(f"{generator.describe()}\non {translator.device} ({translator.fast_path.describe()}), {mode}{smooth}: "
          f"{source} -> {output}", file=sys.stderr)
    summary = translate_video(translator, source, output, smoothing=args.smooth, crf=args.crf,
                              batch_size=args.batch_size, overwrite=args.overwrite, progress=not args.no_progress)
    print(summary.describe(), file=sys.stderr)
    return 0


def add_translate_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``cyclegan translate``."""
    p = sub.add_parser(
        "translate",  # its one-line help: cyclegan.cli.main.COMMANDS
        description="Translate one image, a folder (recursively; the folder structure is mirrored in the "
                    "output) or a video. Existing outputs are skipped unless --overwrite, so a killed run resumes; "
                    "unreadable inputs are reported and skipped, and make the exit status 1. A video is translated "
                    "frame by frame into a video of the same size, frame rate and audio; an interrupted "
                    "run resumes from the frames it translated.")
    add_model_args(p, "AtoB uses G_A, BtoA uses G_B [AtoB]; a published .pth is one direction already")
    p.add_argument("input", nargs="?", metavar="INPUT", help="the same as --input")
    p.add_argument("--input", "-i", dest="input_flag", metavar="INPUT",
                   help="an image file, a folder of images, or a video (.mp4, .mov, .mkv, .webm, ...)")
    p.add_argument("--output", "-o", required=True,
                   help="output folder (or, for one input file, a file name with an image suffix)")
    out = p.add_argument_group("outputs")
    out.add_argument("--format", choices=OUTPUT_FORMATS, help="output image format [png, or the --output suffix]")
    out.add_argument("--quality", type=_quality, default=95, help="JPEG/WebP quality [95]")
    out.add_argument("--side-by-side", action="store_true", help="write input and output next to each other")
    out.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")
    out.add_argument("--no-html", action="store_true", help="no index.html page in the output folder")
    vid = p.add_argument_group("videos (INPUT clip.mp4: every frame translated; frame size, rate and audio kept)")
    vid.add_argument("--smooth", type=_smoothing, default=0.0,
                     help="temporal smoothing: blend each output frame with the previous one by this weight, "
                          "0 <= S < 1; less flicker, more ghosting behind moving things (0: off) [0]")
    vid.add_argument("--crf", type=_crf, default=DEFAULT_CRF,
                     help=f"video quality, 0 (lossless) to 51 (worst) [{DEFAULT_CRF}]")
    add_runtime_args(p)
    add_architecture_args(p)
    p.set_defaults(func=_cmd_translate)
