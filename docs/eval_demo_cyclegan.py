"""Quality figures of the bundled demo CycleGAN (Fashion-MNIST T-shirt/top <-> Pullover).

    OMP_NUM_THREADS=1 python docs/eval_demo_cyclegan.py [--model cyclegan/assets/fmnist_tshirt2pullover.safetensors]

Translates the 1,000 held-out images of each class (datasets/fmnist_tshirt_pullover/testA|testB,
made by datasets/make_fashion_pairs.py) at the model's 32 px, brings them back to 28 px and asks
the bundled 10-class Fashion-MNIST classifier (cyclegan mnist classifier, 89.5% test accuracy):
the share it assigns to the target class, FID/KID on its features against the real target test
images, and the cycle-reconstruction L1 (on [-1, 1] images). "untranslated" rows are the inputs
themselves, the floor a translation must beat.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cyclegan.evaluation.classifier import extract, load_classifier  # noqa: E402
from cyclegan.data.images import find_images, load_image  # noqa: E402
from cyclegan.evaluation.metrics import frechet_distance, kernel_distance  # noqa: E402
from cyclegan.inference.mnist_sampler import BUNDLED_CLASSIFIER  # noqa: E402
from cyclegan.inference.translator import Translator  # noqa: E402
from cyclegan.inference.loading import load_generator  # noqa: E402

CLASS = {"A": 0, "B": 2}  # T-shirt/top, Pullover


def folder_tensor(folder: Path) -> torch.Tensor:
    return torch.from_numpy(np.stack([load_image(p, 1) for p in find_images(folder)])).permute(0, 3, 1, 2)


def to28(x: torch.Tensor) -> torch.Tensor:  # float [-1, 1] (N,1,32,32) -> uint8 (N,1,28,28)
    x = F.interpolate(x.float(), size=(28, 28), mode="bicubic", align_corners=False)
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="cyclegan/assets/fmnist_tshirt2pullover.safetensors")
    p.add_argument("--data", default="datasets/fmnist_tshirt_pullover")
    p.add_argument("--strip", default="docs/images/demo_cyclegan.png",
                   help="also save 8 test images per direction: input, translation, reconstruction")
    args = p.parse_args()
    clf, _ = load_classifier(BUNDLED_CLASSIFIER)
    real = {d: folder_tensor(Path(args.data) / f"test{d}") for d in "AB"}
    feats = {d: extract(clf, real[d])[0] for d in "AB"}
    gens = {d: Translator(load_generator(args.model, d), device="cpu", precision="fp32") for d in ("AtoB", "BtoA")}
    strips: list[torch.Tensor] = []
    print(f"{'direction':<22} {'hit rate':>8} {'FID':>8} {'KID':>9} {'cycle L1':>9}")
    for src, dst, fwd, back in (("A", "B", "AtoB", "BtoA"), ("B", "A", "BtoA", "AtoB")):
        x = torch.stack([gens[fwd].prepare(im.permute(1, 2, 0).numpy()) for im in real[src]])
        with torch.no_grad():
            fake = torch.cat([gens[fwd].forward(x[i:i + 100]) for i in range(0, len(x), 100)])
            rec = torch.cat([gens[back].forward(fake[i:i + 100]) for i in range(0, len(fake), 100)])
        strips.append(torch.cat([x[:8], fake[:8], rec[:8]], dim=0))
        for label, images in ((f"{fwd} translated", to28(fake)), (f"{fwd} untranslated", real[src])):
            f, probs = extract(clf, images)
            hit = float((probs.argmax(1) == CLASS[dst]).float().mean())
            kid, _ = kernel_distance(feats[dst], f, subsets=20, subset_size=500)
            cyc = f"{float((rec - x).abs().mean()):9.4f}" if "untranslated" not in label else f"{'':>9}"
            print(f"{label:<22} {hit:8.3f} {frechet_distance(feats[dst], f):8.3f} {kid:9.4f} {cyc}")
    if args.strip:
        import torchvision.utils as vutils

        grid = vutils.make_grid(torch.cat(strips).clamp(-1, 1).add(1).div(2), nrow=8, padding=2, pad_value=1)
        grid = F.interpolate(grid[None], scale_factor=3, mode="nearest")[0]
        vutils.save_image(grid, args.strip)
        print(f"wrote {args.strip}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
