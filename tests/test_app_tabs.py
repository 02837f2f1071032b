"""The app's published-model buttons, model info panel, before/after slider, labelled examples,
Batch and Video tabs and its named API: `python app.py` in a subprocess on the bundled demo
models, a real HTTP server on 127.0.0.1 serving a small original-layout .pth as the published
horse2zebra (slowly, so that the page's progress bar can be seen), gradio_client for the API and
Debian's Chromium under Playwright for what a person sees, at desktop and phone (390 px) width."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import zipfile
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cyclegan.app import AppBackend, AppSettings, UserError
from cyclegan.app.published import download_published, model_info
from browser import ARTIFACTS, chromium
from loopback import LoopbackHTTP, free_port, serving
from test_video import frames_of, write_clip
from tiny_models import ROOT, one_thread, original_pth, tiny_export, write_image  # noqa: F401

EXAMPLES = ROOT / "cyclegan" / "assets" / "examples"
API = {"/translate", "/translate_batch", "/translate_video", "/models", "/model_info", "/download_model",
       "/generate", "/interpolate"}


class SlowServer(LoopbackHTTP):
    """Serves ``files`` (URL path -> bytes) in ``pieces`` parts with ``delay`` s between them."""

    def __init__(self, files: dict[str, bytes], pieces: int = 8, delay: float = 0.3) -> None:
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append(self.path)
                data = files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                step = -(-len(data) // pieces)
                for i in range(0, len(data), step):
                    self.wfile.write(data[i:i + step])
                    self.wfile.flush()
                    time.sleep(delay)

        self.start(Handler)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """app.py on the bundled models plus runs/tiny, with published weights from a SlowServer;
    yields (url, folder, server)."""
    tmp = tmp_path_factory.mktemp("tabs")
    tiny_export(tmp / "runs" / "tiny")
    original_pth(tmp / "served" / "horse2zebra.pth", ngf=4)  # the published names and layout, tiny
    data = (tmp / "served" / "horse2zebra.pth").read_bytes()
    files = {f"/pretrained_models/{name}.pth": data for name in ("horse2zebra", "zebra2horse")}
    weights = SlowServer(files)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "GRADIO_TEMP_DIR": str(tmp / "gradio"), "CYCLEGAN_BASE_URL": weights.url}
    try:
        with serving([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--runs-dir", "runs",
                      "--checkpoints-dir", "checkpoints", "--threads", "1"], tmp, env, port) as (url, _):
            yield url, tmp, weights
    finally:
        weights.close()


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client

    return Client(app[0], verbose=False, download_files=str(app[1] / "downloads"))


# -- the API -------------------------------------------------------------------------------------


def test_api_endpoints_have_meaningful_names_and_return_files(client):
    from gradio_client import handle_file

    named = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert API <= set(named) and not [n for n in named if "value_" in n or "lambda" in n or n.startswith("/on_")]
    assert [p["parameter_name"] for p in named["/translate"]["parameters"]] == ["image", "model", "full_resolution"]
    path = client.predict(handle_file(str(EXAMPLES / "tshirt_1.png")), "bundled|AtoB", api_name="/translate")
    with Image.open(path) as img:
        assert img.size == (32, 32) and img.mode == "L"
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="full_resolution must be true or false, got 'train'"):
        client.predict(handle_file(str(EXAMPLES / "tshirt_1.png")), "bundled|AtoB", "train", api_name="/translate")
    ids = [row[0] for row in client.predict(api_name="/models")]
    assert ids[:2] == ["bundled|AtoB", "bundled|BtoA"] and "runs/tiny|BtoA" in ids
    assert "**T-shirt/top \u2192 Pullover**" in client.predict("bundled|AtoB", api_name="/model_info")


def test_batch_through_the_api_gives_one_zip_and_skips_what_is_not_an_image(client, tmp_path):
    from gradio_client import handle_file

    (tmp_path / "notes.txt").write_text("not an image")
    uploads = [EXAMPLES / "tshirt_1.png", write_image(tmp_path / "photo.png", 40, 52), tmp_path / "notes.txt"]
    archive = client.predict([handle_file(str(p)) for p in uploads], "runs/tiny|AtoB", api_name="/translate_batch")
    with zipfile.ZipFile(archive) as zf:
        names = sorted(zf.namelist())
        assert names == ["photo_tiny_AtoB.png", "tshirt_1_tiny_AtoB.png"]
        with Image.open(zf.open("photo_tiny_AtoB.png")) as img:
            assert img.size == (32, 32)


def test_video_through_the_api_keeps_frames_size_rate_and_audio(client, tmp_path):
    from gradio_client import handle_file

    import av

    clip = write_clip(tmp_path / "clip.mp4")
    out = client.predict(handle_file(str(clip)), "runs/tiny|AtoB", False, 0.5, api_name="/translate_video")
    assert Path(out).suffix == ".mp4"
    with av.open(out) as c:
        v = c.streams.video[0]
        assert (v.codec_context.width, v.codec_context.height, v.average_rate) == (48, 40, 8)
        assert c.streams.audio[0].codec_context.name == "aac"
    assert len(frames_of(Path(out))) == 12


def test_published_model_downloads_through_the_api_and_describes_itself(app, client):
    _, tmp, weights = app
    choice = client.predict("horse2zebra", api_name="/download_model")
    assert choice == "checkpoints/horse2zebra_pretrained/latest_net_G.pth"
    assert (tmp / "checkpoints" / "horse2zebra_pretrained" / "latest_net_G.pth").is_file()
    assert choice in [row[0] for row in client.predict(api_name="/models")]
    info = client.predict(choice, api_name="/model_info")
    assert "**horse \u2192 zebra**" in info and "trained at 256 px; colour (RGB)" in info
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="'nosuch' is not a published model"):
        client.predict("nosuch", api_name="/download_model")


# -- the logic behind the panels -------------------------------------------------------------------


def _backend(tmp_path: Path, **kw) -> AppBackend:
    return AppBackend(AppSettings(runs_dir=tmp_path / "runs", checkpoints_dir=tmp_path / "checkpoints",
                                  output_dir=tmp_path / "out", **kw))


def test_offline_download_says_so_in_one_line(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on: connection refused, as offline
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("CYCLEGAN_BASE_URL", f"http://127.0.0.1:{closed}")
    with pytest.raises(UserError) as info:
        download_published(_backend(tmp_path), "style_monet")
    message = str(info.value)
    assert "\n" not in message and "cannot be reached (offline?)" in message
    assert not list((tmp_path / "checkpoints").rglob("*.pth"))


def test_model_info_shows_saved_evaluation_figures(tmp_path):
    run = tmp_path / "runs" / "tiny"
    tiny_export(run)
    row = {"hit_rate": 0.91, "fid": 1.234, "kid": 0.01, "cycle_l1": 0.051}
    figures = {d: {"translated": row, "untranslated": {**row, "hit_rate": 0.04},
                   "real_target": {**row, "hit_rate": 0.97, "fid": 0.2}} for d in ("AtoB", "BtoA")}
    backend = _backend(tmp_path, bundled=False)
    assert "no evaluation saved" in model_info(backend, "runs/tiny|AtoB")
    (run / "eval").mkdir()
    (run / "eval" / "domains.json").write_text(json.dumps({**figures, "size": 32}))
    text = model_info(backend, "runs/tiny|BtoA")
    assert "**B \u2192 A**" in text and "trained at 32 px; colour (RGB)" in text
    assert "hit rate 91% (untranslated 4%, real target 97%), FID 1.23 (real images: 0.20), cycle L1 0.051" in text


def test_a_colour_photo_given_to_a_grayscale_model_gets_a_note(tmp_path):
    backend = _backend(tmp_path)  # the bundled demo is grayscale
    colour = write_image(tmp_path / "colour.png", 40, 40)
    gray = Image.open(colour).convert("L").convert("RGB")  # RGB file, gray content: no note
    gray.save(tmp_path / "gray.png")
    assert any("grayscale" in n for n in backend.translate(colour, "bundled|AtoB").notes)
    assert not any("grayscale" in n for n in backend.translate(tmp_path / "gray.png", "bundled|AtoB").notes)


# -- in the browser --------------------------------------------------------------------------------


def _cut_off_labels(page) -> list[str]:
    """Texts of labels, buttons, tabs and options that are not wholly visible: past the window's
    edge, clipped by an ancestor that hides its overflow, or ellipsised."""
    return page.evaluate("""() => {
        const width = document.documentElement.clientWidth;
        const labelled = 'label, button, [role=tab], [data-testid=block-label], [data-testid=block-info]';
        const bad = new Set();
        const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            const text = node.textContent.trim();
            const host = node.parentElement;
            if (!text || !host || !host.closest(labelled) || host.closest('.visually-hidden, [aria-hidden=true]'))
                continue;
            const range = document.createRange();
            range.selectNodeContents(node);
            const r = range.getBoundingClientRect();
            const style = getComputedStyle(host);
            if (!r.width || style.visibility === 'hidden' || !host.checkVisibility()) continue;
            let cut = r.right > width + 1 || r.left < -1 || host.scrollWidth > host.clientWidth + 1
                      && style.textOverflow === 'ellipsis';
            for (let a = host; a && !cut; a = a.parentElement) {
                const cs = getComputedStyle(a);
                if (cs.overflowX === 'visible' && cs.overflow === 'visible') continue;
                const ar = a.getBoundingClientRect();
                cut = r.right > ar.right + 1 || r.left < ar.left - 1;
            }
            if (cut) bad.add(text.slice(0, 60));
        }
        return [...bad];
    }""")


def _show_tab(page, name: str) -> None:
    """Click a tab, also one that a narrow page moved into its "More tabs" menu."""
    tab = page.get_by_role("tab", name=name)
    if not tab.is_visible():
        page.click("button[aria-label='More tabs']")
        tab = page.locator(".overflow-dropdown button", has_text=name)
    tab.click()


def test_browser_slider_examples_download_batch_and_video(app, tmp_path):
    url, tmp, weights = app
    ARTIFACTS.mkdir(exist_ok=True)
    clip = write_clip(tmp_path / "clip.mp4")
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(60_000)
        try:
            page.goto(url, wait_until="domcontentloaded")
            page.wait_for_selector("#model-info :text('T-shirt/top \u2192 Pullover')")
            # an example labelled by its domain picks the direction that translates it
            page.locator("#examples button", has_text="Pullover 1").click()
            page.wait_for_selector("#input-image img[src*='pullover_1']")
            assert page.locator("#model input").input_value().endswith("Pullover \u2192 T-shirt/top")
            page.wait_for_selector("#model-info :text('Pullover \u2192 T-shirt/top')")
            page.click("#translate-button")
            page.wait_for_function("() => document.querySelectorAll('#before-after img').length == 2 && "
                                   "[...document.querySelectorAll('#before-after img')].every("
                                   "i => i.complete && i.naturalWidth == 512)")
            page.screenshot(path=str(ARTIFACTS / "app_before_after.png"), full_page=True)

            # one click on a published model: a progress bar, then the model is there and chosen
            page.click("#published button.label-wrap, #published .label-wrap")
            page.click("#get-zebra2horse")
            page.wait_for_selector(":text('Downloading zebra2horse')", timeout=20_000)
            page.screenshot(path=str(ARTIFACTS / "app_download_progress.png"), full_page=True)
            page.wait_for_selector("#published-status :text('zebra2horse is downloaded, checked and selected')")
            assert page.locator("#model input").input_value() == "zebra2horse (published)"
            page.wait_for_selector("#model-info :text('zebra \u2192 horse')")

            page.locator("#model input").click()
            page.locator("ul[role=listbox] li", has_text="runs/tiny: A \u2192 B").click()
            _show_tab(page, "Batch")
            page.locator("#batch-files input[type=file]").set_input_files(
                [str(EXAMPLES / "tshirt_1.png"), str(EXAMPLES / "pullover_2.png")])
            page.wait_for_function("() => document.querySelector('#batch-files').textContent.includes('pullover_2')")
            page.click("#batch-button")
            page.wait_for_function("() => document.querySelector('#batch-zip').textContent.includes('translated_tiny_2')")
            assert page.locator("#batch-gallery img").count() == 4
            page.screenshot(path=str(ARTIFACTS / "app_batch.png"), full_page=True)

            _show_tab(page, "Video")
            page.locator("#video-input input[type=file]").set_input_files(str(clip))
            page.wait_for_selector("#video-input video")
            page.click("#video-button")
            page.wait_for_selector("#video-info :text('12 frames of 48x40')")
            page.wait_for_selector("#video-output video[src]")
            page.screenshot(path=str(ARTIFACTS / "app_video.png"), full_page=True)

            # a phone-width page: every label fits, on every tab
            page.set_viewport_size({"width": 390, "height": 844})
            page.wait_for_timeout(500)
            for tab in ("Video", "Batch", "Generate", "Translate"):
                _show_tab(page, tab)
                page.wait_for_timeout(300)
                assert _cut_off_labels(page) == [], tab
            page.screenshot(path=str(ARTIFACTS / "app_390px.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "app_tabs_failure.png"), full_page=True)
            raise
    assert weights.requests.count("/pretrained_models/zebra2horse.pth") == 1
