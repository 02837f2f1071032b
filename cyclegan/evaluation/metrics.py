"""Distribution distances between two sets of feature vectors: FID and KID.

One implementation, whatever produced the features (Inception-v3 for the usual FID, or the
offline classifier of the MNIST and domain evaluations)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def _as_float64(features: Tensor | np.ndarray) -> Tensor:
    f = torch.as_tensor(features).detach().to("cpu", torch.float64)
    if f.dim() != 2 or f.shape[0] < 2:
        raise ValueError(f"need a (N >= 2, D) feature matrix, got shape {tuple(f.shape)}")
    return f


def frechet_distance(real: Tensor | np.ndarray, fake: Tensor | np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017):

    FID = ||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2))

    Tr((S_r S_f)^(1/2)) is computed as the sum of square roots of the eigenvalues of
    S_r^(1/2) S_f S_r^(1/2), which is symmetric PSD, so no complex matrix square root is needed.
    """
    r, f = _as_float64(real), _as_float64(fake)
    if r.shape[1] != f.shape[1]:
        raise ValueError(f"feature sizes differ: {r.shape[1]} and {f.shape[1]}")
    mu_r, mu_f = r.mean(0), f.mean(0)
    s_r, s_f = torch.cov(r.T).reshape(r.shape[1], -1), torch.cov(f.T).reshape(f.shape[1], -1)
    evals, evecs = torch.linalg.eigh(s_r)
    sqrt_r = (evecs * evals.clamp(min=0).sqrt()) @ evecs.T
    inner = torch.linalg.eigvalsh(sqrt_r @ s_f @ sqrt_r).clamp(min=0)
    fid = (mu_r - mu_f).pow(2).sum() + torch.trace(s_r) + torch.trace(s_f) - 2 * inner.sqrt().sum()
    return float(fid.clamp(min=0))


def kernel_distance(real: Tensor | np.ndarray, fake: Tensor | np.ndarray, subsets: int = 10,
                    subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (Bińkowski et al. 2018): the unbiased MMD^2 with the cubic
    polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets.
    Returns (mean, std) over the subsets."""
    r, f = _as_float64(real), _as_float64(fake)
    d = r.shape[1]
    m = min(subset_size, r.shape[0], f.shape[0])
    g = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        x = r[torch.randperm(r.shape[0], generator=g)[:m]]
        y = f[torch.randperm(f.shape[0], generator=g)[:m]]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        mmd = ((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
               + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
               - 2 * kxy.mean())
        values.append(float(mmd))
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(values) > 1 else 0.0
