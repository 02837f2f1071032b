"""``cyclegan app``: its flags, and starting app.py with them."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import os
from pathlib import Path
import torch
from cyclegan.cli.argtypes import positive_int as _positive
from cyclegan.data.images import DataError
from cyclegan.app.settings import DEFAULT_PORT, AppSettings, _port, app_script, settings_from_args

__all__ = ['add_app_arguments', 'add_app_command', 'parse_args']



def add_app_arguments(p: argparse.ArgumentParser) -> None:
    """The app's flags: one list for ``python app.py`` and ``cyclegan app``."""
    d = AppSettings()
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", d.host),
                   help="address to bind; 0.0.0.0 serves the whole network [$GRADIO_SERVER_NAME or 127.0.0.1]")
    p.add_argument("--port", type=_port, default=None,
                   help=f"port to serve on [$GRADIO_SERVER_PORT or {DEFAULT_PORT}]")
    p.add_argument("--share", action="store_true",
                   help="also open a public *.gradio.live link through gradio's share servers (needs internet)")
    p.add_argument("--model", "-m", type=Path,
                   help="start on this model, loaded at startup: a run folder, checkpoint .pt, "
                        "generators.safetensors or .pth (or a name found in --runs-dir/--checkpoints-dir)")
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
    p.add_argument("--no-bundled", action="store_true", help="do not offer the bundled demo models")


def _argv_of(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    """The flags of ``args`` that differ from ``parser``'s defaults, as a command line again."""
    argv: list[str] = []
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "func"):
            continue
        value = getattr(args, action.dest, action.default)
        if value == action.default or value is None:
            continue
        if isinstance(action, argparse._StoreTrueAction):
            argv.append(action.option_strings[0])
        else:
            argv += [action.option_strings[0], str(value)]
    return argv


def _cmd_app(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run app.py in a fresh interpreter, so that the serving process holds no training code
    (the ``cyclegan`` command imports the training loop to build its parser)."""
    import subprocess
    import sys

    script = app_script()
    if not script.is_file():
        raise DataError(f"{script} not found: `cyclegan app` runs the app.py of a source checkout "
                        "(pip install -e .); run `python app.py` there")
    argv = [sys.executable, str(script), *_argv_of(args, parser)]
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execv(sys.executable, argv)
    return subprocess.call(argv)  # pragma: no cover  (Windows: exec would detach from the console)


def add_app_command(sub: argparse._SubParsersAction) -> None:
    """Register ``cyclegan app`` (the same flags as ``python app.py``)."""
    p = sub.add_parser("app", help="start the web app (translate images, generate samples)",
                       description="Start the Gradio web app on http://127.0.0.1:7860 (see --host, --port). "
                                   "It works offline on the bundled demo models and offers every run and "
                                   "export under --runs-dir and --checkpoints-dir.")
    add_app_arguments(p)
    p.set_defaults(func=lambda args: _cmd_app(args, p))


def parse_args(argv: Sequence[str] | None = None) -> AppSettings:
    p = argparse.ArgumentParser(prog="app.py", description="The cyclegan web app (Gradio).")
    add_app_arguments(p)
    return settings_from_args(p.parse_args(argv))
