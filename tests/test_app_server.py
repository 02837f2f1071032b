"""The running web app: `cyclegan app` (which runs app.py) in a subprocess on a free loopback
port, driven through gradio_client (translate, generate, bad uploads, what the server refuses to
serve) and through a real browser (Debian's Chromium under Playwright). The logic: test_app.py."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from browser import ARTIFACTS, chromium
from loopback import free_port, serving
from test_app import latent_export
from tiny_models import ROOT, one_thread, tiny_export, write_image  # noqa: F401


def running_app(folder: Path, env: dict, port: int, *extra: str):
    """`cyclegan app` on runs/tiny in ``folder``, serving on ``port``; yields (url, process), then
    stops it (terminate, then kill). Its output goes to folder/server.log."""
    return serving([sys.executable, "-m", "cyclegan", "app", "--port", str(port), "--no-bundled", "--runs-dir", "runs",
                    "--checkpoints-dir", "checkpoints", "--model", "runs/tiny", *extra, "--threads", "1"],
                   folder, env, port)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app on tiny models, with a 300 KB upload limit; yields (url, folder)."""
    tmp = tmp_path_factory.mktemp("app")
    tiny_export(tmp / "runs" / "tiny")
    latent_export(tmp / "runs" / "digits" / "generators.safetensors")
    (tmp / "checkpoints").mkdir()
    (tmp / "checkpoints" / "broken.pth").write_bytes(b"not weights")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "GRADIO_TEMP_DIR": str(tmp / "gradio"), "GRADIO_SERVER_PORT": "1"}  # --port wins over the variable
    # `cyclegan app` execs `python app.py` with the same flags: both entry points are exercised
    with running_app(tmp, env, port, "--max-file-size", "300kb") as (url, _):
        yield url, tmp


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server[0], verbose=False, download_files=str(server[1] / "downloads"))


def test_translate_through_the_api(client, server, tmp_path):
    from gradio_client import handle_file

    src = write_image(tmp_path / "photo.png", 40, 56)
    download = client.predict(handle_file(str(src)), "model|AtoB", api_name="/translate")
    with Image.open(download) as img:  # the translated image itself, at its true size
        assert img.size == (32, 32) and img.format == "PNG"
    assert Path(download).name == "photo_tiny_AtoB.png"
    full = client.predict(image=handle_file(str(src)), model="model|BtoA", full_resolution=True, api_name="/translate")
    with Image.open(full) as img:
        assert img.size == (56, 40)


def test_generate_through_the_api(client):
    download = client.predict("runs/digits", 7, 4, api_name="/generate")
    with Image.open(download) as img:
        assert img.size == (2 * 30 + 2, 2 * 30 + 2)
    download = client.predict("runs/digits", 1, 2, 3, api_name="/interpolate")
    with Image.open(download) as img:
        assert img.size == (3 * 30 + 2, 32)


def test_bad_requests_get_readable_messages_and_the_server_keeps_serving(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    cases = [((handle_file(str(text)), "model|AtoB"), "notes.txt is not an image this app can read"),
             ((None, "model|AtoB"), "No image yet"),
             ((handle_file(str(write_image(tmp_path / "a.png", 8, 8))), "checkpoints/broken.pth"),
              "Cannot load the model 'checkpoints/broken.pth'"),
             ((handle_file(str(tmp_path / "a.png")), "/etc/passwd"), "Pick a model from the list")]
    for (upload, model), message in cases:
        with pytest.raises(AppError, match=message) as info:
            client.predict(upload, model, False, api_name="/translate")
        assert "Traceback" not in str(info.value)
    big = tmp_path / "big.png"
    Image.frombytes("RGB", (400, 400), os.urandom(400 * 400 * 3)).save(big)  # ~480 KB, over the 300 KB limit
    with pytest.raises(Exception, match="(?i)file size|too large|exceeds"):
        client.predict(handle_file(str(big)), "model|AtoB", False, api_name="/translate")
    out = client.predict(handle_file(str(tmp_path / "a.png")), "model|BtoA", True, api_name="/translate")
    assert Path(out).is_file()


def test_the_server_serves_no_model_or_source_files(server):
    url, tmp = server
    refused = [tmp / "runs" / "tiny" / "generators.safetensors", ROOT / "app.py", Path("/etc/passwd")]
    for path in refused:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{url}gradio_api/file={path}", timeout=10)
        assert info.value.code in (403, 404), path
    example = sorted((ROOT / "cyclegan" / "assets" / "examples").glob("*.png"))[0]
    with urllib.request.urlopen(f"{url}gradio_api/file={example}", timeout=10) as r:
        assert r.status == 200
    # a file record naming a path the browser never uploaded is refused before the app sees it
    import json

    forged = {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}
    req = urllib.request.Request(f"{url}gradio_api/call/translate", method="POST",
                                 headers={"Content-Type": "application/json"},
                                 data=json.dumps({"data": [forged, "model|AtoB", False]}).encode())
    with urllib.request.urlopen(req, timeout=10) as r:
        event = json.loads(r.read())["event_id"]
    with urllib.request.urlopen(f"{url}gradio_api/call/translate/{event}", timeout=30) as r:
        stream = r.read().decode()
    assert "event: error" in stream and "root:" not in stream


def test_browser_uploads_translates_and_shows_the_result(server):
    url, _ = server
    ARTIFACTS.mkdir(exist_ok=True)
    example = ROOT / "cyclegan" / "assets" / "examples" / "pullover_1.png"
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(60_000)  # generous: the CI machine is shared
        try:
            page.goto(url, wait_until="domcontentloaded")
            page.click("#translate-button")  # nothing uploaded yet: a readable pop-up, no stack trace
            page.wait_for_selector(".toast-body :text('No image yet')")
            page.locator("#input-image input[type=file]").set_input_files(str(example))
            page.wait_for_selector("#input-image img")
            page.click("#translate-button")
            # the before/after slider: the input as the model saw it, and the translation
            page.wait_for_function("() => { const i = document.querySelectorAll('#before-after img');"
                                   " return i.length == 2 && [...i].every(x => x.complete && x.naturalWidth > 0); }")
            assert page.eval_on_selector_all("#before-after img", "i => i.map(x => x.naturalWidth)") == [512, 512]
            page.wait_for_selector("#translate-info :text('translated at training size')")
            page.screenshot(path=str(ARTIFACTS / "app_translate.png"), full_page=True)
            # an example image, clicked, is translated like an upload
            page.locator("#examples button", has_text="T-shirt/top 1").click()  # labelled by its domain
            page.wait_for_selector("#input-image img[src*='tshirt_1']")  # loading an example is a round trip
            page.click("#translate-button")
            page.wait_for_selector("#download :text('tshirt_1_tiny_AtoB')")
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "app_translate_failure.png"), full_page=True)
            raise
