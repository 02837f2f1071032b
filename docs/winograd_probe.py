"""Per-layer timing of cyclegan.inference.winograd against the direct convolution on this machine's CPU:
where Winograd F(4x4, 3x3) pays (the thresholds in cyclegan/inference/winograd.py come from this table),
and what it would give a training step (forward + backward through the transforms).

    OMP_NUM_THREADS=1 python docs/winograd_probe.py [--threads 1] [--repeats 5]

Each cell: the best of --repeats rounds, direct and Winograd interleaved in every round, so both
see the same machine load. Every Winograd call transforms its filters (as WinogradConv2d does);
the training rows also run autograd through every transform.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cyclegan.inference.winograd import conv3x3  # noqa: E402


def best_of(fns: dict, repeats: int, work: float) -> dict:
    n = max(1, int(2e8 / work))
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            fn()
            t = time.perf_counter()
            for _ in range(n):
                fn()
            best[k] = min(best[k], (time.perf_counter() - t) / n)
    return best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print("| channels | output | direct ms | Winograd ms | speed-up |\n|---|---|---|---|---|")
    with torch.no_grad():
        for c in (64, 128, 256):
            for s in (8, 16, 32, 64, 128):
                x, w = torch.randn(1, c, s + 2, s + 2), torch.randn(c, c, 3, 3) * 0.02
                t = best_of({"direct": lambda: F.conv2d(x, w), "winograd": lambda: conv3x3(x, w)},
                            args.repeats, 18 * c * c * s * s)
                print(f"| {c} | {s}x{s} | {t['direct'] * 1e3:.2f} | {t['winograd'] * 1e3:.2f} | "
                      f"{t['direct'] / t['winograd']:.2f}x |", flush=True)
    print("\nTraining (forward + backward, autograd through the transforms), 256 channels:")
    print("| output | direct ms | Winograd ms | speed-up |\n|---|---|---|---|")
    for s in (32, 64):
        x = torch.randn(1, 256, s + 2, s + 2, requires_grad=True)
        w = (torch.randn(256, 256, 3, 3) * 0.02).requires_grad_()
        g = torch.randn(1, 256, s, s)
        t = best_of({"direct": lambda: F.conv2d(x, w).backward(g), "winograd": lambda: conv3x3(x, w).backward(g)},
                    args.repeats, 3 * 18 * 256 * 256 * s * s)
        print(f"| {s}x{s} | {t['direct'] * 1e3:.1f} | {t['winograd'] * 1e3:.1f} | "
              f"{t['direct'] / t['winograd']:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
