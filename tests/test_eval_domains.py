"""`cyclegan eval domains` and `eval domain-classifier`: the A-vs-B classifier trained on a tiny data
set the tests write (A: dark with a bright horizontal bar, B: bright with a dark vertical bar), its
cache beside the data (reused, retrained when the files change, a per-user fallback), the figures of
a tiny untrained CycleGAN, the command end to end (--json, --strip) and its error messages."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cyclegan.evaluation import domain_classifier_cache
from cyclegan.cli.main import main
from cyclegan.evaluation.domains import DomainJudge, cache_paths, domain_classifier, evaluate_domains
from tiny_models import SIZE, tiny_export

N_TRAIN, N_TEST, PX = 40, 16, 24


def bar_image(domain: str, rng: np.random.Generator, px: int = PX) -> np.ndarray:
    """A: dark background, bright horizontal bar; B: bright background, dark vertical bar."""
    background, bar = (40, 220) if domain == "A" else (210, 30)
    img = np.full((px, px, 3), background, dtype=np.float64)
    start = int(rng.integers(3, px - 9))
    if domain == "A":
        img[start:start + 5, :] = bar
    else:
        img[:, start:start + 5] = bar
    img += rng.normal(0, 12, img.shape) + rng.normal(0, 10, (1, 1, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_bars(root: Path, n_train: int = N_TRAIN, n_test: int = N_TEST, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for domain in "AB":
            folder = root / f"{split}{domain}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(bar_image(domain, rng)).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def bars(tmp_path_factory):
    return write_bars(tmp_path_factory.mktemp("bars") / "data")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "tiny"
    tiny_export(run)
    return run


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """The per-user fallback cache of these tests lives in tmp_path, not in ~/.cache; one torch
    thread (tiny networks on a shared CPU, see conftest.py)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_classifier_learns_the_domains_and_is_cached(bars, caplog):
    caplog.set_level(logging.INFO, logger="cyclegan.domains")
    model, info = domain_classifier(bars, 3, size=16, seed=0, force=True)
    assert info.trained_now and info.path == bars.resolve() / ".cyclegan" / "domain_classifier_c3_s16_seed0.safetensors"
    assert info.path.is_file() and info.meta["test_accuracy"] == {"A": 1.0, "B": 1.0}
    assert info.meta["data_fingerprint"]["A"]["count"] == N_TRAIN
    assert model.cfg.classes == ["A", "B"] and model.cfg.image_size == 16

    mtime = info.path.stat().st_mtime_ns
    caplog.clear()
    again, info2 = domain_classifier(bars, 3, size=16, seed=0)
    assert not info2.trained_now and info2.path == info.path and info.path.stat().st_mtime_ns == mtime
    assert "reusing the domain classifier" in caplog.text
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    assert torch.equal(model(x.float() / 127.5 - 1), again(x.float() / 127.5 - 1))


def test_a_changed_data_set_retrains(tmp_path, caplog):
    data = write_bars(tmp_path / "d", n_train=20, n_test=4)
    caplog.set_level(logging.INFO, logger="cyclegan.domains")
    _, first = domain_classifier(data, 1, size=16, epochs=2)
    assert first.trained_now
    _, second = domain_classifier(data, 1, size=16, epochs=2)
    assert not second.trained_now
    Image.fromarray(bar_image("B", np.random.default_rng(9))).save(data / "trainB" / "extra.png")
    caplog.clear()
    _, third = domain_classifier(data, 1, size=16, epochs=2)
    assert third.trained_now and "trained on other files" in caplog.text
    assert third.meta["data_fingerprint"]["B"]["count"] == 21
    # other settings are other files
    _, other = domain_classifier(data, 1, size=16, seed=1, epochs=2)
    assert other.trained_now and other.path.name == "domain_classifier_c1_s16_seed1.safetensors"


def test_read_only_dataroot_falls_back_to_the_user_cache(tmp_path, monkeypatch, caplog):
    data = write_bars(tmp_path / "d", n_train=10, n_test=2)
    monkeypatch.setattr(domain_classifier_cache, "_writable", lambda folder: False)
    caplog.set_level(logging.INFO, logger="cyclegan.domains")
    _, info = domain_classifier(data, 1, size=16, epochs=1)
    primary, fallback = cache_paths(data, 1, 16, 0)
    assert info.path == fallback and fallback.is_file() and not primary.exists()
    assert str(tmp_path / "xdg" / "cyclegan") in str(fallback) and "not writable" in caplog.text
    _, again = domain_classifier(data, 1, size=16, epochs=1)
    assert not again.trained_now and again.path == fallback


