"""``cyclegan eval``: argparse only; the work is in cyclegan.evaluation."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
import numpy as np

from cyclegan.core.checkpoint import write_json
from cyclegan.data.images import DataError, find_images
from cyclegan.evaluation.metrics import frechet_distance, kernel_distance
from cyclegan.inference.loading import DIRECTIONS, load_generator
from cyclegan.inference.translator import Translator
from cyclegan.cli.translate import add_architecture_args, architecture_overrides
from cyclegan.core.devices import pick_device
from cyclegan.core.distributed import device_for, gather_objects, launched_by_torchrun, process_group
from cyclegan.inference.sharded import share_of
from cyclegan.evaluation.fid import cycle_errors, folder_features, load_feature_extractor

__all__ = ["add_eval_commands"]


# -- the `cyclegan eval` command ---------------------------------------------------------------


def _cmd_fid(args: argparse.Namespace) -> int:
    extractor = load_feature_extractor(args.features, args.device, args.inception_weights)
    common = dict(image_size=args.image_size, batch_size=args.batch_size, workers=args.workers,
                  progress=not args.no_progress)
    real, bad_real = folder_features(args.real, extractor, **common)
    fake, bad_fake = folder_features(args.fake, extractor, **common)
    if real.shape[1] != fake.shape[1]:
        raise DataError(f"the two folders gave {real.shape[1]}- and {fake.shape[1]}-dimensional features; "
                        "pass --image-size so every image reaches the extractor at one size")
    fid = frechet_distance(real, fake)
    kid, kid_std = kernel_distance(real, fake, subsets=args.kid_subsets, subset_size=args.kid_subset_size)
    dims = real.shape[1]
    result = {"fid": fid, "kid": kid, "kid_std": kid_std, "real": str(args.real), "fake": str(args.fake),
              "n_real": real.shape[0], "n_fake": fake.shape[0], "features": extractor.name, "dims": dims,
              "unreadable": [str(p) for p, _ in bad_real + bad_fake]}
    print(f"FID {fid:.4f}  KID {kid:.5f} ± {kid_std:.5f}  ({real.shape[0]} real, {fake.shape[0]} fake images; "
          f"{extractor.name}, {dims} dims)")
    if min(real.shape[0], fake.shape[0]) <= dims:
        print(f"note: fewer images than feature dimensions ({dims}): FID is biased upwards; compare only "
              "numbers computed on the same image counts (KID is unbiased)", file=sys.stderr)
    if args.json:
        write_json(args.json, result)
    unreadable = bad_real + bad_fake
    if unreadable:
        print(f"{len(unreadable)} unreadable image(s) skipped", file=sys.stderr)
    return 0 if not unreadable else 1


def _cmd_cycle(args: argparse.Namespace) -> int:
    direction = args.direction or "AtoB"
    reverse_direction = "BtoA" if direction == "AtoB" else "AtoB"
    arch = architecture_overrides(args)
    g = load_generator(args.model, args.direction, arch=arch, runs_dir=args.runs_dir,
                       checkpoints_dir=args.checkpoints_dir)
    if args.reverse:
        f = load_generator(args.reverse, None, arch=arch, runs_dir=args.runs_dir, checkpoints_dir=args.checkpoints_dir)
    elif g.direction is None:
        raise DataError(f"{g.source} holds one generator; pass --reverse with the opposite direction's weights "
                        "(e.g. zebra2horse.pth for horse2zebra.pth)")
    else:
        f = load_generator(args.model, reverse_direction, runs_dir=args.runs_dir, checkpoints_dir=args.checkpoints_dir)
    kw = dict(device=args.device, precision=args.precision, full_res=args.full_res, size=args.size, tile=args.tile,
              tile_overlap=args.tile_overlap, winograd=args.winograd)
    sharded = launched_by_torchrun()  # each rank its share of the images, on its own device; rank 0 reports
    if sharded:
        kw["device"] = device_for(args.device, int(os.environ.get("LOCAL_RANK", 0)))
    forward = Translator(g, **kw)
    backward = Translator(f, **{**kw, "device": forward.device, "full_res": True})  # already at the right size
    if not sharded:
        errors, failed = cycle_errors(forward, backward, args.input, batch_size=args.batch_size, workers=args.workers,
                                      progress=not args.no_progress)
        return _report_cycle(args, g, f, errors, failed)
    files = find_images(args.input)  # sorted: the same list on every rank
    with process_group(args.device) as me:
        errors, failed = cycle_errors(forward, backward, args.input, batch_size=args.batch_size,
                                      workers=args.workers, progress=not args.no_progress and me.is_main,
                                      files=share_of(files, me.rank, me.world_size))
        parts = gather_objects((errors, failed), me.world_size)
        errors = {k: v for part, _ in parts for k, v in part.items()}
        failed = [x for _, fails in parts for x in fails]
        if not me.is_main:
            return 0 if not failed else 1
        return _report_cycle(args, g, f, dict(sorted(errors.items())), failed)


def _report_cycle(args: argparse.Namespace, g, f, errors: dict[str, float], failed: list) -> int:
    if not errors:
        raise DataError(f"--input {args.input}: no readable images ({len(failed)} unreadable)")
    values = np.array(list(errors.values()))
    worst = max(errors, key=errors.get)
    print(f"cycle L1 {g.direction or g.name} then back, over {len(values)} images ([-1, 1] units): "
          f"mean {values.mean():.5f}, median {np.median(values):.5f}, max {values.max():.5f} ({worst})")
    if args.json:
        write_json(args.json, {"mean": float(values.mean()), "median": float(np.median(values)),
                                "max": float(values.max()), "n": len(values), "model": str(g.source),
                                "reverse": str(f.source), "per_image": errors,
                                "unreadable": [str(p) for p, _ in failed]})
    return 0 if not failed else 1


def _cmd_domains(args: argparse.Namespace) -> int:
    from cyclegan.evaluation.domains import format_table, evaluate_domains

    result = evaluate_domains(
        args.model, args.dataroot, classifier=args.classifier, classifier_size=args.classifier_size, seed=args.seed,
        size=args.size, limit=args.limit, batch_size=args.batch_size, device=args.device, precision=args.precision,
        subset_size=args.subset_size, kid_subsets=args.kid_subsets, max_train=args.max_train, epochs=args.epochs,
        strip=args.strip, runs_dir=args.runs_dir, checkpoints_dir=args.checkpoints_dir, workers=args.workers)
    acc = ", ".join(f"test{d} {v:.1%}" for d, v in result["test_accuracy"].items())
    print(f"model {result['model']} at {result['size']} px; domain classifier {result['classifier'] or '(not saved)'} "
          f"({'trained now' if result['classifier_trained_now'] else 'cached'}, {result['classifier_size']} px, "
          f"accuracy {acc}); {result['n_test']['A']} testA and {result['n_test']['B']} testB images")
    print(format_table(result))
    print("untranslated: the input images judged as if translated. real target: hit rate of the real target test "
          "images; FID/KID of as many real target training images vs the test set (the floor).")
    if args.json:
        write_json(args.json, result)
    if "strip" in result:
        print(f"wrote {result['strip']}")
    if result["unreadable"]:
        print(f"{len(result['unreadable'])} unreadable image(s) skipped", file=sys.stderr)
    return 0 if not result["unreadable"] else 1


def _cmd_domain_classifier(args: argparse.Namespace) -> int:
    from cyclegan.evaluation.classifier import extract
    from cyclegan.evaluation.domain_classifier_cache import domain_classifier
    from cyclegan.evaluation.domain_images import DOMAINS, detect_channels, read_images, stack_images

    device = pick_device(args.device)
    channels = args.channels or detect_channels(args.dataroot)
    model, info = domain_classifier(args.dataroot, channels, size=args.classifier_size, seed=args.seed,
                                    max_train=args.max_train, epochs=args.epochs, force=args.force, device=device,
                                    workers=args.workers)
    print(f"domain classifier {info.path or '(not saved)'}: {'trained now' if info.trained_now else 'cached'}, "
          f"{channels} channel(s), {args.classifier_size} px, seed {args.seed}"
          + ("" if info.trained_now or args.force else " (--force retrains)"))
    for label, domain in enumerate(DOMAINS):
        folder = Path(args.dataroot) / f"test{domain}"
        if not folder.is_dir():
            print(f"test{domain}: no {folder}, accuracy not measured")
            continue
        images, _, _ = read_images(find_images(folder), channels, args.classifier_size, args.workers)
        if not images:
            print(f"test{domain}: no readable images in {folder}")
            continue
        probs = extract(model, stack_images(images), device=device)[1]
        print(f"test{domain}: accuracy {float((probs.argmax(1) == label).float().mean()):.2%} "
              f"({len(images)} images)")
    return 0


def _cmd_paired(args: argparse.Namespace) -> int:
    from cyclegan.evaluation.paired import find_test_pairs, score_pairs

    g = load_generator(args.model, args.direction, arch=architecture_overrides(args), runs_dir=args.runs_dir,
                       checkpoints_dir=args.checkpoints_dir)
    translator = Translator(g, device=args.device, precision=args.precision, size=args.size, compile=args.compile,
                            winograd=args.winograd, test_mode=args.test_mode)
    pairs = find_test_pairs(args.dataroot, args.phase)
    if args.limit:
        pairs = pairs[:args.limit]
    scores = score_pairs(translator, pairs, g.direction or "AtoB", output=args.output, progress=not args.no_progress)
    print(f"L1 {scores.l1:.4f}  PSNR {scores.psnr:.2f} dB  SSIM {scores.ssim:.4f}  ({scores.n} pairs of "
          f"{args.dataroot}/{args.phase}; {g.direction or 'AtoB'}, {translator.size} px, test mode {translator.test_mode})")
    if args.output:
        print(f"translations in {args.output}: `cyclegan eval fid --real <ground truth folder> --fake {args.output}`")
    if args.json:
        write_json(args.json, {**scores.to_dict(), "model": str(args.model), "dataroot": str(args.dataroot),
                               "phase": args.phase, "size": translator.size, "test_mode": translator.test_mode})
    if scores.skipped:
        print(f"{len(scores.skipped)} unreadable pair(s) skipped", file=sys.stderr)
    return 0 if not scores.skipped else 1


def add_eval_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``cyclegan eval {fid,cycle,paired,domains,domain-classifier}``."""
    from cyclegan.evaluation.fid import __doc__ as fid_doc

    from cyclegan.cli.translate import add_runtime_args

    p = sub.add_parser("eval",  # its one-line help: cyclegan.cli.main.COMMANDS
                       description="Evaluate translations: `eval fid` compares two image folders, "
                                   "`eval cycle` measures how well a model's two generators undo each other, "
                                   "`eval domains` judges both directions with a classifier trained on the data set "
                                   "(`eval domain-classifier` trains it explicitly).")
    kinds = p.add_subparsers(dest="eval_kind", metavar="KIND")
    kinds.required = True

    fid = kinds.add_parser("fid", help="FID and KID between two image folders",
                           description=fid_doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    fid.add_argument("--real", required=True, help="folder of real images (e.g. datasets/horse2zebra/testB)")
    fid.add_argument("--fake", required=True, help="folder of translated images")
    fid.add_argument("--features", default="inception",
                     help="inception, inception-torchvision, a TorchScript/.pt2 file, or module:function [inception]")
    fid.add_argument("--inception-weights", help="a local copy of the Inception weights (no download)")
    fid.add_argument("--image-size", type=int,
                     help="resize every image to this square size before the extractor [as stored; Inception "
                          "resizes to 299 itself]")
    fid.add_argument("--kid-subsets", type=int, default=100, help="KID: random subsets averaged [100]")
    fid.add_argument("--kid-subset-size", type=int, default=1000, help="KID: images per subset (capped) [1000]")
    fid.add_argument("--batch-size", type=int, default=32, help="images per feature batch [32]")
    fid.add_argument("--workers", type=int, default=4, help="decoding threads [4]")
    fid.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps [auto]")
    fid.add_argument("--json", help="also write the results to this JSON file")
    fid.add_argument("--no-progress", action="store_true", help="no progress bar")
    fid.set_defaults(func=_cmd_fid)

    cyc = kinds.add_parser("cycle", help="mean L1 between images and their round trip through both generators")
    cyc.add_argument("--model", "-m", required=True, help="run folder, checkpoint, export, hf:USER/REPO[@REV], or .pth (with --reverse)")
    cyc.add_argument("--input", "-i", required=True, help="folder of images of the source domain")
    cyc.add_argument("--direction", choices=DIRECTIONS, default=None,
                     help="AtoB: A -> G_A -> G_B -> A (input is domain A); BtoA the other way [AtoB]")
    cyc.add_argument("--reverse", help="weights of the opposite direction, for a single published .pth")
    cyc.add_argument("--runs-dir", default="runs", help="where bare --model names are looked up [runs]")
    cyc.add_argument("--checkpoints-dir", default="checkpoints", help="where published weights live [checkpoints]")
    cyc.add_argument("--json", help="also write the results (and per-image errors) to this JSON file")
    add_runtime_args(cyc)
    add_architecture_args(cyc)
    cyc.set_defaults(func=_cmd_cycle)

    from cyclegan.core.argtypes import positive_int
    from cyclegan.evaluation.domains import __doc__ as domains_doc

    par = kinds.add_parser("paired", help="L1, PSNR and SSIM of a paired (pix2pix) model's translations against "
                                          "the ground truth", description=(
        "Translate the source image of every test pair and compare it with its counterpart: mean L1, PSNR "
        "and SSIM (torchmetrics), at the translation's size. Pairs: DATAROOT/PHASE of aligned A|B files, or "
        "DATAROOT/PHASEA and PHASEB matched by file name."))
    par.add_argument("--model", "-m", required=True, help="run folder, checkpoint, export, a published pix2pix_* name")
    par.add_argument("--dataroot", required=True, help="data set with test/ (aligned) or testA/ + testB/")
    par.add_argument("--phase", default="test", help="the split to score: test, val or train [test]")
    par.add_argument("--direction", choices=DIRECTIONS, default=None, help="the model's direction [its own]")
    par.add_argument("--limit", type=positive_int, help="only the first N pairs [all]")
    par.add_argument("--output", "-o", help="also write the translations to this folder (for `eval fid`)")
    par.add_argument("--json", help="also write the figures (and per-pair ones) to this JSON file")
    par.add_argument("--runs-dir", default="runs", help="where bare --model names are looked up [runs]")
    par.add_argument("--checkpoints-dir", default="checkpoints", help="where published weights live [checkpoints]")
    add_runtime_args(par)
    add_architecture_args(par)
    par.set_defaults(func=_cmd_paired)

    def classifier_args(q: argparse.ArgumentParser) -> None:
        q.add_argument("--dataroot", required=True, help="data set with trainA, trainB, testA, testB")
        q.add_argument("--classifier-size", type=positive_int, default=32,
                       help="side the classifier sees; images are resized to it [32]")
        q.add_argument("--seed", type=int, default=0, help="seed of the classifier's training [0]")
        q.add_argument("--epochs", type=positive_int,
                       help="classifier training epochs [3; up to 30 for small data sets, to reach about 120 steps]")
        q.add_argument("--max-train", type=positive_int,
                       help="train the classifier on at most N images per domain (spread evenly) [all]")
        q.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps [auto]")
        q.add_argument("--workers", type=int, default=4, help="decoding threads [4]")

    dom = kinds.add_parser("domains", help="hit rate, FID/KID and cycle L1 of both directions, judged by a domain "
                                           "classifier trained on the data set",
                           description=domains_doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    dom.add_argument("--model", "-m", required=True,
                     help="run folder, checkpoint, generators.safetensors or hf:USER/REPO[@REV]")
    classifier_args(dom)
    dom.add_argument("--classifier", help="a domain classifier file instead of the cached one "
                                          "(`cyclegan eval domain-classifier`)")
    dom.add_argument("--size", type=positive_int, help="translate at SIZE x SIZE [the size the model was trained at]")
    dom.add_argument("--limit", type=positive_int, help="only the first N test images per domain [all]")
    dom.add_argument("--batch-size", type=positive_int, default=32, help="images per forward pass [32]")
    dom.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="fp32",
                     help="generator autocast dtype [fp32]")
    dom.add_argument("--subset-size", type=positive_int, default=1000,
                     help="KID: images per subset (clamped to the number of images) [1000]")
    dom.add_argument("--kid-subsets", type=positive_int, default=100, help="KID: random subsets averaged [100]")
    dom.add_argument("--json", help="also write every figure to this JSON file")
    dom.add_argument("--strip", help="also save a PNG: per direction 8 test images, their translations and "
                                     "reconstructions")
    dom.add_argument("--runs-dir", default="runs", help="where bare --model names are looked up [runs]")
    dom.add_argument("--checkpoints-dir", default="checkpoints", help="where published weights live [checkpoints]")
    dom.set_defaults(func=_cmd_domains)

    dc = kinds.add_parser("domain-classifier", help="train (or show) the cached A-vs-B classifier of a data set",
                          description="Train the classifier `eval domains` judges with on DATAROOT/trainA (0) and "
                                      "trainB (1), cache it in DATAROOT/.cyclegan and print its accuracy on testA "
                                      "and testB. A cached one for the same settings and files is reused unless "
                                      "--force.")
    classifier_args(dc)
    dc.add_argument("--channels", type=int, choices=(1, 3),
                    help="1 for grayscale, 3 for RGB: the model's channel count [1 if the data is grayscale]")
    dc.add_argument("--force", action="store_true", help="retrain even if a cached classifier fits")
    dc.set_defaults(func=_cmd_domain_classifier)
