"""The app as a new user meets it (issue 28), in Debian's Chromium at desktop (1280 px) and phone
(390 px) width: `python app.py` in a subprocess on the bundled demo models plus a tiny run, the
published models' server unreachable (a closed port on 127.0.0.1), as on an offline machine."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from browser import ARTIFACTS, chromium
from loopback import free_port, serving
from test_app_tabs import _show_tab
from test_train import make_domain
from tiny_models import ROOT, tiny_export

EXAMPLES = ROOT / "cyclegan" / "assets" / "examples"
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """app.py on the bundled models plus runs/tiny; yields (url, folder)."""
    tmp = tmp_path_factory.mktemp("first-hour")
    tiny_export(tmp / "runs" / "tiny")
    (tmp / "runs" / "tiny" / "config.yaml").write_text("data:\n  dataroot: data\n")  # what training writes
    for seed, folder in enumerate(("trainA", "trainB", "testA", "testB")):
        make_domain(tmp / "data" / folder, 4, seed, size=(32, 32))
    port = free_port()
    offline = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "GRADIO_TEMP_DIR": str(tmp / "gradio"), "CYCLEGAN_BASE_URL": offline}
    with serving([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--runs-dir", "runs",
                  "--checkpoints-dir", "checkpoints", "--threads", "1"], tmp, env, port) as (url, _):
        yield url, tmp


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture(params=list(WIDTHS))
def page(request, app, browser):
    width, height = WIDTHS[request.param]
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(60_000)
    page.goto(app[0], wait_until="domcontentloaded")
    page.wait_for_selector("#model-info :text('T-shirt/top \u2192 Pullover')")
    ARTIFACTS.mkdir(exist_ok=True)
    yield page
    shot = ARTIFACTS / f"first_hour_{request.node.originalname}_{request.param}.png"
    page.screenshot(path=str(shot), full_page=True)
    page.close()


def test_a_small_batch_is_seen_whole_as_thumbnails_that_open_large(page):
    _show_tab(page, "Batch")
    files = [EXAMPLES / name for name in ("tshirt_1.png", "tshirt_2.png", "pullover_1.png", "pullover_2.png")]
    page.locator("#batch-files input[type=file]").set_input_files([str(f) for f in files])
    page.wait_for_function("() => document.querySelector('#batch-files').textContent.includes('pullover_2')")
    page.click("#batch-button")
    page.wait_for_function("() => document.querySelectorAll('#batch-gallery .thumbnail-item img').length == 8 && "
                           "[...document.querySelectorAll('#batch-gallery .thumbnail-item img')].every("
                           "i => i.complete && i.naturalWidth > 0)")
    page.locator("#batch-gallery").scroll_into_view_if_needed()
    seen = page.evaluate("""() => {
        const wrap = document.querySelector('#batch-gallery .grid-wrap').getBoundingClientRect();
        const cells = [...document.querySelectorAll('#batch-gallery .thumbnail-item')].map(c => {
            const r = c.getBoundingClientRect();
            return {top: r.top, bottom: r.bottom, left: r.left, right: r.right, width: r.width};
        });
        const captions = [...document.querySelectorAll('#batch-gallery .caption-label')].map(
            c => c.scrollWidth <= c.clientWidth + 1 && c.scrollHeight <= c.clientHeight + 1);
        return {wrap: {top: wrap.top, bottom: wrap.bottom, left: wrap.left, right: wrap.right},
                cells, captions, view: window.innerHeight};
    }""")
    wrap, cells = seen["wrap"], seen["cells"]
    # every cell lies inside the gallery's box (nothing hidden behind its scroll bar) ...
    assert all(c["top"] >= wrap["top"] - 1 and c["bottom"] <= wrap["bottom"] + 1 and
               c["left"] >= wrap["left"] - 1 and c["right"] <= wrap["right"] + 1 for c in cells), seen
    # ... the whole batch fits in the window at once, and every caption is shown whole
    assert max(c["bottom"] for c in cells) - min(c["top"] for c in cells) <= seen["view"], seen
    assert all(seen["captions"]) and len(seen["captions"]) == 8, seen
    # an input and its translation side by side, in one row
    for i in range(0, 8, 2):
        assert abs(cells[i]["top"] - cells[i + 1]["top"]) < 1 and cells[i]["right"] <= cells[i + 1]["left"]
    page.locator("#batch-gallery .thumbnail-item").nth(1).click()
    page.wait_for_selector("#batch-gallery [data-testid='detailed-image']")
    big = page.locator("#batch-gallery [data-testid='detailed-image']").bounding_box()
    assert big["width"] > cells[1]["width"] * 1.2 or big["height"] > cells[1]["width"] * 1.2


def _pick_model(page, label: str) -> None:
    page.locator("#model input").click()
    page.locator("ul[role=listbox] li", has_text=label).click()


def test_the_evaluation_hint_is_a_command_that_works_as_pasted(page, app):
    folder = app[1]
    info = page.locator("#model-info")
    assert "no evaluation saved" in info.inner_text() and "cyclegan eval" not in info.inner_text()  # the demo
    _pick_model(page, "runs/tiny: A \u2192 B")
    page.wait_for_selector("#model-info code:has-text('cyclegan eval domains')")
    command = page.locator("#model-info code").inner_text()
    assert "RUN" not in command and "--dataroot data" in command
    args = shlex.split(command)
    assert args[:3] == ["cyclegan", "eval", "domains"]
    r = subprocess.run([sys.executable, "-m", "cyclegan", *args[1:]], cwd=folder, capture_output=True, text=True,
                       timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    try:
        assert r.returncode == 0, r.stderr[-2000:]
        _pick_model(page, "runs/tiny: B \u2192 A")
        page.wait_for_selector("#model-info :text('evaluation: hit rate')")
        assert "cyclegan eval" not in info.inner_text()
    finally:
        (folder / "runs" / "tiny" / "eval" / "domains.json").unlink(missing_ok=True)


def test_an_example_keeps_the_users_model_and_says_when_it_switches(page):
    _pick_model(page, "runs/tiny: A \u2192 B")
    page.wait_for_selector("#model-info :text('A \u2192 B')")
    page.locator("#examples button", has_text="Pullover 1").click()
    page.wait_for_selector("#input-image img[src*='pullover_1']")
    page.wait_for_timeout(500)
    assert page.locator("#model input").input_value() == "runs/tiny: A \u2192 B"
    assert "The model is now" not in page.locator("#translate-info").inner_text()
    # on the demo, the example picks the direction that translates it, and the page says so
    _pick_model(page, "Fashion-MNIST demo: T-shirt/top \u2192 Pullover")
    page.locator("#examples button", has_text="Pullover 2").click()
    page.wait_for_selector("#translate-info :text('The model is now')")
    assert page.locator("#model input").input_value().endswith("Pullover \u2192 T-shirt/top")
    page.wait_for_selector("#model-info :text('Pullover \u2192 T-shirt/top')")


def test_a_published_button_says_its_size_and_offline_says_where_the_file_goes(page, app):
    page.click("#published .label-wrap")
    button = page.locator("#get-style_monet")
    assert button.inner_text().strip() == "style_monet (45.5 MB)"
    assert "cyclegan download weights NAME" in page.locator("#published-status").inner_text()
    button.click()
    page.wait_for_selector("#published-status :text('cannot be reached')", timeout=30_000)
    text = page.locator("#published-status").inner_text()
    assert "/pretrained_models/style_monet.pth" in text and "checkpoints/style_monet_pretrained/latest_net_G.pth" in text
    assert "cyclegan download weights style_monet" in text
    # copying the file there by hand, as the message says, makes it a model after Rescan
    from tiny_models import original_pth

    original_pth(app[1] / "checkpoints" / "style_monet_pretrained" / "latest_net_G.pth", ngf=4)
    try:
        page.locator("button", has_text="Rescan models").first.click()
        page.locator("#model input").click()
        page.wait_for_selector("ul[role=listbox] li:has-text('style_monet (published)')")
        page.keyboard.press("Escape")
    finally:
        import shutil

        shutil.rmtree(app[1] / "checkpoints" / "style_monet_pretrained")


def test_tabs_model_name_and_examples_are_in_view_on_the_first_screen(page):
    # the examples render after the model panel (what the page fixture waits for): wait for them too
    page.wait_for_selector("#examples button", state="attached")
    page.wait_for_selector("#model input", state="attached")
    seen = page.evaluate("""() => {
        const input = document.querySelector('#model input');
        const box = input.getBoundingClientRect();
        const caret = [...document.querySelectorAll('#model svg')].map(s => s.getBoundingClientRect().left);
        return {
            tabs: [...document.querySelectorAll('[role=tab]')].filter(t => t.checkVisibility()).map(
                t => t.textContent.trim()),
            more: !!document.querySelector("button[aria-label='More tabs']"),
            fits: input.scrollWidth <= input.clientWidth,
            text_end: box.right - parseFloat(getComputedStyle(input).paddingRight),
            caret: Math.min(...caret),
            example: document.querySelector('#examples button').getBoundingClientRect().top,
            view: window.innerHeight};
    }""")
    assert {"Translate", "Batch", "Video", "Generate"} <= set(seen["tabs"]) and not seen["more"], seen
    assert seen["fits"] and seen["text_end"] <= seen["caret"] + 1, seen   # the whole name, clear of the caret
    assert seen["example"] < seen["view"], seen                           # no scrolling to find an example


def test_the_generate_tab_shows_only_its_own_controls(page):
    _show_tab(page, "Generate")
    page.wait_for_selector("#model", state="hidden")
    assert not page.locator("#published").is_visible() and not page.locator("#model-info").is_visible()
    rescans = [b for b in page.locator("button", has_text="Rescan models").all() if b.is_visible()]
    assert len(rescans) == 1
    page.click("#generate-button")
    page.wait_for_selector("#samples img")
    _show_tab(page, "Batch")
    page.wait_for_selector("#model", state="visible")
    assert page.locator("#published").is_visible()
    assert len([b for b in page.locator("button", has_text="Rescan models").all() if b.is_visible()]) == 1


def test_full_resolution_and_colour_notes_sit_under_the_result_and_the_halves_are_labelled(page, tmp_path):
    from tiny_models import write_image

    photo = write_image(tmp_path / "my_photo.png", 112, 112)  # colour, for the grayscale 32 px demo
    page.locator("#input-image input[type=file]").set_input_files(str(photo))
    page.wait_for_selector("#input-image img")
    page.get_by_label("Full resolution").check()
    page.click("#translate-button")
    page.wait_for_selector("#translate-info :text('trained at 32 px; at full resolution')")
    info = page.locator("#translate-info").inner_text()
    assert "112x112" in info and "3.5x larger" in info
    assert "my_photo.png is a colour image and this model is grayscale" in info
    page.wait_for_timeout(500)
    assert page.locator(".toast-body:visible").count() == 0  # nothing pops up over the model panel
    # each half says what it is, in a corner of the box, in view
    labels = page.evaluate("""() => {
        const box = document.querySelector('#before-after');
        return ['::before', '::after'].map(p => {
            const s = getComputedStyle(box, p);
            return [s.content, s.position, s.display, s.visibility];
        });
    }""")
    assert labels == [['"before: the input"', "absolute", "block", "visible"],
                      ['"after: the translation"', "absolute", "block", "visible"]], labels
