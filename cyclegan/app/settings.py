"""The app's settings: flags and environment variables, and where app.py is."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ['AppSettings', 'UserError', 'settings_from_args']

log = logging.getLogger("cyclegan.app")

ASSETS = Path(__file__).resolve().parents[1] / "assets"

DEFAULT_PORT = 7860


class UserError(Exception):
    """A problem with the user's input or a model file; the message is shown in the UI as is."""


# --------------------------------------------------------------------------------------------
# Settings and flags (shared by `python app.py` and `cyclegan app`)
# --------------------------------------------------------------------------------------------


@dataclass
class AppSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    share: bool = False
    model: Path | None = None                 # --model: started on, and the default
    runs_dir: Path = Path("runs")
    checkpoints_dir: Path = Path("checkpoints")
    device: str = "auto"
    max_pixels: int = 1024 * 1024             # full-resolution translation: larger inputs are downscaled
    max_input_pixels: int = 40_000_000        # uploads larger than this are refused before decoding
    max_file_size: str = "20mb"               # gradio refuses larger uploads
    concurrency: int = 1                      # model calls running at once; the rest wait in the queue
    queue_size: int = 32                      # waiting requests; more are turned away
    cache_size: int = 4                       # loaded models kept in memory
    max_count: int = 64                       # images per Generate request
    max_steps: int = 16                       # images in an interpolation strip
    output_dir: Path | None = None            # where downloads are written [a temporary folder]
    bundled: bool = True                      # offer the bundled models (tests turn this off)
    threads: int | None = None                # torch intra-op threads [torch's default]


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"must be a port number 1..65535, got {text}")
    return value


def _env_port() -> int:
    text = os.environ.get("GRADIO_SERVER_PORT", "")
    try:
        return _port(text) if text else DEFAULT_PORT
    except (ValueError, argparse.ArgumentTypeError):
        log.warning("ignoring GRADIO_SERVER_PORT=%r (not a port number)", text)
        return DEFAULT_PORT


def settings_from_args(args: argparse.Namespace) -> AppSettings:
    return AppSettings(host=args.host, port=args.port or _env_port(), share=args.share, model=args.model,
                       runs_dir=args.runs_dir, checkpoints_dir=args.checkpoints_dir, device=args.device,
                       max_pixels=args.max_pixels, max_input_pixels=args.max_input_pixels,
                       max_file_size=args.max_file_size, concurrency=args.concurrency,
                       queue_size=args.queue_size, cache_size=args.cache_size, bundled=not args.no_bundled,
                       threads=args.threads)


def app_script() -> Path:
    """The app's entry point, ``app.py`` at the top of the checkout."""
    return Path(__file__).resolve().parents[2] / "app.py"
