"""``cyclegan push RUN USER/REPO``: argparse only; the work is in :mod:`cyclegan.inference.hub`."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_push_command"]


def _cmd_push(args: argparse.Namespace) -> int:
    from cyclegan.inference.publish import push_to_hub

    result = push_to_hub(args.run, args.repo, folder=args.folder, private=args.private, revision=args.revision,
                         dry_run=args.dry_run, samples=args.samples)
    print(result.describe(), file=sys.stderr)
    print(f"use it: cyclegan translate --model hf:{args.repo}{'@' + args.revision if args.revision else ''} "
          "--input IN --output OUT", file=sys.stderr)
    return 0


def add_push_command(sub: argparse._SubParsersAction) -> None:
    """Register ``cyclegan push``."""
    p = sub.add_parser(
        "push", help="share a trained model on the Hugging Face Hub (generators, config, model card, samples)",
        description="Write a Hub-ready folder for RUN (generators.safetensors with the model config, config.json, "
                    "a model card README.md with what was trained, on what, for how long, the evaluation figures "
                    "saved in the run, a strip of sample translations and the command to use it) and upload it "
                    "to the model repo USER/REPO with huggingface_hub. Uploading needs your token (`hf auth login` "
                    "or HF_TOKEN); HF_ENDPOINT points it at another Hub.")
    p.add_argument("run", metavar="RUN", help="run folder (runs/NAME), checkpoint .pt or generators.safetensors")
    p.add_argument("repo", metavar="USER/REPO", help="the model repo on the Hub (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its setting)")
    p.add_argument("--revision", help="upload to this branch (created from main if missing) [main]")
    p.add_argument("--dry-run", action="store_true", help="write the folder only; upload nothing")
    p.add_argument("--folder", help="where the Hub-ready folder is written [RUN/hub]")
    p.add_argument("--samples", help="an image or folder of A images for the card's sample strip [the run's "
                                     "dataroot/testA, else its A training images]")
    p.set_defaults(func=_cmd_push)
