"""``cyclegan app``: its flags, and starting app.py with them."""

from __future__ import annotations

import argparse
import os

from cyclegan.data.images import DataError
from cyclegan.app.settings import add_app_arguments, app_script

__all__ = ["add_app_command"]


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
    (the command it was parsed by may have loaded more than serving needs)."""
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
    p = sub.add_parser("app",  # its one-line help: cyclegan.cli.main.COMMANDS
                       description="Start the Gradio web app on http://127.0.0.1:7860 (see --host, --port). "
                                   "It works offline on the bundled demo models and offers every run and "
                                   "export under --runs-dir and --checkpoints-dir.")
    add_app_arguments(p)
    p.set_defaults(func=lambda args: _cmd_app(args, p))
