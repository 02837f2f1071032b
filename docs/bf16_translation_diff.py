"""How far bf16 translation is from fp32: the bundled demo generator (both directions) on the
bundled example images, each translated in fp32 and in bf16 autocast on the CPU; the difference
of the uint8 outputs (max, mean, PSNR). bf16 is what ``--precision auto`` translates in on CPUs
with AMX (docs/benchmarks.md); on CPUs without native bf16 it is emulated (slow, same rounding).

    python docs/bf16_translation_diff.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cyclegan.inference.translator import Translator  # noqa: E402


def main() -> int:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    model = ROOT / "cyclegan" / "assets" / "fmnist_tshirt2pullover.safetensors"
    print("| direction | image | max | mean | PSNR (dB) |\n|---|---|---|---|---|")
    for direction in ("AtoB", "BtoA"):
        fp32, bf16 = (Translator.from_pretrained(model, direction, device="cpu", precision=p) for p in ("fp32", "bf16"))
        for path in sorted((ROOT / "cyclegan" / "assets" / "examples").glob("*.png")):
            with Image.open(path) as im:
                image = np.asarray(im.convert("L" if fp32.input_channels == 1 else "RGB"))
            d = np.abs(fp32.translate(image).astype(int) - bf16.translate(image).astype(int))
            mse = float((d ** 2).mean())
            psnr = 10 * np.log10(255 ** 2 / mse) if mse else float("inf")
            print(f"| {direction} | {path.name} | {d.max()} | {d.mean():.3f} | {psnr:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
