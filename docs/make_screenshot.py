"""Make docs/images/app.png: start the app, translate an example image in Chromium, screenshot.

    python docs/make_screenshot.py                 # the bundled demo model, as on a fresh machine
    python docs/make_screenshot.py --example tshirt_2.png -- --model runs/NAME

Needs Debian's Chromium (apt-get install -y chromium) and Playwright (pip install -e '.[dev]').
Arguments after ``--`` go to app.py.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "cyclegan" / "assets" / "examples"
CHROMIUM = "/usr/bin/chromium"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--example", default="tshirt_2.png", help="example image to translate [tshirt_2.png]")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "app.png")
    p.add_argument("--width", type=int, default=1280, help="browser window width [1280]")
    p.add_argument("app_args", nargs="*", help="arguments for app.py (after --)")
    args = p.parse_args()

    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--threads", "1",
                               *args.app_args], env=env)
    url = f"http://127.0.0.1:{port}/"
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
            page.wait_for_function("() => [...document.querySelectorAll('#output-image img, #recon-image img')]"
                                   ".every(i => i.complete && i.naturalWidth > 0)")
            time.sleep(0.5)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
