"""pix2pix on the offline paired demo: the paper's recipe (our defaults) against the project's CycleGAN
choices (hinge loss + an EMA of the generator), 2 seeds each, equal iterations; docs/quality.md.

    python datasets/make_fmnist_edges.py --out datasets/fmnist_edges
    python docs/pix2pix_protocol.py --data datasets/fmnist_edges --out runs/pix2pix_protocol

Each run: unet_32 (ngf 16, ndf 16), 32 px, batch 16, ITERS iterations at a constant learning rate, one
CPU thread, fp32; scored by `cyclegan eval paired` figures (L1, PSNR, SSIM) on the 500 test pairs in
eval mode. Writes OUT/results.json and docs/images/pix2pix_protocol.png (edges | each setting, seed 0 |
the real item, 8 test pairs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from cyclegan.evaluation.paired import find_test_pairs, score_pairs  # noqa: E402
from cyclegan.inference.loading import load_generator  # noqa: E402
from cyclegan.inference.translator import Translator  # noqa: E402
from cyclegan.training.run import train  # noqa: E402

SETTINGS = {
    "paper (our default)": {},
    "hinge + EMA 0.999": {"gan_mode": "hinge", "ema_decay": 0.999},
}
COMMON = dict(size=32, input_nc=1, ngf=16, ndf=16, batch_size=16, precision="fp32", num_workers=0,
              lr_policy="constant", preview_every=0, log_every=100, save_every=100_000)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="datasets/fmnist_edges")
    p.add_argument("--out", default="runs/pix2pix_protocol")
    p.add_argument("--iters", type=int, default=600)
    p.add_argument("--seeds", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    pairs = find_test_pairs(args.data, "test")
    results: dict[str, list[dict]] = {}
    for label, setting in SETTINGS.items():
        for seed in range(args.seeds):
            name = f"{'paper' if not setting else 'hinge_ema'}_s{seed}"
            start = time.perf_counter()
            train(args.data, model="pix2pix", name=name, runs_dir=str(out), seed=seed, max_iters=args.iters,
                  n_epochs=100, n_epochs_decay=0, **COMMON, **setting)
            seconds = time.perf_counter() - start
            translator = Translator(load_generator(out / name), device="cpu", precision="fp32")
            s = score_pairs(translator, pairs)
            row = {"seed": seed, "run": name, "l1": s.l1, "psnr": s.psnr, "ssim": s.ssim, "seconds": seconds}
            results.setdefault(label, []).append(row)
            print(label, row, flush=True)
    summary = {label: {k: float(np.mean([r[k] for r in rows])) for k in ("l1", "psnr", "ssim", "seconds")}
               for label, rows in results.items()}
    (out / "results.json").write_text(json.dumps({"iters": args.iters, "common": COMMON, "runs": results,
                                                  "mean": summary}, indent=2))
    strip(out, pairs[:8], Path(__file__).parent / "images" / "pix2pix_protocol.png")
    for label, m in summary.items():
        print(f"{label}: L1 {m['l1']:.4f}  PSNR {m['psnr']:.2f}  SSIM {m['ssim']:.4f}  ({m['seconds']:.0f} s)")
    return 0


def strip(out: Path, pairs, path: Path) -> None:
    """Rows: edges | paper seed 0 | hinge + EMA seed 0 | real item, 4x enlarged."""
    from cyclegan.data.images import load_image
    from cyclegan.data.paired import split_aligned

    gens = [Translator(load_generator(out / run), device="cpu", precision="fp32") for run in ("paper_s0", "hinge_ema_s0")]
    rows = []
    for pair in pairs:
        a, b = split_aligned(load_image(pair[0], 1))
        rows.append(np.concatenate([a[:, :, 0], *(g.translate(a)[:, :, 0] for g in gens), b[:, :, 0]], axis=1))
    grid = np.concatenate(rows, axis=0)
    Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST).save(path)


if __name__ == "__main__":
    raise SystemExit(main())
