"""The flags of ``cyclegan bench``."""

from __future__ import annotations

import argparse

from cyclegan.core.argtypes import nonneg_int, positive_float, positive_int
from cyclegan.core.fastpath import COMPILE_MODES, PRECISION_CHOICES
from cyclegan.models.networks import GENERATORS
from cyclegan.bench.runner import MODES, SWITCH


def add_bench_args(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Time the real CycleGAN training step (--mode train: iterations/s) and the real inference path "
        "(--mode translate: Translator.forward, images/s) on synthetic data, and the real `cyclegan train` loop "
        "end to end on an image folder (--mode loop: data loading included; ms/iter after warm-up from two runs' "
        "difference). Every combination of --size, "
        "--batch-size, --precision, --channels-last and --compile is one row, with its peak memory, FLOPs per "
        "iteration (torch.utils.flop_counter), achieved FLOP/s, fraction of the device's peak where known, and "
        "speed-up over the fp32/eager/contiguous baseline of its (mode, size, batch) group. The defaults suit a "
        "CPU; on a GPU try e.g. --size 256 512 --batch-size 1 4 8 --precision fp32 bf16 --compile off on.")
    p.epilog = ("Columns: ms/iter and it/s per iteration (one batch), img/s = batch x it/s; x base = speed-up over "
                "the group's baseline row; peak MiB = CUDA max allocated, or on the CPU the process's peak RSS "
                "during the timed runs (sampled); +MiB = that peak minus the memory in use before the row built "
                "its model. Compare rows as ratios within one run; absolute figures move with the machine and "
                "its load. On a shared CPU set OMP_NUM_THREADS=1 and --threads 1.")
    s = p.add_argument_group("what to measure (every combination is one row)")
    s.add_argument("--mode", choices=MODES, nargs="+", default=["train", "translate"],
                   help="train: CycleGAN.train_step it/s on a synthetic batch on the device; translate: "
                        "Translator.forward images/s; loop: the real `cyclegan train` loop end to end (data loading, "
                        "augmentation, EMA, logging, checkpoints) on --dataroot or synthetic PNGs; loop-dev: the same "
                        "with train's --data-on-device on (images held and cropped on the device)")
    s.add_argument("--size", type=positive_int, nargs="+", default=[128], help="image sides in pixels")
    s.add_argument("--batch-size", type=positive_int, nargs="+", default=[1], help="images per iteration")
    s.add_argument("--precision", choices=PRECISION_CHOICES, nargs="+", default=["fp32", "auto"],
                   help="autocast precisions; auto: what cyclegan.core.fastpath picks for this machine and mode "
                        "(shown as auto:NAME; one row with fp32 where auto is fp32); the default compares the "
                        "reference with this machine's default")
    s.add_argument("--channels-last", choices=SWITCH, nargs="+", default=list(SWITCH),
                   help="channels_last memory format for weights and batches")
    s.add_argument("--compile", choices=(*SWITCH, "auto"), nargs="+", default=["off", "auto"],
                   help="torch.compile the networks (compilation happens in the warm-up); auto: what "
                        "cyclegan train picks on this machine for this size and precision, shown as auto:on/off")
    s.add_argument("--winograd", choices=SWITCH, nargs="+", default=["off"],
                   help="translate rows: Winograd F(4x4,3x3) for the wide 3x3 convolutions (CPU fp32 inference; "
                        "cyclegan translate's default there). FLOP/s columns count the direct convolution's FLOPs, "
                        "so Winograd rows show effective FLOP/s")
    s.add_argument("--compile-backend", default="inductor", help="torch.compile backend")
    s.add_argument("--compile-mode", choices=COMPILE_MODES, default=None,
                   help="inductor mode; reduce-overhead replays CUDA graphs (fewer launches at batch 1)")
    m = p.add_argument_group("model")
    m.add_argument("--model", choices=("cyclegan", "cut", "fastcut", "mnist"), default="cyclegan",
                   help="the model kind of train and loop rows, built as `cyclegan train --model` builds it "
                        "(mnist: train rows only, --size is its image side); translate rows time a ResNet/U-Net "
                        "generator whatever the kind")
    m.add_argument("--netG", choices=tuple(GENERATORS), default="resnet_9blocks", help="generator")
    m.add_argument("--ngf", type=positive_int, default=64, help="generator filters in the first conv")
    m.add_argument("--ndf", type=positive_int, default=64, help="discriminator filters in the first conv")
    d = p.add_argument_group("loop rows")
    d.add_argument("--dataroot", help="image folder with trainA/ and trainB/ [synthetic PNGs at each --size, "
                                      "written to a temporary folder]")
    d.add_argument("--loop-workers", type=int, default=-1,
                   help="DataLoader workers of the loop, as train's --num-workers [-1: one per spare core, at most 4]")
    d.add_argument("--step-graph", action="store_true",
                   help="train rows replay the step as a CUDA graph, loop rows train with train's --step-graph "
                        "(CUDA only; elsewhere the rows report why not)")
    d.add_argument("--loop-channels", type=int, choices=(1, 3), default=3,
                   help="image channels of the loop rows' runs (1: grayscale, as train's --channels)")
    r = p.add_argument_group("how")
    r.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    r.add_argument("--warmup", type=nonneg_int, default=2,
                   help="untimed iterations first (at least 2 with --compile on)")
    r.add_argument("--iters", type=positive_int, default=5, help="timed iterations per repeat")
    r.add_argument("--repeats", type=positive_int, default=3, help="timed repeats; the median is reported")
    r.add_argument("--threads", type=nonneg_int, default=0, help="torch CPU threads (0: torch's default)")
    r.add_argument("--peak-tflops", type=positive_float,
                   help="the device's peak TFLOP/s, for the fraction-of-peak column [built-in table for "
                        "some NVIDIA data-centre GPUs; none for CPUs]")
    o = p.add_argument_group("output")
    o.add_argument("--json", help="also write every row and the machine to this JSON file (updated after each row)")
    o.add_argument("--markdown", action="store_true", help="print the table again as markdown at the end")
