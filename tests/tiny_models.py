"""Helpers for the inference, download, evaluation and export tests: tiny generators (ngf 4),
our export and checkpoint files, original-release style .pth files, and real image files."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cyclegan.core.checkpoint import export_generators, save_checkpoint
from cyclegan.models.cyclegan import CycleGAN, CycleGANConfig, build_generators
from cyclegan.models.init import init_weights
from cyclegan.models.networks import build_generator

ROOT = Path(__file__).resolve().parents[1]
TINY = CycleGANConfig(netG="resnet_6blocks", ngf=4, ndf=4)
SIZE = 32


@pytest.fixture(autouse=True)
def one_thread():
    """These tests run many tiny forward passes; on a busy shared CPU, intra-op threads spin
    against each other and make them 10-100x slower. One thread is faster and lighter."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_image(path: Path, h: int, w: int, channels: int = 3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    # smooth-ish content (a gradient plus noise), so resizing and JPEG behave like on photos
    yy, xx = np.mgrid[0:h, 0:w]
    base = (yy * 255 / max(h - 1, 1) * 0.5 + xx * 255 / max(w - 1, 1) * 0.5)[:, :, None]
    arr = np.clip(base + rng.normal(0, 40, (h, w, channels)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr[:, :, 0] if channels == 1 else arr).save(path)
    return path


def tiny_generators(seed: int = 0) -> torch.nn.ModuleDict:
    torch.manual_seed(seed)
    gens = build_generators(TINY)
    for net in gens.values():
        init_weights(net, "normal", 0.02)
    return gens.eval()


def tiny_export(run_dir: Path, seed: int = 0) -> Path:
    """runs/NAME/generators.safetensors of a tiny CycleGAN trained (nominally) at 32 px."""
    gens = tiny_generators(seed)
    return export_generators(dict(gens.items()), asdict(TINY), run_dir / "generators.safetensors",
                             {"size": SIZE, "name": run_dir.name})


def tiny_checkpoint(run_dir: Path, seed: int = 0) -> Path:
    """runs/NAME/checkpoints/latest.pt as the training loop writes it (its model part)."""
    torch.manual_seed(seed)
    model = CycleGAN(TINY)
    gens = tiny_generators(seed)
    model.generators.load_state_dict(gens.state_dict())
    if model.ema_generators is not None:  # what inference loads from a checkpoint
        model.ema_generators.load_state_dict(gens.state_dict())
    return save_checkpoint({"model_config": asdict(TINY),
                            "run_config": {"kind": "cyclegan", "data": {"size": SIZE}, "loop": {"name": run_dir.name}},
                            "model": model.state_dict()}, run_dir / "checkpoints" / "latest.pt")


def original_pth(path: Path, netG: str = "resnet_9blocks", ngf: int = 4, seed: int = 0,
                 stale_stats: bool = True) -> torch.nn.Module:
    """An original-release style state dict (like latest_net_G.pth), optionally with the
    InstanceNorm running_mean/running_var entries that PyTorch < 0.4 saved. Returns the net."""
    torch.manual_seed(seed)
    net = build_generator(netG, 3, 3, ngf=ngf).eval()
    init_weights(net, "normal", 0.02)
    state = dict(net.state_dict())
    if stale_stats:
        for name, module in net.named_modules():
            if isinstance(module, torch.nn.InstanceNorm2d):
                state[f"{name}.running_mean"] = torch.zeros(module.num_features)
                state[f"{name}.running_var"] = torch.ones(module.num_features)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return net


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The real `python -m cyclegan` command."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "cyclegan", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=240)
