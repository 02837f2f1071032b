"""Inference for the noise -> image GAN: load a generator (a run, an export, a checkpoint or the
bundled Fashion-MNIST model) and draw samples, seed-to-seed interpolations and walks along one
latent dimension. No training code: this is what the app loads.

    sampler = LatentSampler.load()              # the bundled Fashion-MNIST DCGAN
    images = sampler.sample(16, seed=3)         # (16, 1, 28, 28) in [-1, 1]
    to_pil(images, nrow=4).save("grid.png")
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn

from cyclegan.core.checkpoint import (CheckpointError, check_usable, load_checkpoint, load_export, run_settings,
                                     state_dict_misfit)
from cyclegan.models.mnist import MnistGANConfig, build_generator, sample_noise
from cyclegan.inference.sources import ASSETS, BUNDLED_MODELS, EXPORT_NAME, resolve  # noqa: F401  (EXPORT_NAME re-exported)
from cyclegan.core.install import import_torchvision

#: the default generator, trained on Fashion-MNIST (see docs/mnist.md for how)
BUNDLED_GENERATOR = BUNDLED_MODELS["fashion_mnist_dcgan"]
#: the classifier its figures were measured with
BUNDLED_CLASSIFIER = ASSETS / "fashion_mnist_classifier.safetensors"
#: ``kind`` in the metadata of MNIST GAN exports (CycleGAN exports hold two image-to-image generators)
EXPORT_KIND = "mnist-gan"


def resolve_model(source: str | os.PathLike | None, runs_dir: str | os.PathLike = "runs") -> Path:
    """The file to load for ``source`` (:func:`cyclegan.inference.sources.resolve`: a run folder,
    an export, a checkpoint, a run or bundled name), or for None the bundled generator."""
    return resolve("fashion_mnist_dcgan" if source is None else source, runs_dir=runs_dir).file


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation between rows of ``a`` and ``b`` at fractions ``t`` (White 2016,
    "Sampling Generative Networks"): sin((1-t) w) / sin w * a + sin(t w) / sin w * b, with w the
    angle between a and b. Gaussian z concentrate near a sphere; a straight line between two of
    them passes through improbable low-norm z, the arc does not. Falls back to a line when a
    and b are (anti)parallel."""
    a, b, t = a.double(), b.double(), t.double().view(-1, 1)
    cos = (a / a.norm(dim=-1, keepdim=True) * (b / b.norm(dim=-1, keepdim=True))).sum(-1, keepdim=True)
    omega = torch.arccos(cos.clamp(-1, 1))
    so = torch.sin(omega)
    line = (1 - t) * a + t * b
    arc = torch.sin((1 - t) * omega) / so.clamp(min=1e-12) * a + torch.sin(t * omega) / so.clamp(min=1e-12) * b
    return torch.where(so.abs() < 1e-6, line, arc).float()


