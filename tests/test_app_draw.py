"""The app's Draw tab (issue 31, part 5): pix2pix models in the catalogue, a drawing translated as it
grows, the bundled edges model by default; in a real browser, strokes on the canvas change the output."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

from browser import ARTIFACTS, chromium
from cyclegan.app import AppBackend, AppSettings, UserError
from cyclegan.app.actions import drawing_array
from cyclegan.app.published import model_info
from cyclegan.core.checkpoint import export_generators
from cyclegan.inference.sources import BUNDLED_MODELS
from cyclegan.models.pix2pix import Pix2Pix, Pix2PixConfig
from loopback import free_port, serving
from test_pix2pix_published import _published_file
from tiny_models import ROOT, one_thread, tiny_export  # noqa: F401


def pix2pix_export(folder, direction="AtoB"):
    torch.manual_seed(0)
    model = Pix2Pix(Pix2PixConfig(netG="unet_32", ngf=4, ndf=4, input_nc=1, output_nc=1, direction=direction))
    return export_generators(dict(model.generators.items()), model.config_dict(), folder / "generators.safetensors",
                             {"size": 32, "name": folder.name})


def strokes(*lines, size=256) -> dict:
    """A sketchpad value: RGBA, transparent, with black horizontal lines at the given rows."""
    canvas = np.zeros((size, size, 4), dtype=np.uint8)
    for row in lines:
        canvas[row:row + 6, 40:200] = (0, 0, 0, 255)
    return {"background": None, "layers": [], "composite": canvas}


def test_pix2pix_models_are_offered_for_drawing(tmp_path):
    runs, ckpts = tmp_path / "runs", tmp_path / "checkpoints"
    pix2pix_export(runs / "edges")
    tiny_export(runs / "cyclegan")
    _published_file(ckpts)  # pix2pix_facades_label2photo, as `cyclegan download weights` stores it
    app = AppBackend(AppSettings(runs_dir=runs, checkpoints_dir=ckpts, device="cpu", output_dir=tmp_path / "out"))
    cat = app.catalog()
    draw_ids = [c.id for c in cat.draw]
    assert cat.default_draw == "bundled-edges|AtoB"  # the bundled model first
    assert "runs/edges|AtoB" in draw_ids and not any(i.startswith("runs/cyclegan") for i in draw_ids)
    published = next(c for c in cat.draw if c.entry.published == "pix2pix_facades_label2photo")
    assert published.label == "pix2pix_facades_label2photo (published)"
    assert {c.id for c in cat.draw} <= {c.id for c in cat.translate}  # also on the Translate tab
    info = model_info(app, published.id)
    assert "label" in info and "photo" in info and "unet_256" in info and "pix2pix release" in info

    blank = app.draw(strokes(), "runs/edges|AtoB")
    assert blank.display is None and "Draw with the mouse" in blank.info
    one = app.draw(strokes(60), "runs/edges|AtoB")
    two = app.draw(strokes(60, 150), "runs/edges|AtoB")
    assert one.output.size == (32, 32) and one.display.size[0] > 32
    assert not np.array_equal(np.asarray(one.output), np.asarray(two.output))
    with pytest.raises(UserError, match="Pick a pix2pix model"):
        app.draw(strokes(60), "runs/cyclegan|AtoB")


def test_the_bundled_edges_model_draws_an_item(tmp_path):
    assert BUNDLED_MODELS["pix2pix_fmnist_edges"].is_file()
    app = AppBackend(AppSettings(device="cpu", runs_dir=tmp_path / "r", checkpoints_dir=tmp_path / "c",
                                 output_dir=tmp_path / "out"))
    # the outline of a T-shirt-like shape, black on white: the output is mostly white paper with a dark item
    sketch = np.full((128, 128, 3), 255, dtype=np.uint8)
    sketch[20:24, 30:98] = 0
    sketch[20:110, 30:34] = 0
    sketch[20:110, 94:98] = 0
    sketch[106:110, 30:98] = 0
    out = np.asarray(app.draw(sketch, "bundled-edges|AtoB").output, dtype=np.float32)
    inside, outside = out[8:24, 10:22].mean(), out[:3, :].mean()
    assert inside < outside - 60, (inside, outside)


def test_drawing_array_flattens_on_white_and_sees_blank_canvases():
    assert drawing_array(None) is None and drawing_array({"composite": None}) is None
    assert drawing_array(np.full((8, 8), 255, np.uint8)) is None
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[2, 2] = (0, 0, 0, 255)
    out = drawing_array(rgba)
    assert out.shape == (8, 8, 3) and out[0, 0].tolist() == [255, 255, 255] and out[2, 2].tolist() == [0, 0, 0]
    with pytest.raises(UserError):
        drawing_array(np.zeros((8, 8), np.float32))


def test_browser_strokes_on_the_canvas_change_the_output(tmp_path):
    """The app as people run it (bundled models), in Chromium: draw on the Draw tab's canvas with
    the mouse; a translation appears, and another stroke changes it."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "GRADIO_TEMP_DIR": str(tmp_path / "gradio")}
    cmd = [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--runs-dir", "runs", "--checkpoints-dir",
           "checkpoints", "--threads", "1"]
    ARTIFACTS.mkdir(exist_ok=True)
    with serving(cmd, tmp_path, env, port) as (url, _), chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.set_default_timeout(60_000)
        try:
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_role("tab", name="Draw").click()
            canvas = page.locator("#sketch canvas").first
            canvas.wait_for()
            box = canvas.bounding_box()

            def stroke(y0: float, y1: float, x: float) -> None:
                page.mouse.move(box["x"] + box["width"] * x, box["y"] + box["height"] * y0)
                page.mouse.down()
                for i in range(1, 11):
                    page.mouse.move(box["x"] + box["width"] * x, box["y"] + box["height"] * (y0 + (y1 - y0) * i / 10))
                page.mouse.up()

            def shown() -> str:
                page.wait_for_function("() => { const i = document.querySelector('#drawn img');"
                                       " return i && i.complete && i.naturalWidth > 0; }")
                return page.get_attribute("#drawn img", "src")

            stroke(0.25, 0.75, 0.35)
            first = shown()
            page.wait_for_selector("#draw-info :text('in ')")
            stroke(0.25, 0.75, 0.65)
            page.wait_for_function("(old) => { const i = document.querySelector('#drawn img');"
                                   " return i && i.src !== old && i.complete && i.naturalWidth > 0; }", arg=first)
            second = page.get_attribute("#drawn img", "src")
            # the pictures themselves differ, not only their addresses
            first_png, second_png = (page.request.get(page.evaluate("u => new URL(u, document.baseURI).href", u)).body()
                                     for u in (first, second))
            assert first_png[:4] == b"\x89PNG" and first_png != second_png
            page.screenshot(path=str(ARTIFACTS / "app_draw.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "app_draw_failure.png"), full_page=True)
            raise
