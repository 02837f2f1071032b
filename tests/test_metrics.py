"""FID and KID against closed forms and a direct scipy-free reference."""

import numpy as np
import pytest
import torch

from cyclegan.evaluation.metrics import frechet_distance, kernel_distance


def test_fid_of_identical_sets_is_zero():
    x = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


def test_fid_closed_form_for_shifted_and_scaled_gaussians():
    # Same covariance, shifted mean: FID = ||shift||^2 (up to sampling noise of the covariances).
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20000, 4, generator=g, dtype=torch.float64)
    shift = torch.tensor([1.0, 2.0, 0.0, 0.0], dtype=torch.float64)
    assert frechet_distance(x, x + shift) == pytest.approx(5.0, rel=1e-6)
    # Diagonal covariances I and 4I: Tr(I + 4I - 2 * 2I) = d.
    assert frechet_distance(x, 2 * x) == pytest.approx(4.0, rel=0.05)


def test_fid_matches_matrix_sqrt_reference():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5))
    b = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5)) + 0.5
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eig(s1 @ s2)  # (S1 S2)^(1/2) via eigendecomposition
    covmean = (v * np.sqrt(w.astype(complex))) @ np.linalg.inv(v)
    ref = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s1 + s2 - 2 * covmean.real)
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)


def test_kid_near_zero_for_same_distribution_and_positive_otherwise():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(500, 16, generator=g), torch.randn(500, 16, generator=g)
    same, _ = kernel_distance(x, y, subsets=5, subset_size=200)
    diff, std = kernel_distance(x, y + 1.0, subsets=5, subset_size=200)
    assert abs(same) < 0.05 and diff > 10 * max(abs(same), 1e-3) and std >= 0


def test_bad_shapes():
    with pytest.raises(ValueError, match="feature sizes differ"):
        frechet_distance(torch.randn(5, 3), torch.randn(5, 4))
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(torch.randn(1, 3), torch.randn(5, 3))
