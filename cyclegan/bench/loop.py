"""``cyclegan bench --mode loop``: the real ``cyclegan train`` loop, end to end, on an image folder.

The synthetic ``train`` rows time :meth:`CycleGAN.train_step` on a batch already on the device;
what a user waits for also includes reading and augmenting images (the DataLoader), the EMA,
loss logging (TensorBoard), previews and checkpoints. A loop row runs :func:`cyclegan.training.run.train`
itself, as ``cyclegan train`` does, on ``--dataroot`` (its trainA/trainB) or, without one, on a
temporary folder of synthetic PNGs written at the row's size, as many as the runs take images
(:func:`images_for`), so that no epoch end (and its checkpoint) falls inside the timing. A small
``--dataroot`` does pay its epoch ends.

Timing: two fresh runs in a temporary runs folder, one stopping after ``--warmup`` iterations
and one after ``--warmup + --iters``; the difference of their wall times, divided by ``--iters``,
is the time per iteration after warm-up: start-up, data set scanning, compilation and the final
checkpoint and export cost both runs the same and cancel out. ``--repeats`` longer runs give the
median and the spread; the warm-up run is made once.

Both runs are made in this process, so what a process does once (compiling, which the second
run of the same networks takes from dynamo's and inductor's caches; oneDNN creating its kernels
for each shape) would be paid by the first run alone and shrink the difference: with compile, a
128 px row came out 1.5x faster than the synthetic step of the same networks. An untimed priming
run of ``--warmup`` iterations comes first, so that both timed runs find those caches warm.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

__all__ = ["synthetic_folder", "time_loop"]

_SYNTHETIC_IMAGES = 8  # per domain, at the least


def images_for(iterations: int, batch_size: int) -> int:
    """Synthetic images per domain for runs of ``iterations``: enough that no epoch ends inside a
    run. An epoch end writes a checkpoint (hundreds of MB at ngf/ndf 64, about a second on a
    CPU), which on a data set of thousands of images is paid once per thousands of iterations;
    with a handful of images it would be paid every few iterations and swamp the figure."""
    return max(_SYNTHETIC_IMAGES, iterations * batch_size)


def synthetic_folder(root: Path, size: int, count: int = _SYNTHETIC_IMAGES, channels: int = 3) -> Path:
    """``root/trainA`` and ``root/trainB`` with ``count`` seeded random PNGs of ``size`` x ``size``
    each (smooth gradients plus noise, so PNG decoding costs what a photo's would)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    for domain in ("trainA", "trainB"):
        (root / domain).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            base = (yy + xx * (i + 1))[:, :, None] * (255.0 / (size * (i + 2)))
            arr = np.clip(base + rng.normal(0, 30, (size, size, channels)), 0, 255).astype(np.uint8)
            Image.fromarray(arr[:, :, 0] if channels == 1 else arr).save(root / domain / f"{i:03d}.png")
    return root


def _run(args: argparse.Namespace, dataroot: Path, runs_dir: Path, name: str, iters: int, size: int,
         batch_size: int, precision: str, channels_last: bool, compile: bool, device: torch.device,
         data_on_device: str) -> tuple[float, str]:
    """Wall seconds of one ``cyclegan train`` run that stops after ``iters`` iterations, and its stderr."""
    from cyclegan.training.run import train

    start = time.perf_counter()
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):  # the run's summary and bars; the bench prints its table
        train(dataroot, name=name, runs_dir=str(runs_dir), size=size, batch_size=batch_size, max_iters=iters,
              precision=precision, compile=compile, compile_mode=args.compile_mode if compile else None,
              channels_last=channels_last, device=str(device), netG=args.netG, ngf=args.ngf, ndf=args.ndf,
              num_workers=args.loop_workers, data_on_device=data_on_device, input_nc=args.loop_channels,
              model=args.model, step_graph=getattr(args, "step_graph", False))
    return time.perf_counter() - start, stderr.getvalue()


def time_loop(args: argparse.Namespace, size: int, batch_size: int, precision: str, channels_last: bool,
              compile: bool, device: torch.device, data_on_device: str = "off",
              info: dict | None = None) -> tuple[float, list[float]]:
    """(warm-up run seconds, seconds per iteration of each timed repeat), after an untimed priming
    run; see the module docstring.
    ``data_on_device``: train's --data-on-device (``loop`` rows: off, the DataLoader; ``loop-dev``: on);
    ``info["data_path"]`` gets the run header's line saying which data path ran."""
    with tempfile.TemporaryDirectory(prefix="cyclegan-bench-loop-") as tmp:
        tmp = Path(tmp)
        count = images_for(max(args.warmup, 1) + args.iters, batch_size)
        dataroot = (Path(args.dataroot) if args.dataroot
                    else synthetic_folder(tmp / "data", size, count, channels=args.loop_channels))
        common = dict(size=size, batch_size=batch_size, precision=precision, channels_last=channels_last,
                      compile=compile, device=device, data_on_device=data_on_device)
        _, stderr = _run(args, dataroot, tmp / "runs", "prime", max(args.warmup, 1), **common)
        warm, _ = _run(args, dataroot, tmp / "runs", "warmup", max(args.warmup, 1), **common)
        if info is not None:
            lines = stderr.splitlines()
            info["data_path"] = next((line for line in lines if line.startswith("data: ")), None)
            # says whether --step-graph ran ("whole-step CUDA graph")
            info["fast_path"] = next((line for line in lines if line.startswith("fast path: ")), None)
            if getattr(args, "step_graph", False) and "whole-step" not in (info["fast_path"] or ""):
                raise RuntimeError("--step-graph did not run here (the run says why in its log)")
        times = []
        for r in range(args.repeats):
            total, _ = _run(args, dataroot, tmp / "runs", f"timed{r}", max(args.warmup, 1) + args.iters, **common)
            times.append(max(total - warm, 1e-9) / args.iters)
        return warm, times