class LatentSampler:
    """A trained generator in eval mode, with the config it was trained with."""

    def __init__(self, generator: nn.Module, cfg: MnistGANConfig, meta: dict | None = None,
                 device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.generator = generator.to(self.device).eval()
        self.cfg = cfg
        self.meta = meta or {}
        self.path: Path | None = None

    @classmethod
    def load(cls, source: str | os.PathLike | None = None, device: torch.device | str = "cpu",
             runs_dir: str | os.PathLike = "runs") -> "LatentSampler":
        """From a run folder, an export, a checkpoint, a run or bundled name, or (None) the bundled generator."""
        path = resolve_model(source, runs_dir)
        if path.suffix == ".pt":
            state = load_checkpoint(path)
            config = state.get("model_config", {})
            if "z_dim" not in config:
                raise CheckpointError(f"{path} is a CycleGAN checkpoint, not a noise -> image generator")
            prefix = "generators.G."
            weights = {k[len(prefix):]: v for k, v in state["model"].items() if k.startswith(prefix)}
            train_cfg = run_settings(state)
            meta = {"kind": EXPORT_KIND, "name": train_cfg.get("name"),
                    "iteration": state.get("counters", {}).get("iteration"),
                    "data": {k: train_cfg[k] for k in ("dataset", "idx_dir", "image_dir", "data_root")
                             if k in train_cfg}}
        else:
            states, config, meta = load_export(path)
            if meta.get("kind") != EXPORT_KIND or "G" not in states:
                raise CheckpointError(f"{path} is a CycleGAN generator export, not a noise -> image generator")
            weights = states["G"]
        try:  # a shape-only (meta) build first: a crafted config cannot allocate gigabytes
            cfg = MnistGANConfig.from_dict(config)
            with torch.device("meta"):
                misfit = state_dict_misfit(weights, build_generator(cfg).state_dict())
        except (ValueError, TypeError, AttributeError) as e:
            raise CheckpointError(f"{path}: the stored model config is not usable: {e}") from None
        if misfit:
            raise CheckpointError(f"{path}: weights do not fit the stored config ({misfit})")
        generator = build_generator(cfg)
        generator.load_state_dict(weights, strict=True)
        # finite weights that give NaN images are refused, as for every other model
        check_usable(generator, sample_noise(2, cfg.z_dim, cfg.noise, torch.Generator().manual_seed(0)), str(path))
        sampler = cls(generator, cfg, meta, device)
        sampler.path = path
        return sampler

    # -- latent vectors ------------------------------------------------------------------------
    def noise(self, n: int, seed: int) -> Tensor:
        """``n`` latent vectors drawn from ``seed`` (the same on every machine and device)."""
        return sample_noise(n, self.cfg.z_dim, self.cfg.noise, torch.Generator().manual_seed(seed))

    @torch.no_grad()
    def generate(self, z: Tensor) -> Tensor:
        """Images (N, C, S, S) in [-1, 1], on the CPU, for latent vectors ``z`` (N, z_dim)."""
        out = []
        for chunk in z.split(1000):
            out.append(self.generator(chunk.to(self.device)).float().cpu())
        return torch.cat(out).clamp(-1, 1)

    def sample(self, n: int, seed: int = 0) -> Tensor:
        return self.generate(self.noise(n, seed))

    def interpolate(self, seed_a: int, seed_b: int, steps: int, rows: int = 1, mode: str = "auto") -> Tensor:
        """``rows`` walks of ``steps`` images from the i-th z of ``seed_a`` to the i-th z of
        ``seed_b``, row after row. ``mode``: slerp, linear, or auto (slerp for normal noise,
        linear for uniform noise, whose cube a straight line never leaves)."""
        if steps < 2:
            raise ValueError(f"--steps must be at least 2, got {steps}")
        if mode == "auto":
            mode = "slerp" if self.cfg.noise == "normal" else "linear"
        if mode not in ("slerp", "linear"):
            raise ValueError(f"unknown interpolation {mode!r}; choose slerp, linear or auto")
        za, zb = self.noise(rows, seed_a), self.noise(rows, seed_b)
        t = torch.linspace(0, 1, steps)
        z = []
        for a, b in zip(za, zb):
            a, b = a.expand(steps, -1), b.expand(steps, -1)
            z.append(slerp(a, b, t) if mode == "slerp" else (1 - t[:, None]) * a + t[:, None] * b)
        return self.generate(torch.cat(z))

    def walk(self, seed: int, dim: int, steps: int, rows: int = 1, span: float | None = None) -> Tensor:
        """``rows`` walks along latent dimension ``dim``: the i-th z of ``seed`` with z[dim] going
        from -span to +span in ``steps`` steps (span: 3 for normal noise, 1 for uniform)."""
        if not 0 <= dim < self.cfg.z_dim:
            raise ValueError(f"--dim must be in 0..{self.cfg.z_dim - 1} (the generator has z_dim {self.cfg.z_dim}), got {dim}")
        if steps < 2:
            raise ValueError(f"--steps must be at least 2, got {steps}")
        if span is None:
            span = 3.0 if self.cfg.noise == "normal" else 1.0
        z = self.noise(rows, seed).repeat_interleave(steps, dim=0)
        z[:, dim] = torch.linspace(-span, span, steps).repeat(rows)
        return self.generate(z)


def to_pil(images: Tensor, nrow: int, padding: int = 2, scale: int = 1) -> Image.Image:
    """A grid of images in [-1, 1] (N, C, H, W), ``nrow`` to a row, as one PIL image (grayscale
    for one channel); ``scale`` enlarges every pixel to a block (nearest neighbour)."""
    vutils = import_torchvision("torchvision.utils")

    grid = vutils.make_grid((images.float().clamp(-1, 1) + 1) / 2, nrow=nrow, padding=padding, pad_value=0.0)
    array = grid.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(array[:, :, 0], "L") if images.shape[1] == 1 else Image.fromarray(array, "RGB")
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    return image


def save_grid(images: Tensor, path: str | os.PathLike, nrow: int, scale: int = 1) -> Path:
    """Write :func:`to_pil`'s grid to ``path`` (format from the suffix, e.g. .png)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        to_pil(images, nrow, scale=scale).save(path)
    except (ValueError, OSError) as e:
        raise ValueError(f"cannot write {path}: {e} (use a .png or .jpg name in a writable folder)") from e
    return path
