"""Does the fast path train the same model? Loss curves of the real CycleGAN step over N
iterations: the fp32 eager contiguous baseline, the baseline again with another seed (the noise),
and each fast configuration with the baseline's seed, all on one fixed sequence of image pairs.

    python docs/speed_curves.py --device cuda --size 256 --iters 200 --json curves.json

A fast configuration "matches within noise" when its smoothed curves are no farther from the
baseline's than the other seed's are. Also prints each configuration's median ms/iteration.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cyclegan.models.cyclegan import CycleGAN, CycleGANConfig  # noqa: E402
from cyclegan.models.gan import Precision  # noqa: E402
from cyclegan.training.config import with_optimizers  # noqa: E402


def image_pairs(n: int, size: int, seed: int = 1234) -> list[dict[str, torch.Tensor]]:
    """Smooth random images: domain A blurry blobs, domain B the same plus stripes."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        pair = {}
        for k in "AB":
            x = F.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=(size, size), mode="bicubic", align_corners=False)
            if k == "B":
                x = x + 0.3 * torch.sin(torch.arange(size).float() / 3).view(1, 1, 1, size)
            pair[k] = (x.clamp(0, 1) * 2 - 1)
        out.append(pair)
    return out


def run(config: dict, pairs, device: torch.device, seed: int, netG: str) -> dict:
    torch.manual_seed(seed)
    model = with_optimizers(CycleGAN(CycleGANConfig(netG=netG), seed=seed)).to(device)
    mf = torch.channels_last if config["channels_last"] else torch.contiguous_format
    model.to(memory_format=mf)
    model.precision = Precision(device.type, config["precision"])
    model.use_fused_optimizers()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if config["compile"]:
        for net in (*model.generators.values(), *model.discriminators.values()):
            net.compile(mode=config.get("mode"))
    batches = [{k: v.to(device).contiguous(memory_format=mf) for k, v in p.items()} for p in pairs]
    losses, times = [], []
    for b in batches:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        logs = model.train_step(b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        losses.append(torch.stack([logs[k].float() for k in sorted(logs)]))
    keys = sorted(logs)
    curves = torch.stack(losses).cpu()
    warm = min(20, len(times) // 4)
    return {"config": config, "seed": seed, "keys": keys, "curves": curves.tolist(),
            "ms_per_iter": 1e3 * statistics.median(times[warm:]), "first_iter_s": times[0]}


def smoothed(curves: torch.Tensor, window: int) -> torch.Tensor:
    c = curves.t()[:, None]  # (keys, 1, iters)
    return F.avg_pool1d(c, window, stride=1)[:, 0].t()


def distance(a: dict, b: dict, window: int) -> float:
    """Mean over loss terms of mean |smoothed a - smoothed b| / mean |smoothed b|."""
    sa, sb = smoothed(torch.tensor(a["curves"]), window), smoothed(torch.tensor(b["curves"]), window)
    return float(((sa - sb).abs().mean(0) / sb.abs().mean(0).clamp_min(1e-8)).mean())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--netG", default="resnet_9blocks")
    p.add_argument("--window", type=int, default=20, help="moving-average window for comparing curves")
    p.add_argument("--fast", nargs="+", default=["fp32,channels_last", "bf16", "bf16,channels_last",
                                                  "bf16,channels_last,compile",
                                                  "bf16,channels_last,reduce-overhead"],
                   help="configurations: comma-separated precision and switches")
    p.add_argument("--json")
    args = p.parse_args()
    device = torch.device(args.device)
    pairs = image_pairs(args.iters, args.size)
    base_cfg = {"precision": "fp32", "channels_last": False, "compile": False}
    results = [run(base_cfg, pairs, device, 0, args.netG), run(base_cfg, pairs, device, 1, args.netG)]
    for spec in args.fast:
        parts = spec.split(",")
        cfg = {"precision": parts[0], "channels_last": "channels_last" in parts,
               "compile": "compile" in parts or "reduce-overhead" in parts,
               "mode": "reduce-overhead" if "reduce-overhead" in parts else None}
        results.append(run(cfg, pairs, device, 0, args.netG))
    base, noise = results[0], distance(results[1], results[0], args.window)
    name = {id(r): ("baseline seed 1" if i == 1 else ",".join([r["config"]["precision"]]
                    + [k for k in ("channels_last", "compile") if r["config"][k]]
                    + ([r["config"]["mode"]] if r["config"].get("mode") else [])))
            for i, r in enumerate(results)}
    print(f"{torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, {args.netG}, {args.size} px, batch 1, "
          f"{args.iters} iterations; curve distance = mean relative gap of {args.window}-iteration moving averages")
    print(f"| configuration | ms/iter | speed-up | curve distance to baseline | within noise ({noise:.3f}) |")
    print("|---|---|---|---|---|")
    for r in results:
        d = distance(r, base, args.window) if r is not base else 0.0
        r["distance"] = d
        print(f"| {name[id(r)]} | {r['ms_per_iter']:.1f} | {base['ms_per_iter'] / r['ms_per_iter']:.2f}x | {d:.3f} | "
              f"{'yes' if d <= noise else 'NO'} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"noise": noise, "size": args.size, "iters": args.iters,
                                               "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
