"""A tensor with the wrong number of channels for the model is one ValueError that says what the
model takes (not a raw convolution error); the README's tensor example works on the grayscale demo."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from cyclegan.inference.loading import BUNDLED_MODELS, load_generator
from cyclegan.inference.translator import Translator
from tiny_models import ROOT, one_thread  # noqa: F401


def test_a_colour_tensor_given_to_the_grayscale_demo_says_what_it_takes():
    translator = Translator(load_generator(BUNDLED_MODELS["demo"], "AtoB"), device="cpu")
    assert translator.input_channels == 1
    with pytest.raises(ValueError, match=r"takes grayscale \(1 channel\) images, got a tensor with 3 channel"):
        translator(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"x.mean\(dim=-3, keepdim=True\)"):
        translator(torch.zeros(3, 32, 32))
    assert translator(torch.zeros(2, 1, 20, 24)).shape == (2, 1, 20, 24)


def test_the_readme_tensor_example_runs_on_the_demo(tmp_path):
    readme = (ROOT / "README.md").read_text()
    lines = [line.split("#")[0].rstrip() for line in readme.splitlines()
             if line.startswith(("c = translator.input_channels", "x = torch.rand(1, c", "y = translator(x)"))]
    assert len(lines) == 3
    code = "\n".join(["import torch, cyclegan",
                      "translator = cyclegan.Translator.from_pretrained('demo', direction='AtoB', device='cpu')",
                      *lines, "print(tuple(y.shape))"])
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "(1, 1, 256, 256)"
