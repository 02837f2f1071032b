"""Images/s of `cyclegan translate` on one folder with 1 and 2 processes (torchrun) on this machine,
and the per-image CPU cost of decoding and encoding (what each GPU's rank needs from its cores).

    OMP_NUM_THREADS= python docs/translate_scaling.py --images 24 --json docs/bench/translate_scaling_cpu.json

The model: a ResNet-9 generator, ngf 64, instance norm, RGB (the published architecture), random
weights (seeded), at 256 px; inputs are 256 x 256 PNGs. Configurations: 1 process with 1 thread
(the per-process rate), 1 process with every core, 2 processes with half the cores each. The figure is the
run's own summary line (images / wall time from planning to the last write), so start-up
(interpreter, torch import, process group) is outside it; the wall time of the whole command is
kept too.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cyclegan.core.checkpoint import export_generators  # noqa: E402
from cyclegan.models.cyclegan import CycleGANConfig, build_generators  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_inputs(folder: Path, n: int, size: int) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        base = (yy * 0.5 + xx * 0.5)[:, :, None] * 255 / size
        arr = np.clip(base + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(folder / f"{i:05d}.png")


def io_cost(folder: Path) -> dict:
    """ms per image, one thread: decode a 256 px PNG, encode the output PNG."""
    files = sorted(folder.glob("*.png"))
    t = time.perf_counter()
    arrays = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    decode = (time.perf_counter() - t) / len(files)
    t = time.perf_counter()
    for a in arrays:
        Image.fromarray(a).save(io.BytesIO(), format="PNG")
    encode = (time.perf_counter() - t) / len(files)
    return {"decode_ms": round(decode * 1e3, 2), "encode_ms": round(encode * 1e3, 2)}


def run(model: Path, src: Path, out: Path, procs: int, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    args = ["-m", "cyclegan", "translate", "--model", str(model), "--input", str(src), "--output", str(out),
            "--device", "cpu", "--no-progress", "--no-html", "--overwrite", "--workers", "1"]
    if procs == 1:
        cmd = [sys.executable, *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs), "--master_addr",
               "127.0.0.1", "--master_port", str(free_port()), *args]
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    m = re.search(r"^(\d+) translated.* in ([\d.]+) s \(([\d.]+) images/s\)", done.stderr, flags=re.M)
    assert m, done.stderr
    return {"processes": procs, "threads_per_process": threads, "images": int(m.group(1)),
            "seconds": float(m.group(2)), "images_per_s": float(m.group(3)), "command_wall_s": round(wall, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--repeat", type=int, default=1, help="runs of each configuration (the best is reported)")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = CycleGANConfig(netG="resnet_9blocks", ngf=64)
        torch.manual_seed(0)
        gens = build_generators(cfg)
        from dataclasses import asdict

        model = export_generators(dict(gens.items()), asdict(cfg), tmp / "run" / "generators.safetensors",
                                  {"size": a.size, "name": "resnet9_ngf64_random"})
        src = tmp / "in"
        make_inputs(src, a.images, a.size)
        rows = []
        configs = [(1, 1), (1, cores), (2, max(1, cores // 2))]
        for procs, threads in dict.fromkeys(configs):
            best = None
            for _ in range(a.repeat):
                row = run(model, src, tmp / "out", procs, threads)
                print(row, flush=True)
                best = row if best is None or row["images_per_s"] > best["images_per_s"] else best
            rows.append(best)
        result = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": cores,
                              "load_average_at_start": os.getloadavg(), "torch": torch.__version__},
                  "model": "ResNet-9, ngf 64, instance norm, RGB, fp32 (Winograd on), batch 4",
                  "size": a.size, "rows": rows, "io_one_thread": io_cost(src)}
    print(json.dumps(result, indent=2))
    if a.json:
        a.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
