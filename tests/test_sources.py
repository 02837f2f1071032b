"""One model-source resolver (cyclegan.inference.sources): every kind of source, typed as a user
types it, resolves to the same file through every entry point that takes a model: translate /
eval / export (load_generator), the MNIST sampler, the app's --model, and download's table."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cyclegan.app.actions import AppBackend
from cyclegan.app.settings import AppSettings, UserError
from cyclegan.cli.main import main
from cyclegan.core.checkpoint import CheckpointError
from cyclegan.inference.download import DownloadError, download_weights
from cyclegan.inference.loading import load_generator
from cyclegan.inference.mnist_sampler import LatentSampler
from cyclegan.inference.sources import BUNDLED_MODELS, PUBLISHED_GENERATORS, published_name, resolve
from test_app import latent_export
from tiny_models import one_thread, original_pth, tiny_checkpoint, tiny_export, write_image  # noqa: F401


@pytest.fixture
def sources(tmp_path):
    """Each kind of model source, as real tiny files in runs/ and checkpoints/."""
    runs, ckpts = tmp_path / "runs", tmp_path / "checkpoints"
    export = tiny_export(runs / "exported")
    checkpoint = tiny_checkpoint(runs / "training")
    pth = tmp_path / "mystyle.pth"
    original_pth(pth, netG="resnet_6blocks")
    published = ckpts / "horse2zebra_pretrained" / "latest_net_G.pth"
    original_pth(published, ngf=4)  # the published architecture but ngf 4: loading needs --ngf 4
    latent = latent_export(runs / "digits" / "generators.safetensors")
    return {"runs": runs, "ckpts": ckpts, "export": export, "checkpoint": checkpoint, "pth": pth,
            "published": published, "latent": latent}


def _typed(s):
    """(what the user types, the file it must resolve to) for every image-to-image source."""
    return [(s["runs"] / "exported", s["export"]), (s["export"], s["export"]),
            (s["runs"] / "training", s["checkpoint"]), (s["checkpoint"], s["checkpoint"]),
            ("training", s["checkpoint"]), (s["pth"], s["pth"]), ("horse2zebra", s["published"]),
            ("demo", BUNDLED_MODELS["demo"])]


def test_each_source_resolves_through_translate_and_eval(sources):
    dirs = {"runs_dir": sources["runs"], "checkpoints_dir": sources["ckpts"]}
    for typed, file in _typed(sources):
        assert resolve(typed, **dirs).file == file, typed
        arch = {"ngf": 4} if typed == "horse2zebra" else None
        gen = load_generator(typed, arch=arch, **dirs)  # what translate, eval and export call
        assert gen.source == file, typed
    assert resolve("horse2zebra", **dirs).published == "horse2zebra"
    assert resolve(sources["pth"]).published is None


def test_each_source_resolves_through_the_app(sources):
    settings = {"runs_dir": sources["runs"], "checkpoints_dir": sources["ckpts"], "bundled": False, "device": "cpu",
                "output_dir": sources["runs"].parent / "out"}
    for typed, file in _typed(sources):
        app = AppBackend(AppSettings(model=Path(typed), **settings))
        entry = app.catalog().translate[0].entry
        assert "(--model)" in entry.label and (entry.source == file or resolve(entry.source).file == file), typed
    app = AppBackend(AppSettings(model=Path("horse2zebra"), **settings))
    assert app.catalog().translate[0].entry.published == "horse2zebra"
    with pytest.raises(UserError, match="no such file or folder.*bundled model \\(demo"):
        AppBackend(AppSettings(model=Path("nosuchmodel"), **settings))


def test_each_source_resolves_through_the_sampler(sources, monkeypatch):
    for typed in (sources["latent"], sources["latent"].parent, "digits"):
        sampler = LatentSampler.load(typed, runs_dir=sources["runs"])
        assert sampler.path == sources["latent"] and sampler.sample(2, seed=0).shape[0] == 2
    assert LatentSampler.load().path == BUNDLED_MODELS["fashion_mnist_dcgan"]
    assert LatentSampler.load("fashion_mnist_dcgan").path == BUNDLED_MODELS["fashion_mnist_dcgan"]
    with pytest.raises(CheckpointError, match="CycleGAN generator export"):
        LatentSampler.load("demo")


def test_translate_command_takes_a_bundled_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    image = write_image(tmp_path / "in.png", 32, 32, channels=1)
    assert main(["translate", "--model", "demo", "--input", str(image), "--output", "out.png", "--device", "cpu",
                 "--no-progress", "--no-html"]) == 0
    assert (tmp_path / "out.png").is_file() and "fmnist_tshirt2pullover" in capsys.readouterr().err


def test_unknown_name_says_what_is_accepted(tmp_path):
    with pytest.raises(CheckpointError) as e:
        resolve("nosuchmodel", runs_dir=tmp_path, checkpoints_dir=tmp_path)
    message = str(e.value)
    assert "\n" not in message and message.startswith("--model nosuchmodel: no such file or folder")
    for accepted in ("run folder", "checkpoint .pt", ".safetensors export", ".pth", "cyclegan download weights",
                     "demo"):
        assert accepted in message
    with pytest.raises(CheckpointError, match="no such file or folder; pass a run folder"):
        resolve(tmp_path / "missing" / "model.pt")


def test_download_reads_the_same_published_table(tmp_path, capsys):
    with pytest.raises(DownloadError, match="unknown published model 'nosuch'; available: apple2orange"):
        download_weights("nosuch", tmp_path)
    assert main(["download", "list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in PUBLISHED_GENERATORS)


def test_one_published_name_rule():
    assert published_name(Path("checkpoints/horse2zebra_pretrained/latest_net_G.pth")) == "horse2zebra"
    assert published_name(Path("anywhere/style_monet.pth")) == "style_monet"
    assert published_name(Path("runs/orig/latest_net_G_A.pth")) == "orig"
