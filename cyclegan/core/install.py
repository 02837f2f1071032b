"""Whether torch and torchvision belong together, said in one line with the command that fixes it.

A torchvision built for another torch fails on import with ``RuntimeError: operator torchvision::nms
does not exist`` (its compiled operators cannot register). That happens when pip installs the two
from different indexes, e.g. when the CPU-only index of the README cannot be reached and pip falls
back silently. The entry points (the ``cyclegan`` command, ``app.py``) call :func:`check`, which
reads only the installed versions (no import, a few milliseconds); every place that needs
torchvision imports it through :func:`import_torchvision`, which turns the failure into
:class:`BrokenInstall` with the same line.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
from types import ModuleType

__all__ = ["BrokenInstall", "check", "fix_command", "import_torchvision", "version_mismatch"]

#: torch 2.N pairs with torchvision 0.(N + 15): 2.0/0.15 ... 2.9/0.24 ... 2.14/0.29
_TORCHVISION_OFFSET = 15


class BrokenInstall(ImportError):
    """torch and torchvision do not work together; the message says what to run."""


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _major_minor(version: str) -> tuple[int, int] | None:
    m = re.match(r"(\d+)\.(\d+)", version)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _matching_torchvision(torch_version: str) -> str | None:
    mm = _major_minor(torch_version)
    if mm is None or mm[0] != 2:
        return None
    return f"0.{mm[1] + _TORCHVISION_OFFSET}"


def fix_command(torch_version: str | None = None) -> str:
    """The pip command that installs a torchvision matching the installed torch (from the same
    index: the CPU-only one for a CPU build, PyTorch's CUDA index for a ``+cuXXX`` build)."""
    torch_version = torch_version or _version("torch") or ""
    plain, _, local = torch_version.partition("+")
    vision = _matching_torchvision(plain)
    if not plain or vision is None:
        return 'pip install --force-reinstall "torch>=2.9,<2.15" "torchvision>=0.24,<0.30"'
    index = ""
    if local.startswith("cpu") or local.startswith("cu"):
        index = f" --index-url https://download.pytorch.org/whl/{'cpu' if local.startswith('cpu') else local}"
    return f'pip install --force-reinstall "torch=={plain}" "torchvision=={vision}.*"{index}'


def version_mismatch() -> str | None:
    """A one-line description of a torch/torchvision pair that cannot work together, read from the
    installed packages' metadata (nothing is imported); None when they match or cannot be told."""
    torch_version, vision_version = _version("torch"), _version("torchvision")
    if not torch_version or not vision_version:
        return None
    want = _matching_torchvision(torch_version)
    got = _major_minor(vision_version)
    if want is None or got is None or f"{got[0]}.{got[1]}" == want:
        return None
    return f"torchvision {vision_version} is not built for torch {torch_version} (that needs torchvision {want})"


def _message(reason: str) -> str:
    return (f"broken install: {reason}; fix it with: {fix_command()}   "
            "(check: python -c \"import torchvision\" prints nothing)")


def import_torchvision(name: str = "torchvision") -> ModuleType:
    """``import name`` (torchvision or one of its modules), or :class:`BrokenInstall` with one line
    saying what is wrong and the command that fixes it."""
    try:
        return importlib.import_module(name)
    except BrokenInstall:
        raise
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "torchvision":
            raise BrokenInstall(_message("torchvision is not installed")) from None
        raise
    except (RuntimeError, ImportError, OSError, AttributeError) as e:
        # "operator torchvision::nms does not exist", an undefined symbol in torchvision's _C, ...
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        reason = version_mismatch() or f"torchvision does not load with this torch ({detail})"
        raise BrokenInstall(_message(reason)) from None


def check() -> None:
    """What an entry point calls first: nothing when the installed versions match (the cheap
    case); when they do not, torchvision is imported to confirm, and :class:`BrokenInstall`
    raised if it fails (a pair that imports, e.g. a nightly build, only passes)."""
    if version_mismatch() is not None:
        import_torchvision()
