"""Make the app's pictures in docs/images/: start the app, use it in Chromium, screenshot.

    python docs/make_screenshot.py                 # app.png, app_batch.png, app_video.png, app_published.png
    python docs/make_screenshot.py --example tshirt_2.png -- --model runs/NAME

* app.png: an example image translated by the bundled demo model and back, with the before/after
  slider;
* app_batch.png: the Batch tab on the six example images;
* app_video.png: the Video tab on a short clip made from the example images (a cross-fade);
* app_published.png: the published-model buttons while one downloads. The weights come from a
  local HTTP server (``$CYCLEGAN_BASE_URL``) serving a small stand-in file in the original layout,
  slowly, so that the picture shows the page's progress bar without a network.

Needs Debian's Chromium (apt-get install -y chromium) and Playwright (pip install -e '.[dev]').
Arguments after ``--`` go to app.py.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "cyclegan" / "assets" / "examples"
CHROMIUM = "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stand_in_weights() -> bytes:
    """A small original-layout ResNet-9 state dict (ngf 4): what the download button fetches."""
    import io

    import torch

    sys.path.insert(0, str(ROOT))
    from cyclegan.models.networks import build_generator

    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save(build_generator("resnet_9blocks", 3, 3, ngf=4).state_dict(), buf)
    return buf.getvalue()


def _slow_server(data: bytes, seconds: float = 6.0) -> str:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            step = -(-len(data) // 20)
            for i in range(0, len(data), step):
                self.wfile.write(data[i:i + step])
                self.wfile.flush()
                time.sleep(seconds / 20)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}"


def _clip(path: Path, fps: int = 8) -> Path:
    """A 112 px clip cross-fading through the example images, with no audio."""
    import av

    frames = [np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) for p in sorted(EXAMPLES.glob("*.png"))]
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        i = 0
        for a, b in zip(frames, frames[1:] + frames[:1]):
            for t in np.linspace(0, 1, fps, endpoint=False):
                f = av.VideoFrame.from_ndarray(np.rint((1 - t) * a + t * b).astype(np.uint8), format="rgb24")
                f.pts = i
                i += 1
                c.mux(v.encode(f))
        c.mux(v.encode(None))
    return path


def _wait_for_images(page, selector: str) -> None:
    page.wait_for_function(f"() => {{ const i = [...document.querySelectorAll({selector!r})];"
                           " return i.length && i.every(x => x.complete && x.naturalWidth > 0); }")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--example", default="tshirt_2.png", help="example image to translate [tshirt_2.png]")
    p.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "images")
    p.add_argument("--width", type=int, default=1280, help="browser window width [1280]")
    p.add_argument("app_args", nargs="*", help="arguments for app.py (after --)")
    args = p.parse_args()

    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="cyclegan-screens-"))
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "CYCLEGAN_BASE_URL": _slow_server(_stand_in_weights())}
    server = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--threads", "1",
                               "--checkpoints-dir", str(work / "checkpoints"), "--runs-dir", str(work / "runs"),
                               *args.app_args], env=env)
    url = f"http://127.0.0.1:{port}/"
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    try:
        for _ in range(300):
            if server.poll() is not None:
                raise SystemExit(f"app.py exited with {server.returncode}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(0.3)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM,
                                         args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": args.width, "height": 900})
            page.set_default_timeout(60_000)
            page.goto(url, wait_until="domcontentloaded")

            page.locator("#input-image input[type=file]").set_input_files(str(EXAMPLES / args.example))
            page.wait_for_selector("#input-image img")
            page.check("text=Also translate back")
            page.click("#translate-button")
            page.wait_for_selector("#recon-image img")
            _wait_for_images(page, "#before-after img, #recon-image img")
            time.sleep(0.5)
            page.screenshot(path=str(out / "app.png"), full_page=True)

            page.get_by_role("tab", name="Batch").click()
            page.locator("#batch-files input[type=file]").set_input_files([str(x) for x in sorted(EXAMPLES.glob("*.png"))])
            page.wait_for_function("() => document.querySelector('#batch-files').textContent.includes('tshirt_3')")
            page.click("#batch-button")
            page.wait_for_function("() => document.querySelector('#batch-zip').textContent.includes('.zip')")
            page.wait_for_function("() => document.querySelectorAll('#batch-gallery img').length >= 12")
            page.locator("#batch-gallery").scroll_into_view_if_needed()  # its images load lazily
            time.sleep(1.5)
            page.locator("[role=tabpanel]:visible").first.screenshot(path=str(out / "app_batch.png"))

            page.get_by_role("tab", name="Video").click()
            page.locator("#video-input input[type=file]").set_input_files(str(_clip(work / "fashion.mp4")))
            page.wait_for_selector("#video-input video")
            page.click("#video-button")
            page.wait_for_selector("#video-output video[src]")
            page.wait_for_function("() => document.querySelector('#video-output video').readyState >= 2")
            page.locator("[role=tabpanel]:visible").first.screenshot(path=str(out / "app_video.png"))

            page.click("#published .label-wrap")
            page.click("#get-horse2zebra")
            page.wait_for_selector(":text('Downloading horse2zebra:')")
            time.sleep(2.5)  # the bar part of the way
            page.locator("#published").screenshot(path=str(out / "app_published.png"))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)
    for name in ("app.png", "app_batch.png", "app_video.png", "app_published.png"):
        print(out / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
