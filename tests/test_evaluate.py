"""`cyclegan eval`: FID/KID with user-supplied feature extractors (a Python function and a
TorchScript module the tests write), the offline Inception message, and cycle reconstruction."""

from __future__ import annotations

import json
import socket
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cyclegan.evaluation import fid as evaluate
from cyclegan.cli.main import main
from cyclegan.evaluation.metrics import frechet_distance, kernel_distance
from cyclegan.inference.translator import Translator
from cyclegan.inference.loading import load_generator
from tiny_models import one_thread, tiny_export, write_image  # noqa: F401

FEATURES_PY = """
import torch

def features(x):
    # per-channel mean and standard deviation, and a coarse 2x2 layout: 18 numbers per image
    pooled = torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)
    return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3)), pooled], dim=1)
"""


def reference_features(folder: Path) -> torch.Tensor:
    """The same features, computed here straight from the files."""
    rows = []
    for path in sorted(folder.glob("*.png")):
        x = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None].double() / 255
        pooled = torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)
        rows.append(torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3)), pooled], dim=1))
    return torch.cat(rows)


@pytest.fixture
def folders(tmp_path):
    for i in range(10):
        write_image(tmp_path / "real" / f"{i}.png", 24, 24, seed=i)
        # a different distribution: darker and flatter
        arr = np.asarray(Image.open(write_image(tmp_path / "tmp" / f"{i}.png", 24, 24, seed=100 + i)))
        (tmp_path / "fake").mkdir(exist_ok=True)
        Image.fromarray((arr * 0.6).astype(np.uint8)).save(tmp_path / "fake" / f"{i}.png")
    (tmp_path / "features.py").write_text(textwrap.dedent(FEATURES_PY))
    return tmp_path


def test_fid_and_kid_with_a_python_feature_function(folders, monkeypatch, capsys):
    monkeypatch.chdir(folders)
    assert main(["eval", "fid", "--real", "real", "--fake", "fake", "--features", "features.py:features",
                 "--device", "cpu", "--json", "r.json", "--kid-subsets", "5", "--no-progress"]) == 0
    result = json.loads(Path("r.json").read_text())
    real, fake = reference_features(folders / "real"), reference_features(folders / "fake")
    assert result["fid"] == pytest.approx(frechet_distance(real, fake), rel=1e-4)
    kid, _ = kernel_distance(real, fake, subsets=5, subset_size=1000)
    assert result["kid"] == pytest.approx(kid, rel=1e-3, abs=1e-6)
    assert result["n_real"] == result["n_fake"] == 10 and result["dims"] == 18 and result["fid"] > 0.01
    assert f"FID {result['fid']:.4f}" in capsys.readouterr().out
    assert main(["eval", "fid", "--real", "real", "--fake", "real", "--features", "features.py:features",
                 "--json", "same.json", "--no-progress"]) == 0
    assert json.loads(Path("same.json").read_text())["fid"] == pytest.approx(0.0, abs=1e-6)


class MeanMax(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_fid_with_torchscript_and_torch_export_feature_modules(folders, monkeypatch):
    torch.jit.save(torch.jit.script(MeanMax()), folders / "features.pt")
    torch.export.save(torch.export.export(MeanMax(), (torch.rand(2, 3, 16, 16),),
                                          dynamic_shapes=({0: torch.export.Dim("n")},)), folders / "features.pt2")
    monkeypatch.chdir(folders)
    results = []
    for spec in ("features.pt", "features.pt2"):
        assert main(["eval", "fid", "--real", "real", "--fake", "fake", "--features", spec,
                     "--image-size", "16", "--json", "r.json", "--no-progress"]) == 0
        results.append(json.loads(Path("r.json").read_text()))
    assert results[0]["dims"] == 6 and results[0]["fid"] > 0
    assert results[0]["fid"] == pytest.approx(results[1]["fid"], rel=1e-3)  # two runtimes: kernels may differ


def test_bad_feature_specs_name_the_problem(folders, monkeypatch, capsys):
    monkeypatch.chdir(folders)
    for spec, message in (("nothere.py:features", "no such file"), ("features.py:missing", "no function 'missing'"),
                          ("missing.pt", "no such file")):
        assert main(["eval", "fid", "--real", "real", "--fake", "fake", "--features", spec]) == 2
        assert message in capsys.readouterr().err


def test_inception_offline_fails_with_a_clear_message(folders, monkeypatch, capsys):
    with socket.socket() as s:  # nothing listens here: the download fails as it would offline
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(evaluate, "INCEPTION_FID_URL", f"http://127.0.0.1:{port}/weights-inception.pth")
    monkeypatch.setenv("TORCH_HOME", str(folders / "torch_home"))
    monkeypatch.chdir(folders)
    assert main(["eval", "fid", "--real", "real", "--fake", "fake"]) == 2
    err = capsys.readouterr().err
    assert "Inception-v3 weights for FID are not in" in err and "--inception-weights" in err
    assert "--features" in err and "Traceback" not in err


def test_cycle_reconstruction_error(tmp_path, monkeypatch, capsys):
    tiny_export(tmp_path / "runs" / "t")
    for i in range(3):
        write_image(tmp_path / "horses" / f"{i}.png", 28 + 4 * i, 32, seed=i)
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "cycle", "--model", "runs/t", "--input", "horses", "--json", "c.json", "--no-progress",
                 "--device", "cpu"]) == 0
    result = json.loads(Path("c.json").read_text())
    g, f = load_generator("runs/t", "AtoB"), load_generator("runs/t", "BtoA")
    forward, backward = Translator(g, device="cpu"), Translator(f, device="cpu", full_res=True)
    x = forward.prepare(np.asarray(Image.open("horses/1.png")))[None]
    want = (backward.forward(forward.forward(x)) - x).abs().mean().item()
    assert result["n"] == 3 and result["per_image"]["1.png"] == pytest.approx(want, rel=1e-5)
    assert result["mean"] == pytest.approx(np.mean(list(result["per_image"].values())))
    assert "cycle L1 AtoB then back" in capsys.readouterr().out