def test_evaluate_domains_of_a_tiny_model(bars, tiny_run, tmp_path):
    result = evaluate_domains(tiny_run, bars, classifier_size=16, device="cpu", kid_subsets=5, batch_size=16)
    assert result["size"] == SIZE and result["n_test"] == {"A": N_TEST, "B": N_TEST}
    assert result["test_accuracy"] == {"A": 1.0, "B": 1.0}
    for direction in ("AtoB", "BtoA"):
        rows = result[direction]
        assert rows["real_target"]["hit_rate"] == 1.0
        assert rows["untranslated"]["hit_rate"] == 0.0
        assert rows["untranslated"]["fid"] > rows["real_target"]["fid"]
        assert rows["untranslated"]["kid"] > rows["real_target"]["kid"]
        t = rows["translated"]
        assert 0.0 <= t["hit_rate"] <= 1.0 and t["fid"] >= 0 and t["n"] == N_TEST
        assert 0 < t["cycle_l1"] < 2 and t["kid_subset_size"] == N_TEST

    # one judge, many models: the same figures, and the real images are not read again (to
    # rounding: another batch size runs other kernels)
    judge = DomainJudge.from_dataroot(bars, 3, classifier=result["classifier"], device="cpu", kid_subsets=5)
    again = judge.evaluate(tiny_run, batch_size=5)
    assert again["AtoB"]["translated"]["fid"] == pytest.approx(result["AtoB"]["translated"]["fid"], rel=1e-3)
    assert again["BtoA"]["translated"]["cycle_l1"] == pytest.approx(result["BtoA"]["translated"]["cycle_l1"],
                                                                    rel=1e-3)
    other = tiny_export(tmp_path / "other", seed=1)
    assert judge.evaluate(other.parent)["AtoB"]["translated"]["cycle_l1"] != again["AtoB"]["translated"]["cycle_l1"]


def test_cli_end_to_end_json_and_strip(bars, tiny_run, tmp_path, capsys):
    out, strip = tmp_path / "r.json", tmp_path / "strip.png"
    assert main(["eval", "domains", "--model", str(tiny_run), "--dataroot", str(bars), "--classifier-size", "16",
                 "--device", "cpu", "--limit", "10", "--kid-subsets", "5", "--subset-size", "6",
                 "--json", str(out), "--strip", str(strip)]) == 0
    text = capsys.readouterr().out
    header = next(line for line in text.splitlines() if line.startswith("direction"))
    assert header.split() == ["direction", "rows", "hit", "rate", "FID", "KID", "cycle", "L1"]
    assert sum(line.startswith(("AtoB ", "BtoA ")) for line in text.splitlines()) == 6
    assert "real target" in text and "untranslated" in text
    result = json.loads(out.read_text())
    assert {"model", "size", "AtoB", "BtoA", "classifier", "test_accuracy", "n_test", "strip"} <= set(result)
    assert result["n_test"] == {"A": 10, "B": 10}
    for direction in ("AtoB", "BtoA"):
        assert set(result[direction]) == {"translated", "untranslated", "real_target"}
        assert {"hit_rate", "fid", "kid", "kid_std", "cycle_l1", "n"} <= set(result[direction]["translated"])
        assert result[direction]["translated"]["kid_subset_size"] == 6
        assert result[direction]["real_target"]["hit_rate"] == 1.0
    with Image.open(strip) as im:
        im.load()
        # 6 rows (input, translation, reconstruction per direction) x 8 columns of 32 px, padded, upscaled 3x
        assert im.size == (3 * (8 * (SIZE + 2) + 2), 3 * (6 * (SIZE + 2) + 2)) and im.mode == "RGB"


def test_domain_classifier_command(bars, capsys):
    args = ["eval", "domain-classifier", "--dataroot", str(bars), "--classifier-size", "16", "--device", "cpu"]
    assert main(args) == 0  # RGB files: 3 channels (trained above, or now when this test runs alone)
    assert main(args) == 0
    text = capsys.readouterr().out.splitlines()[-3:]
    assert "cached" in text[0] and "3 channel(s)" in text[0] and "--force retrains" in text[0]
    assert text[1:] == [f"testA: accuracy 100.00% ({N_TEST} images)", f"testB: accuracy 100.00% ({N_TEST} images)"]


def test_missing_test_folder_is_a_clear_error(tmp_path, tiny_run, capsys):
    data = write_bars(tmp_path / "d", n_train=4, n_test=2)
    for f in (data / "testB").iterdir():
        f.unlink()
    (data / "testB").rmdir()
    assert main(["eval", "domains", "--model", str(tiny_run), "--dataroot", str(data), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"{data / 'testB'} does not exist" in err and "testA and testB" in err
    assert not (data / ".cyclegan").exists()  # nothing trained before the check

    (data / "testB").mkdir()
    assert main(["eval", "domains", "--model", str(tiny_run), "--dataroot", str(data), "--device", "cpu"]) == 2
    assert f"{data / 'testB'} holds 0 image file(s)" in capsys.readouterr().err


def test_channel_mismatch_is_a_clear_error(bars, tiny_run, tmp_path, capsys):
    _, info = domain_classifier(bars, 1, size=16, epochs=1)
    assert main(["eval", "domains", "--model", str(tiny_run), "--dataroot", str(bars), "--device", "cpu",
                 "--classifier", str(info.path)]) == 2
    err = capsys.readouterr().err
    assert "takes 1-channel images" in err and "--channels 3" in err
    missing = tmp_path / "nope.safetensors"
    assert main(["eval", "domains", "--model", str(tiny_run), "--dataroot", str(bars), "--device", "cpu",
                 "--classifier", str(missing)]) == 2
    assert f"--classifier {missing}: no such file" in capsys.readouterr().err


def test_help(capsys):
    for kind in ("domains", "domain-classifier"):
        with pytest.raises(SystemExit) as exit_:
            main(["eval", kind, "--help"])
        assert exit_.value.code == 0 and f"usage: cyclegan eval {kind}" in capsys.readouterr().out
    assert os.environ.get("OMP_NUM_THREADS") == "1"
