"""Files written by an older version of the code (tests/data/compat/, see make_compat.py there: a
tiny CycleGAN checkpoint and a tiny export) still load through the public loaders and translate a
fixed input exactly as they did then."""

from pathlib import Path

import pytest
import torch

from cyclegan.inference.translator import Translator
from cyclegan.inference.loading import load_generator

COMPAT = Path(__file__).parent / "data" / "compat"
FILES = {"checkpoint": COMPAT / "run_ckpt" / "checkpoints" / "latest.pt",
         "export": COMPAT / "run_export" / "generators.safetensors"}


@pytest.fixture(scope="module")
def expected():
    return torch.load(COMPAT / "expected.pt", weights_only=True)


@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
@pytest.mark.parametrize("kind", ["checkpoint", "export"])
def test_old_files_translate_as_before(expected, kind, direction):
    torch.set_num_threads(1)
    generator = load_generator(FILES[kind], direction)
    with torch.no_grad():
        out = generator.net.eval()(expected["input"])
    torch.testing.assert_close(out, expected[f"{kind}_{direction}_net"], atol=1e-5, rtol=0)
    image = Translator(generator, device="cpu", precision="fp32", winograd=False, size=16).translate(expected["image"].numpy())
    want = expected[f"{kind}_{direction}_translate"].numpy()
    # uint8 after rounding: a 1e-6 difference may flip a value by one step
    assert image.shape == want.shape and abs(image.astype(int) - want.astype(int)).max() <= 1


def test_old_run_folders_load_by_name(expected):
    """What `cyclegan translate --model runs/NAME` resolves: the run folder itself."""
    generator = load_generator(COMPAT / "run_export", "BtoA")
    with torch.no_grad():
        out = generator.net.eval()(expected["input"])
    torch.testing.assert_close(out, expected["export_BtoA_net"], atol=1e-5, rtol=0)
