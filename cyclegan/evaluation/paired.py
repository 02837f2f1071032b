"""Paired evaluation (``cyclegan eval paired``): a model's translations of A against the ground truth B
that paired data carries, which unpaired data cannot have.

Per pair, on images in [0, 1] at the translation's size (the ground truth resized to it, bicubic):

* L1: mean absolute difference;
* PSNR: 10 log10(1 / MSE), in dB (data range 1);
* SSIM: structural similarity (Wang et al. 2004), torchmetrics' implementation (Gaussian window 11,
  sigma 1.5, K1 0.01, K2 0.03, data range 1), averaged over channels and pixels.

The figures are means over the pairs. FID needs many images and no pairs: write the translations
with ``--output`` and run ``cyclegan eval fid --real B_FOLDER --fake OUTPUT`` beside these.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cyclegan.data.images import DataError, UnreadableImageError, load_image
from cyclegan.data.paired import Pair, aligned_pairs, folder_pairs, split_aligned, to_channels
from cyclegan.inference.translator import Translator

__all__ = ["PairedScores", "find_test_pairs", "image_scores", "score_pairs"]


@dataclass
class PairedScores:
    l1: float
    psnr: float
    ssim: float
    n: int
    per_image: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def find_test_pairs(dataroot: str | os.PathLike, phase: str = "test") -> list[Pair]:
    """The pairs of ``dataroot/PHASE`` (aligned A|B files) or ``dataroot/PHASEA`` + ``PHASEB``."""
    root = Path(dataroot)
    if (root / phase).is_dir():
        return aligned_pairs(root / phase)[0]
    if (root / f"{phase}A").is_dir() and (root / f"{phase}B").is_dir():
        return folder_pairs(root / f"{phase}A", root / f"{phase}B")[0]
    raise DataError(f"--dataroot {root}: expected {root / phase} (aligned A|B files) or {root / (phase + 'A')} and "
                    f"{root / (phase + 'B')} (paired folders)")


def _to_unit(image: np.ndarray) -> torch.Tensor:
    """uint8 HxWxC -> float 1xCxHxW in [0, 1]."""
    return torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1)[None].double() / 255.0


def image_scores(output: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """L1, PSNR and SSIM of one uint8 HxWxC ``output`` against ``truth`` (resized to it if needed)."""
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim

    if truth.shape[:2] != output.shape[:2]:
        pil = Image.fromarray(truth[:, :, 0] if truth.shape[2] == 1 else truth)
        truth = np.asarray(pil.resize((output.shape[1], output.shape[0]), Image.BICUBIC))
        truth = truth[:, :, None] if truth.ndim == 2 else truth
    x, y = _to_unit(output), _to_unit(truth)
    mse = float(((x - y) ** 2).mean())
    return {"l1": float((x - y).abs().mean()), "psnr": 10 * math.log10(1.0 / mse) if mse > 0 else math.inf,
            "ssim": float(ssim(x, y, data_range=1.0))}


def score_pairs(translator: Translator, pairs: list[Pair], direction: str = "AtoB",
                output: str | os.PathLike | None = None, progress: bool = False) -> PairedScores:
    """Translate each pair's source (A, or B for BtoA) and score it against the other image."""
    in_c = translator.input_channels
    rows, skipped = [], []
    out_dir = Path(output) if output else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    iterator = pairs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(pairs, desc="eval paired", unit="pair")
    for i, pair in enumerate(iterator):
        try:
            if pair.aligned:
                a, b = split_aligned(load_image(pair[0], 3))
            else:
                a, b = load_image(pair[0], 3), load_image(pair[1], 3)
        except UnreadableImageError as e:
            skipped.append(f"{e.path}: {e.reason}")
            continue
        source, truth = (a, b) if direction == "AtoB" else (b, a)
        fake = translator.translate(to_channels(source, in_c))
        if fake.shape[2] == 1 and truth.shape[2] == 3:
            fake = np.repeat(fake, 3, axis=2)
        rows.append({"file": str(pair[0]), **image_scores(fake, truth)})
        if out_dir:
            Image.fromarray(fake[:, :, 0] if fake.shape[2] == 1 else fake).save(out_dir / f"{i:05d}_{Path(pair[0]).stem}.png")
    if not rows:
        raise DataError(f"no pair could be scored ({len(skipped)} unreadable)")
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("l1", "psnr", "ssim")}
    return PairedScores(**mean, n=len(rows), per_image=rows, skipped=skipped)
