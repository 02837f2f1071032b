"""`cyclegan export --format onnx|torchscript`: the files exist, describe themselves, and run
in onnxruntime / torch.jit with PyTorch's output at sizes other than the example's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cyclegan.cli.main import main
from cyclegan.inference.loading import load_generator
from tiny_models import one_thread, original_pth, tiny_export  # noqa: F401


def test_onnx_export_runs_in_onnxruntime_at_any_size(tmp_path, monkeypatch, capsys):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    tiny_export(tmp_path / "runs" / "t")
    monkeypatch.chdir(tmp_path)
    assert main(["export", "runs/t", "--format", "onnx", "--direction", "BtoA"]) == 0
    path = tmp_path / "runs" / "t" / "generator_BtoA.onnx"
    assert capsys.readouterr().out.strip() == "runs/t/generator_BtoA.onnx"
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["cyclegan.direction"] == "BtoA" and meta["cyclegan.size"] == "32"
    assert json.loads(meta["cyclegan.spec"])["ngf"] == 4 and "multiples of 4" in meta["cyclegan.input"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    net = load_generator("runs/t", "BtoA").net
    for shape in ((1, 3, 32, 32), (3, 3, 44, 60)):  # batch, height and width are all dynamic
        x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
        got = session.run(None, {"image": x})[0]
        with torch.inference_mode():
            want = net(torch.from_numpy(x)).numpy()
        assert got.shape == want.shape and np.abs(got - want).max() < 1e-4


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_torchscript_export_of_both_directions_and_of_a_pth(tmp_path, monkeypatch):
    tiny_export(tmp_path / "runs" / "t")
    net = original_pth(tmp_path / "style_x.pth", netG="resnet_6blocks", ngf=4)
    monkeypatch.chdir(tmp_path)
    assert main(["export", "runs/t", "--format", "torchscript", "--output", "ts"]) == 0
    assert main(["export", "style_x.pth", "--format", "torchscript"]) == 0
    x = torch.rand(2, 3, 36, 28) * 2 - 1
    for file, direction in (("ts/generator_AtoB.ts", "AtoB"), ("ts/generator_BtoA.ts", "BtoA")):
        extra = {"cyclegan.json": ""}
        module = torch.jit.load(str(tmp_path / file), _extra_files=extra)
        assert json.loads(extra["cyclegan.json"])["direction"] == direction
        with torch.inference_mode():
            assert torch.allclose(module(x), load_generator("runs/t", direction).net(x), atol=1e-5)
    module = torch.jit.load(str(tmp_path / "style_x.ts"))
    with torch.inference_mode():
        assert torch.allclose(module(x), net(x), atol=1e-5)


@pytest.mark.parametrize("command", ["translate", "download", "eval", "export"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0 and f"usage: cyclegan {command}" in capsys.readouterr().out
