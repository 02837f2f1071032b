"""The public Python API (README "Python API"): cyclegan.Translator, translate_folder, train and
LatentSampler, on real tiny models and real image files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import cyclegan
from cyclegan.core.checkpoint import load_checkpoint
from tiny_models import one_thread, tiny_export, write_image  # noqa: F401  (one_thread: autouse fixture)


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "runs" / "tiny"
    tiny_export(run)
    return run


def test_translator_from_pretrained_takes_pil_arrays_and_tensors(run_dir, tmp_path):
    t = cyclegan.Translator.from_pretrained(run_dir, direction="BtoA", device="cpu")
    assert t.generator.direction == "BtoA" and t.device.type == "cpu"
    photo = Image.open(write_image(tmp_path / "in.png", 40, 52))
    out = t(photo)
    assert isinstance(out, Image.Image) and out.size == (32, 32) and out.mode == "RGB"
    array = np.asarray(photo.convert("RGB"))
    np.testing.assert_array_equal(np.asarray(out), t(array))   # the same image as an array
    x = torch.rand(3, 20, 28) * 2 - 1
    y = t(x)
    assert y.shape == (3, 20, 28) and y.min() >= -1 and y.max() <= 1
    batch = torch.stack([x, -x])
    torch.testing.assert_close(t(batch)[0], y)                 # CHW is a batch of one


def test_from_pretrained_passes_translator_options(run_dir):
    t = cyclegan.Translator.from_pretrained(str(run_dir), device="cpu", size=16, winograd=False)
    assert t.size == 16 and not t.winograd and t.generator.direction == "AtoB"
    with pytest.raises(ValueError, match="direction"):
        cyclegan.Translator.from_pretrained(run_dir, direction="sideways")


def test_translate_folder_writes_outputs_and_index(run_dir, tmp_path):
    for i in range(3):
        write_image(tmp_path / "photos" / f"{i}.png", 24, 30, seed=i)
    summary = cyclegan.translate_folder(str(run_dir), tmp_path / "photos", tmp_path / "out", device="cpu")
    assert summary.ok and summary.translated == 3
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["0.png", "1.png", "2.png"]
    assert summary.index == tmp_path / "out" / "index.html" and summary.index.is_file()


def test_train_from_python_matches_the_cli_defaults(tmp_path):
    rng = np.random.default_rng(0)
    for domain in ("trainA", "trainB"):
        (tmp_path / "data" / domain).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)).save(tmp_path / "data" / domain / f"{i}.png")
    ckpt = cyclegan.train(tmp_path / "data", name="api", runs_dir=str(tmp_path / "runs"), size=32, ngf=4, ndf=4,
                          max_iters=2, num_workers=0, preview_every=0, device="cpu")
    state = load_checkpoint(ckpt)
    # the CLI's rule: sizes up to 128 pick ResNet-6 when no generator is named
    assert state["model_config"]["netG"] == "resnet_6blocks" and state["model_config"]["ngf"] == 4
    assert state["run_config"]["data"]["size"] == 32
    with pytest.raises(TypeError, match="unknown options"):
        cyclegan.train(tmp_path / "data", learning_rate=1.0)


def test_latent_sampler_is_public():
    sampler = cyclegan.LatentSampler.load()   # the bundled Fashion-MNIST generator
    images = sampler.sample(4, seed=0)
    assert images.shape[0] == 4 and torch.equal(images, sampler.sample(4, seed=0))
