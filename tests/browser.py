"""Debian's Chromium under Playwright, as the app's browser tests drive it (never `playwright
install`): launched with --no-sandbox --disable-gpu --disable-background-networking."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tiny_models import ROOT

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"  # screenshots the browser tests leave for a person to look at


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A launched Chromium browser, closed afterwards; or a skip saying what is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    executable = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    if not executable:
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium; .ci/run does it)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            yield browser
        finally:
            browser.close()
