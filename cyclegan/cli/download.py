"""``cyclegan download``: argparse only; the work is in cyclegan.inference.download."""

from __future__ import annotations

import argparse
from pathlib import Path

from cyclegan.data.images import DataError
from cyclegan.core.argtypes import positive_int
from cyclegan.inference.download import (BASE_URL, BASE_URL_ENV, CITYSCAPES_STEPS, DATASETS, MAX_DATASET_MB,
                                         MAX_WEIGHTS_MB, PIX2PIX_BASE_URL, PIX2PIX_DATASETS, download_dataset,
                                         download_weights, prepare_cityscapes)

__all__ = ["add_download_commands"]


# --------------------------------------------------------------------------------------------
# The `cyclegan download` command
# --------------------------------------------------------------------------------------------


def _cmd_download(args: argparse.Namespace) -> int:
    from cyclegan.inference.sources import PUBLISHED_GENERATORS, PUBLISHED_PIX2PIX

    if args.kind == "list":
        for title, table in (("CycleGAN data sets (cyclegan download dataset NAME)", DATASETS),
                             ("pix2pix data sets, aligned A|B (cyclegan download dataset NAME)", PIX2PIX_DATASETS)):
            print(f"{title}:")
            for name, text in table.items():
                print(f"  {name:28s} {text}")
        for title, models in (("published CycleGAN generators (cyclegan download weights NAME)", PUBLISHED_GENERATORS),
                              ("published pix2pix generators (cyclegan download weights NAME)", PUBLISHED_PIX2PIX)):
            print(f"{title}:")
            for name, reverse in models.items():
                print(f"  {name:28s} {'reverse: ' + reverse if reverse else ''}".rstrip())
        return 0
    if not args.name:
        raise DataError(f"cyclegan download {args.kind} needs a NAME; `cyclegan download list` shows them")
    if args.kind == "dataset":
        if args.name == "cityscapes" and (args.gtfine or args.leftimg8bit):
            if not (args.gtfine and args.leftimg8bit):
                raise DataError("cityscapes needs both --gtfine and --leftimg8bit")
            out = prepare_cityscapes(args.gtfine, args.leftimg8bit, Path(args.root or "datasets") / "cityscapes")
        else:
            out = download_dataset(args.name, args.root or "datasets", base=args.base_url, force=args.force,
                                   keep_zip=args.keep_zip, sha256=args.sha256, progress=not args.no_progress,
                                   max_mb=args.max_size)
        print(out)
        return 0
    out = download_weights(args.name, args.root or "checkpoints", base=args.base_url, force=args.force,
                           sha256=args.sha256, progress=not args.no_progress, max_mb=args.max_size)
    print(out)
    return 0


def add_download_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``cyclegan download {dataset,weights,list}``."""
    p = sub.add_parser(
        "download",  # its one-line help: cyclegan.cli.main.COMMANDS
        description="Download from the original release's servers (resumable; the size, and a SHA-256 if given, "
                    f"is checked): {BASE_URL} for CycleGAN, {PIX2PIX_BASE_URL} for the pix2pix_* names. "
                    f"--base-url or ${BASE_URL_ENV} points at a mirror holding both layouts.",
        epilog=CITYSCAPES_STEPS, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=("dataset", "weights", "list"),
                   help="dataset: into ROOT/NAME; weights: into ROOT/NAME_pretrained/latest_net_G.pth; list: names")
    p.add_argument("name", nargs="?", help="e.g. horse2zebra, pix2pix_facades, pix2pix_edges2shoes "
                                           "(see `cyclegan download list`)")
    p.add_argument("--root", help="folder to download into [datasets for data sets, checkpoints for weights]")
    p.add_argument("--base-url", help=f"server to download from [${BASE_URL_ENV} or {BASE_URL}]")
    p.add_argument("--sha256", help="expected SHA-256 of the downloaded file (checked when given)")
    p.add_argument("--force", action="store_true", help="download again even if the target exists")
    p.add_argument("--max-size", type=positive_int, metavar="MB",
                   help=f"refuse a download larger than this [{MAX_DATASET_MB} for data sets, {MAX_WEIGHTS_MB} for weights]")
    p.add_argument("--keep-zip", action="store_true", help="keep the data set's zip file after extracting it")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--gtfine", help="cityscapes: the unzipped gtFine folder of the official download")
    p.add_argument("--leftimg8bit", help="cityscapes: the unzipped leftImg8bit folder of the official download")
    p.set_defaults(func=_cmd_download)
