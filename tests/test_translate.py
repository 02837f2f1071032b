"""Inference: loading every kind of generator file, folder translation with its robustness
rules, full resolution and tiles. Images are real files written by the tests."""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cyclegan.core.checkpoint import CheckpointError
from cyclegan.cli.main import main
from cyclegan.inference.loading import GeneratorSpec, LoadedGenerator, infer_spec, load_generator
from cyclegan.inference.translator import Translator
from tiny_models import (SIZE, cli, one_thread, original_pth, tiny_checkpoint, tiny_export,  # noqa: F401
                         tiny_generators, write_image)


def _out(gen: LoadedGenerator, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return gen.net(x)


X = torch.rand(1, 3, 32, 40, generator=torch.Generator().manual_seed(5)) * 2 - 1


# -- loading -----------------------------------------------------------------------------------


def test_export_checkpoint_and_run_folder_give_the_same_generators(tmp_path):
    run = tmp_path / "runs" / "h2z"
    export = tiny_export(run)
    ckpt = tiny_checkpoint(run)
    os.utime(export, (time.time() + 10, time.time() + 10))  # export newer: the folder picks it
    reference = tiny_generators()
    for direction, key in (("AtoB", "G_A"), ("BtoA", "G_B")):
        with torch.inference_mode():
            want = reference[key](X)
        for source in (run, export, ckpt):
            gen = load_generator(source, direction)
            assert gen.direction == direction and gen.size == SIZE and gen.spec.ngf == 4
            assert torch.allclose(_out(gen, X), want, atol=1e-6), (source, direction)
    assert load_generator(run).source == export
    os.utime(ckpt, (time.time() + 20, time.time() + 20))  # a run still training: the newer checkpoint wins
    assert load_generator(run).source == ckpt
    # a bare name is looked up in runs/
    assert load_generator("h2z", runs_dir=tmp_path / "runs").name == "h2z"


def test_published_pth_drops_running_stats_and_takes_its_architecture_from_the_name(tmp_path):
    net = original_pth(tmp_path / "horse2zebra.pth", ngf=4)  # the table says ngf 64: must be overridden
    with pytest.raises(CheckpointError, match=r"horse2zebra.pth does not fit a resnet_9blocks, ngf 64.*--ngf"):
        load_generator(tmp_path / "horse2zebra.pth")
    gen = load_generator(tmp_path / "horse2zebra.pth", arch={"ngf": 4})
    assert gen.direction is None and gen.size == 256 and gen.name == "horse2zebra"
    assert torch.allclose(_out(gen, X), net(X), atol=1e-6)
    with pytest.raises(ValueError, match="single generator.*zebra2horse"):
        load_generator(tmp_path / "horse2zebra.pth", "BtoA", arch={"ngf": 4})


def test_unknown_pth_architecture_is_read_off_the_weights(tmp_path):
    net = original_pth(tmp_path / "checkpoints" / "mystyle_pretrained" / "latest_net_G.pth",
                       netG="resnet_6blocks", ngf=4)
    gen = load_generator("mystyle", checkpoints_dir=tmp_path / "checkpoints")  # the download layout
    assert gen.spec == GeneratorSpec(netG="resnet_6blocks", ngf=4) and gen.name == "mystyle"
    assert torch.allclose(_out(gen, X), net(X), atol=1e-6)


@pytest.mark.parametrize("netG", ["resnet_9blocks", "resnet_6blocks"])
@pytest.mark.parametrize("norm, dropout", [("instance", False), ("batch", False), ("batch", True)])
def test_architecture_inference(netG, norm, dropout):
    spec = GeneratorSpec(netG=netG, ngf=8, norm=norm, dropout=dropout, input_nc=1, output_nc=3)
    assert infer_spec(spec.build().state_dict()) == asdict(spec)


class NotWeights:  # pickled by reference: loading it would need to run code
    pass


def test_pickled_code_is_refused(tmp_path):
    torch.save({"model": NotWeights()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="weights_only"):
        load_generator(tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="no such file.*cyclegan download weights horse2zebra"):
        load_generator("horse2zebra", runs_dir=tmp_path, checkpoints_dir=tmp_path)


# -- folders -----------------------------------------------------------------------------------


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "photos"
    write_image(root / "a.jpg", 40, 52, seed=1)
    write_image(root / "a.png", 36, 36, seed=2)              # same stem as a.jpg: both must survive
    write_image(root / "trip" / "day1" / "b.png", 30, 45, seed=3)
    write_image(root / "trip" / "gray.png", 33, 33, channels=1, seed=4)
    (root / "trip" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "notes.txt").write_text("not an image")
    return root


def test_translate_folder_mirrors_tree_reports_failures_and_resumes(tmp_path, photos, monkeypatch, capsys):
    tiny_export(tmp_path / "runs" / "t")
    monkeypatch.chdir(tmp_path)
    args = ["translate", "--model", "runs/t", "--input", "photos", "--output", "out", "--no-progress",
            "--batch-size", "2", "--workers", "2"]
    assert main(args) == 1  # one unreadable input
    err = capsys.readouterr().err
    assert "photos/trip/broken.jpg" in err and "4 translated, 0 skipped, 1 failed" in err
    out = tmp_path / "out"
    produced = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert produced == ["a.jpg.png", "a.png.png", "index.html", "trip/day1/b.png", "trip/gray.png"]
    for name in ("a.jpg.png", "trip/gray.png"):
        with Image.open(out / name) as im:
            assert im.size == (SIZE, SIZE) and im.mode == "RGB"
    page = (out / "index.html").read_text()
    assert 'src="trip/day1/b.png"' in page and "../photos/trip/day1/b.png" in page and "broken" not in page

    stamp = (out / "trip" / "day1" / "b.png").stat().st_mtime_ns
    assert main(args) == 1  # a second run skips what exists (the broken file still fails)
    assert "0 translated, 4 skipped" in capsys.readouterr().err
    assert (out / "trip" / "day1" / "b.png").stat().st_mtime_ns == stamp
    (out / "a.png.png").unlink()  # as if killed before writing it
    assert main(args) == 1
    assert "1 translated, 3 skipped" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 1
    assert "4 translated, 0 skipped" in capsys.readouterr().err
    assert (out / "trip" / "day1" / "b.png").stat().st_mtime_ns != stamp
    assert not [p for p in out.rglob(".*")]  # atomic writes leave no temporary files


def test_output_in_input_is_refused(tmp_path, photos, monkeypatch, capsys):
    tiny_export(tmp_path / "runs" / "t")
    monkeypatch.chdir(tmp_path)
    for output in ("photos", "photos/translated", "./photos/../photos"):
        assert main(["translate", "--model", "runs/t", "--input", "photos", "--output", output]) == 2
        assert "inside it" in capsys.readouterr().err
    assert not (photos / "translated").exists()


def test_full_resolution_single_file_side_by_side_and_jpeg(tmp_path, monkeypatch, capsys):
    tiny_export(tmp_path / "runs" / "t")
    write_image(tmp_path / "one.png", 37, 50, seed=7)  # not a multiple of 4: padded and cropped back
    monkeypatch.chdir(tmp_path)
    base = ["translate", "--model", "runs/t", "--input", "one.png", "--no-progress"]
    assert main([*base, "--output", "full.png", "--full-res"]) == 0
    assert main([*base, "--output", "pair.jpg", "--full-res", "--side-by-side", "--quality", "100"]) == 0
    assert main([*base, "--output", "rough.jpg", "--full-res", "--quality", "20"]) == 0
    assert Path("rough.jpg").stat().st_size < Path("pair.jpg").stat().st_size / 2
    assert main([*base, "--output", "small", "--direction", "BtoA"]) == 0
    with Image.open("full.png") as a, Image.open("pair.jpg") as b, Image.open("small/one.png") as c:
        assert a.size == (50, 37) and b.size == (100, 37) and b.format == "JPEG" and c.size == (SIZE, SIZE)
        # the right half of the side-by-side image is the translation
        right = np.asarray(b)[:, 50:].astype(int)
        assert np.abs(right - np.asarray(a).astype(int)).mean() < 4  # JPEG at quality 100


def test_tiled_output_matches_untiled():
    """Tiles get the whole image's InstanceNorm statistics and are blended across overlaps, so
    they match one untiled pass closely (not exactly: a 48 px overlap is less than the
    generator's receptive field)."""
    spec = GeneratorSpec(netG="resnet_6blocks", ngf=4)
    gens = tiny_generators()
    gen = LoadedGenerator(gens["G_A"], spec, "AtoB", SIZE, Path("mem"), "t")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (198, 178, 3), dtype=np.uint8)
    # fp32 on every CPU (auto is bf16 on CPUs with AMX): the bounds below are tiling's alone
    whole = Translator(gen, device="cpu", precision="fp32", full_res=True, tile=0)
    tiled = Translator(gen, device="cpu", precision="fp32", full_res=True, tile=128, tile_overlap=48)
    x = whole.prepare(image)[None]
    a, b = whole.forward(x), tiled.forward(x)
    assert a.shape == b.shape == (1, 3, 198, 178)
    diff = (a - b).abs()
    assert diff.max() < 0.02 and diff.mean() < 2e-3, (float(diff.max()), float(diff.mean()))
    # a tile as large as the image is one untiled pass
    assert torch.equal(Translator(gen, device="cpu", precision="fp32", full_res=True, tile=256).forward(x), a)


def test_real_command(tmp_path):
    tiny_export(tmp_path / "runs" / "t")
    write_image(tmp_path / "in" / "x.png", 30, 30)
    r = cli("translate", "--model", "runs/t", "--input", "in", "--output", "out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "1 translated" in r.stderr and "img/s" in r.stderr and (tmp_path / "out" / "x.png").is_file()


def test_inference_imports_no_training_code(tmp_path):
    """The app builds on cyclegan.translate: it must not pull in the training loop or the
    albumentations data pipeline."""
    import subprocess
    import sys

    code = ("import sys, cyclegan.inference.translator; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('cyclegan', 'albumentations', 'tensorboard')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert r.returncode == 0, r.stderr
    loaded = r.stdout
    assert "cyclegan.training" not in loaded and "cyclegan.data.transforms" not in loaded and "albumentations" not in loaded
