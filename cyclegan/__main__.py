"""``python -m cyclegan`` is the ``cyclegan`` command (also under torchrun)."""

from cyclegan.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
