"""Where the GPU time of one CycleGAN training step goes: kernel time by kind (convolutions and
matrix products, layout transposes, normalisation/elementwise, padding, optimizer, copies) and the
top kernels, from torch.profiler over a few steps of the real ``CycleGAN.train_step`` as
``cyclegan bench --mode train`` builds it.

    python docs/gpu_profile.py --size 256 --batch-size 8 --precision bf16 --channels-last off \
        --compile on --json OUT.json

It answers "what would have to get faster" for the fraction-of-peak figure in docs/benchmarks.md:
the FLOPs are almost all in convolutions, so the convolution kernels' own TFLOP/s against the
step's is the headroom. A measuring tool for the GPU session, not part of the package.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cyclegan.bench.runner import count_flops, setup_train  # noqa: E402
from cyclegan.cli.bench import add_bench_args  # noqa: E402

# First match wins; kernel names are cuDNN/cuBLAS/CUTLASS/Triton/ATen's own.
KINDS = (
    ("transpose/layout", r"nchwToNhwc|nhwcToNchw|transpose|convertTensor|tensorTransform"),
    ("conv/matmul", r"conv|xmma|gemm|cutlass|sm90_|sm80_|implicit|dgrad|wgrad|fprop|cudnn|nvjet|cublas"),
    ("reflection pad", r"reflection"),
    ("optimizer", r"adam|multi_tensor|foreach|lerp"),
    ("norm (ATen)", r"norm|welford|batch_norm"),
    ("triton reduction", r"triton_(red|per)_"),
    ("triton pointwise", r"triton_poi_|triton_"),
    ("copy/fill", r"copy|fill|memset|Memcpy|Memset|cat"),
    ("elementwise (ATen)", r"elementwise|vectorized|reduce_kernel|unrolled"),
)


def kind_of(name: str) -> str:
    for kind, pattern in KINDS:
        if re.search(pattern, name, re.IGNORECASE):
            return kind
    return "other"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_bench_args(p)
    p.add_argument("--steps", type=int, default=3, help="profiled steps")
    p.add_argument("--top", type=int, default=25, help="kernels listed")
    args = p.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" else args.device)
    torch.backends.cudnn.benchmark = True
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    activity, kernel = ((ProfilerActivity.CUDA, torch.autograd.DeviceType.CUDA) if device.type == "cuda"
                        else (ProfilerActivity.CPU, torch.autograd.DeviceType.CPU))  # CPU: a dry run of the tool
    size, batch = args.size[0], args.batch_size[0]
    precision, cl, comp = args.precision[0], args.channels_last[0] == "on", args.compile[0] == "on"
    flops = count_flops("train", args, size, batch, device)
    step = setup_train(args, size, batch, precision, cl, comp, device, {})
    t0 = time.perf_counter()
    for _ in range(max(args.warmup, 3)):
        step()
    sync()
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(args.iters):
        step()
    sync()
    wall = (time.perf_counter() - t0) / args.iters
    with profile(activities=[activity]) as prof:
        for _ in range(args.steps):
            step()
        sync()
    per_kernel: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for ev in prof.events():
        if ev.device_type == kernel:
            k = per_kernel[ev.name]
            k[0] += ev.device_time_total if device.type == "cuda" else ev.self_cpu_time_total
            k[1] += 1
    by_kind: dict[str, float] = defaultdict(float)
    for name, (us, _) in per_kernel.items():
        by_kind[kind_of(name)] += us
    n = args.steps
    gpu_ms = sum(by_kind.values()) / 1e3 / n
    conv_ms = by_kind.get("conv/matmul", 0.0) / 1e3 / n
    launches = sum(c for _, c in per_kernel.values()) / n
    label = (f"{size}px batch {batch} {precision} channels_last={'on' if cl else 'off'} "
             f"compile={'on' if comp else 'off'}{' ' + args.compile_mode if comp and args.compile_mode else ''}")
    print(f"== {label}: wall {wall * 1e3:.1f} ms/iter, kernels {gpu_ms:.1f} ms/iter, {launches:.0f} launches/iter, "
          f"{flops / 1e12:.2f} TFLOP/iter -> {flops / wall / 1e12:.0f} TFLOP/s wall; conv kernels {conv_ms:.1f} ms "
          f"-> at most {flops / (conv_ms / 1e3) / 1e12 if conv_ms else 0:.0f} TFLOP/s in them (warm-up {warm:.0f} s)")
    for kind, us in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:20s} {us / 1e3 / n:8.2f} ms  {100 * us / 1e3 / n / gpu_ms:5.1f}%")
    top = sorted(per_kernel.items(), key=lambda kv: -kv[1][0])[: args.top]
    for name, (us, count) in top:
        print(f"  {us / 1e3 / n:7.2f} ms {count // n:5d}x  [{kind_of(name)}] {name[:150]}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "label": label, "wall_ms": wall * 1e3, "kernel_ms": gpu_ms, "launches": launches, "flops": flops,
            "by_kind_ms": {k: v / 1e3 / n for k, v in by_kind.items()},
            "top": [{"name": name, "ms": us / 1e3 / n, "count": count // n} for name, (us, count) in top],
            "torch": torch.__version__, "gpu": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
