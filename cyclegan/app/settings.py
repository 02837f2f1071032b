"""The app's settings: flags and environment variables, and where app.py is."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cyclegan.core.argtypes import int_between
from cyclegan.core.argtypes import positive_int as _positive

__all__ = ["AppSettings", "UserError", "add_app_arguments", "parse_args", "settings_from_args"]

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
    max_batch: int = 64                       # images per Batch request
    max_video_frames: int = 1800              # frames per Video request (a minute at 30 frames/s)


_port = int_between(1, 65535, "a port number")


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
                       threads=args.threads, max_batch=args.max_batch, max_video_frames=args.max_video_frames)


def app_script() -> Path:
    """The app's entry point, ``app.py`` at the top of the checkout."""
    return Path(__file__).resolve().parents[2] / "app.py"


def add_app_arguments(p: argparse.ArgumentParser) -> None:
    """The app's flags: one list for ``python app.py`` and ``cyclegan app``."""
    d = AppSettings()
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", d.host),
                   help="address to bind; 0.0.0.0 serves the whole network [$GRADIO_SERVER_NAME or 127.0.0.1]")
    p.add_argument("--port", type=_port, default=None,
                   help=f"port to serve on [$GRADIO_SERVER_PORT or {DEFAULT_PORT}]")
    p.add_argument("--share", action="store_true",
                   help="also open a public *.gradio.live link through gradio's share servers (needs internet)")
    model = os.environ.get("CYCLEGAN_MODEL") or None  # a Hugging Face Space passes no flags: its variables
    p.add_argument("--model", "-m", type=Path, default=Path(model) if model else None,
                   help="start on this model, loaded at startup: a run folder, checkpoint .pt, "
                        "generators.safetensors or .pth (or a name found in --runs-dir/--checkpoints-dir), or "
                        "hf:USER/REPO[@REVISION] on the Hugging Face Hub [$CYCLEGAN_MODEL]")
    p.add_argument("--runs-dir", type=Path, default=d.runs_dir, help="training runs to offer [runs]")
    p.add_argument("--checkpoints-dir", type=Path, default=d.checkpoints_dir,
                   help="exports and downloaded published weights to offer [checkpoints]")
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:N or mps [auto]")
    p.add_argument("--max-pixels", type=_positive, default=d.max_pixels,
                   help=f"full-resolution translation downscales larger images to this many pixels [{d.max_pixels:,}]")
    p.add_argument("--max-input-pixels", type=_positive, default=d.max_input_pixels,
                   help=f"uploads with more pixels are refused [{d.max_input_pixels:,}]")
    p.add_argument("--max-file-size", default=d.max_file_size,
                   help=f"largest upload, e.g. 20mb or 1gb [{d.max_file_size}]")
    p.add_argument("--concurrency", type=_positive, default=d.concurrency,
                   help=f"model calls that run at once; others wait in the queue [{d.concurrency}]")
    p.add_argument("--queue-size", type=_positive, default=d.queue_size,
                   help=f"requests that may wait; more are turned away with a message [{d.queue_size}]")
    p.add_argument("--cache-size", type=_positive, default=d.cache_size, help=f"models kept loaded [{d.cache_size}]")
    p.add_argument("--threads", type=_positive, help="CPU threads per model call [torch's default: all cores]")
    p.add_argument("--max-batch", type=_positive, default=d.max_batch,
                   help=f"images per Batch request [{d.max_batch}]")
    p.add_argument("--max-video-frames", type=_positive, default=d.max_video_frames,
                   help=f"frames per Video request; longer clips are refused [{d.max_video_frames}]")
    p.add_argument("--no-bundled", action="store_true", help="do not offer the bundled demo models")


def parse_args(argv: Sequence[str] | None = None) -> AppSettings:
    p = argparse.ArgumentParser(prog="app.py", description="The cyclegan web app (Gradio).")
    add_app_arguments(p)
    return settings_from_args(p.parse_args(argv))
