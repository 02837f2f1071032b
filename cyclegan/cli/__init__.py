"""The ``cyclegan`` command: argparse only, one module per command family, calling the layers below."""

from cyclegan.cli.main import main

__all__ = ["main"]
