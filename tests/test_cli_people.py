"""The CLI as a newcomer meets it: bundled model names, the training progress bar and its final
line, a capped `mnist sample --n`, exports that load without deprecation warnings, and
datasets/make_fashion_pairs.py. Everything runs as a real process."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings

import numpy as np
import torch
from PIL import Image

from cyclegan.data.images import load_image
from cyclegan.data.mnist import write_idx
from cyclegan.inference.loading import BUNDLED_MODELS, load_generator
from cyclegan.inference.translator import Translator
from test_train import TINY_MODEL, make_domain
from tiny_models import ROOT, cli, one_thread, tiny_export, write_image  # noqa: F401


def test_translate_takes_a_bundled_model_by_name(tmp_path):
    src = write_image(tmp_path / "shirt.png", 60, 50, channels=1)
    r = cli("translate", "shirt.png", "--model", "demo", "--output", "out.png", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    translator = Translator(load_generator(BUNDLED_MODELS["demo"], "AtoB"), device="cpu")
    want = translator.translate(load_image(src, 1))
    with Image.open(tmp_path / "out.png") as img:
        assert img.mode == "L" and img.size == (32, 32)
        got = np.asarray(img)
    assert np.abs(got.astype(int) - want[:, :, 0]).max() <= 1  # another process: rounding may differ by 1
    r = cli("translate", "shirt.png", "--model", "dmeo", "--output", "x.png", cwd=tmp_path)
    assert r.returncode == 2 and "or a bundled model (demo" in r.stderr.strip().splitlines()[-1]
    # a run of the user's own with that name comes first
    tiny_export(tmp_path / "runs" / "demo")
    r = cli("translate", "shirt.png", "--model", "demo", "--output", "own.png", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0 and "runs/demo/generators.safetensors" in r.stderr


def test_progress_bar_and_final_line_number_epochs_alike(tmp_path):
    make_domain(tmp_path / "data" / "trainA", 5, 0)
    make_domain(tmp_path / "data" / "trainB", 4, 1)
    common = ("train", "--dataroot", "data", "--size", "32", "--num-workers", "0", "--preview-every", "0",
              *TINY_MODEL)
    r = cli(*common, "--name", "capped", "--max-iters", "12", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # 5 iterations per epoch: iteration 12 is in the third epoch, and the bar counts toward 12
    bars = re.findall(r"epoch (\d+)/200:\s+\d+%\|[^|]*\| (\d+)/(\d+)", r.stderr)
    assert bars and {total for _, _, total in bars} == {"12"}
    assert bars[-1] == ("3", "12", "12")
    assert "finished at iteration 12 (epoch 3/200)" in r.stderr
    r = cli(*common, "--name", "whole", "--n-epochs", "1", "--n-epochs-decay", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert re.search(r"epoch 2/2: 100%\|[^|]*\| 5/5", r.stderr)
    assert "finished at iteration 10 (epoch 2/2)" in r.stderr


def test_mnist_sample_count_is_capped_with_a_clear_message(tmp_path):
    r = cli("mnist", "sample", "--n", "100000", "--out", "grid.png", cwd=tmp_path)
    assert r.returncode == 2 and "--n: at most 1024 samples in one grid, got 100000" in r.stderr
    r = cli("mnist", "sample", "--n", "64", "--scale", "400", "--out", "grid.png", cwd=tmp_path)
    assert r.returncode == 2 and "lower --n, --nrow or --scale" in r.stderr
    assert not (tmp_path / "grid.png").exists()
    r = cli("mnist", "sample", "--n", "1024", "--out", "grid.png", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with Image.open(tmp_path / "grid.png") as img:
        assert img.size == (32 * 30 + 2, 32 * 30 + 2)


def test_pt2_export_loads_without_a_deprecation_warning(tmp_path):
    tiny_export(tmp_path / "runs" / "t")
    r = cli("export", "runs/t", "--format", "pt2", "--direction", "BtoA", "--output", "g.pt2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    extra = {"cyclegan.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch.jit.load would raise its FutureWarning here
        module = torch.export.load(str(tmp_path / "g.pt2"), extra_files=extra).module()
    assert '"direction": "BtoA"' in extra["cyclegan.json"]
    x = torch.rand(3, 3, 36, 44, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        assert torch.allclose(module(x), load_generator(tmp_path / "runs" / "t", "BtoA").net(x), atol=1e-5)
    r = cli("export", "runs/t", "--format", "torchscript", "--direction", "AtoB", "--output", "g.ts", cwd=tmp_path)
    assert r.returncode == 0 and "`--format pt2` writes the same generator for torch.export.load" in r.stderr


def _fashion_idx(folder):
    """Fashion-MNIST-shaped IDX files: 4 training and 3 test images of each of the 10 classes."""
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 4), ("t10k", 3)):
        labels = np.repeat(np.arange(10, dtype=np.uint8), per_class)
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (labels.size, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return folder


def _make_pairs(*args, cwd):
    return subprocess.run([sys.executable, str(ROOT / "datasets" / "make_fashion_pairs.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_make_fashion_pairs_takes_a_count_and_explains_itself(tmp_path):
    idx = _fashion_idx(tmp_path / "idx")
    r = _make_pairs("--help", cwd=tmp_path)
    assert r.returncode == 0
    for text in ("0 T-shirt/top", "2 Pullover", "9 Ankle boot", "[all 6000]", "[datasets/fmnist_tshirt_pullover]",
                 "[0: T-shirt/top]"):
        assert text in " ".join(r.stdout.split()), text
    r = _make_pairs("--idx-dir", str(idx), "--a", "pullover", "--b", "7", "--count", "3", "--test-count", "2",
                    "--out", "pairs", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    counts = {d: len(list((tmp_path / "pairs" / d).glob("*.png"))) for d in ("trainA", "trainB", "testA", "testB")}
    assert counts == {"trainA": 3, "trainB": 3, "testA": 2, "testB": 2}
    assert "3 images of Pullover" in r.stdout and "2 images of Sneaker" in r.stdout
    r = _make_pairs("--idx-dir", str(idx), "--a", "hat", "--out", "other", cwd=tmp_path)
    assert r.returncode == 2 and "'hat' is not a class; use 0-9 or a name" in r.stderr
    r = _make_pairs("--idx-dir", str(idx), "--count", "0", "--out", "other", cwd=tmp_path)
    assert r.returncode == 2 and "--count: must be at least 1" in r.stderr
