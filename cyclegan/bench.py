"""``cyclegan bench``: training iterations per second, peak memory and FLOPs per iteration of
the real CycleGAN step on synthetic data. A benchmark, not a test: run it, then record the
figures with the command and the machine in docs/benchmarks.md."""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from typing import Callable

import torch

from .cyclegan import CycleGAN, CycleGANConfig
from .gan import PRECISIONS, GANModel, Precision
from .networks import GENERATORS


def add_bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=int, default=128, help="image side in pixels")
    p.add_argument("--netG", choices=tuple(GENERATORS), default="resnet_9blocks", help="generator")
    p.add_argument("--precision", choices=PRECISIONS, nargs="+", default=["fp32"], help="one or more precisions")
    p.add_argument("--batch-size", type=int, default=1, help="images per step")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    p.add_argument("--iters", type=int, default=5, help="timed iterations per repeat")
    p.add_argument("--repeats", type=int, default=3, help="repeats; the median is reported")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--json", help="also write the results to this JSON file")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], object], device: torch.device, warmup: int, iters: int, repeats: int) -> float:
    """Median seconds per call of ``step``: ``warmup`` untimed calls, then ``repeats`` timed runs
    of ``iters`` calls each (synchronising CUDA around every run). Resets CUDA peak memory after
    the warmup, so :func:`peak_memory` reports the steady state."""
    for _ in range(warmup):
        step()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            step()
        _sync(device)
        times.append((time.perf_counter() - t0) / iters)
    return statistics.median(times)


def peak_memory(device: torch.device) -> tuple[int, str]:
    """(bytes, what was measured): CUDA's max allocated, or the process's peak RSS on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "cuda max allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process peak RSS"  # KiB on Linux


def flops_per_iteration(model: GANModel, batch: dict) -> int:
    """FLOPs of one full training step (forwards and backwards of G and D) by torch's counter."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        model.train_step(batch)
    return counter.get_total_flops()


def bench_one(size: int, netG: str, precision: str, batch_size: int, channels_last: bool,
              device: torch.device, warmup: int, iters: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = CycleGAN(CycleGANConfig(netG=netG)).to(device)
    model.precision = Precision(device.type, precision)
    mf = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=mf)
    batch = {k: torch.rand(batch_size, 3, size, size, device=device).mul(2).sub(1).contiguous(memory_format=mf)
             for k in ("A", "B")}
    flops = flops_per_iteration(model, batch)
    sec = time_steps(lambda: model.train_step(batch), device, warmup, iters, repeats)
    peak, mem_kind = peak_memory(device)
    return {"size": size, "netG": netG, "precision": precision, "batch_size": batch_size,
            "channels_last": channels_last, "device": str(device), "sec_per_iter": sec,
            "iters_per_sec": 1.0 / sec, "images_per_sec": batch_size / sec, "peak_memory_bytes": peak,
            "memory_kind": mem_kind, "flops_per_iter": flops, "achieved_flops_per_sec": flops / sec}


def run_bench(args: argparse.Namespace) -> int:
    from .train import pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    results = []
    header = f"{'precision':>9} {'batch':>5} {'size':>5} {'ms/iter':>9} {'it/s':>7} {'img/s':>7} " \
             f"{'peak MiB':>9} {'GFLOP/iter':>11} {'GFLOP/s':>9}"
    print(f"cyclegan bench: {args.netG}, 70x70 PatchGAN, {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}", file=sys.stderr)
    print(header)
    for precision in args.precision:
        r = bench_one(args.size, args.netG, precision, args.batch_size, args.channels_last, device,
                      args.warmup, args.iters, args.repeats)
        results.append(r)
        print(f"{precision:>9} {r['batch_size']:>5} {r['size']:>5} {r['sec_per_iter'] * 1e3:>9.1f} "
              f"{r['iters_per_sec']:>7.2f} {r['images_per_sec']:>7.2f} {r['peak_memory_bytes'] / 2**20:>9.0f} "
              f"{r['flops_per_iter'] / 1e9:>11.1f} {r['achieved_flops_per_sec'] / 1e9:>9.1f}", flush=True)
    if len(results) > 1:
        base = results[0]["sec_per_iter"]
        for r in results[1:]:
            print(f"{r['precision']} vs {results[0]['precision']}: {base / r['sec_per_iter']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "machine": platform.machine(), "results": results}, f, indent=2)
    return 0
