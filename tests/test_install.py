"""A torchvision built for another torch (pip mixing two indexes) is said in one line with the
command that fixes it, at every entry point: the ``cyclegan`` command, ``app.py`` and the Python
API where it needs torchvision. Real processes, with a fake ``torchvision`` package first on the
path that fails as a mismatched one does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cyclegan.core import install

ROOT = Path(__file__).resolve().parents[1]
REAL_ERROR = "operator torchvision::nms does not exist"


def _fake_torchvision(tmp_path: Path, version: str | None = None) -> Path:
    """A folder holding a ``torchvision`` that raises torchvision's real error on import (and,
    with ``version``, package metadata that says it is that version)."""
    site = tmp_path / "site"
    (site / "torchvision").mkdir(parents=True)
    (site / "torchvision" / "__init__.py").write_text(f"raise RuntimeError({REAL_ERROR!r})\n")
    if version:
        info = site / f"torchvision-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torchvision\nVersion: {version}\n")
    return site


def _run(args: list[str], site: Path, cwd: Path, timeout: int = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def _one_line_with_the_fix(stderr: str, prefix: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, stderr[-3000:]
    line = lines[0]
    assert "broken install" in line and 'pip install --force-reinstall "torch==' in line
    assert '"torchvision==0.' in line and 'python -c "import torchvision"' in line
    return line


def test_the_command_says_what_is_wrong_and_the_fix(tmp_path):
    # metadata that matches torch: the command starts, and the import where torchvision is needed fails
    site = _fake_torchvision(tmp_path)
    r = _run(["-m", "cyclegan", "mnist", "sample", "--n", "4", "--out", "grid.png"], site, tmp_path)
    assert r.returncode == 2
    line = _one_line_with_the_fix(r.stderr, "cyclegan mnist: error:")
    assert REAL_ERROR in line and not (tmp_path / "grid.png").exists()


def test_mismatched_versions_stop_any_command_before_work(tmp_path):
    site = _fake_torchvision(tmp_path, "0.16.0")
    r = _run(["-m", "cyclegan", "info"], site, tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    line = _one_line_with_the_fix(r.stderr, "cyclegan info: error:")
    assert "torchvision 0.16.0 is not built for torch 2." in line


def test_the_app_says_it_in_one_line(tmp_path):
    site = _fake_torchvision(tmp_path)
    r = _run([str(ROOT / "app.py"), "--port", "7999", "--runs-dir", str(tmp_path / "runs"),
              "--checkpoints-dir", str(tmp_path / "ckpt")], site, tmp_path, timeout=240)
    assert r.returncode == 2
    assert REAL_ERROR in _one_line_with_the_fix(r.stderr, "app.py: error:")


def test_the_python_api_raises_one_readable_error(tmp_path):
    site = _fake_torchvision(tmp_path)
    code = ("import torch, cyclegan\n"
            "from cyclegan.inference.mnist_sampler import to_pil\n"
            "try:\n    to_pil(torch.zeros(1, 1, 4, 4), nrow=1)\n"
            "except ImportError as e:\n    print(type(e).__name__, e)\n")
    r = _run(["-c", code], site, tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("BrokenInstall broken install:") and REAL_ERROR in r.stdout


@pytest.mark.parametrize("torch_version, index", [("2.14.1+cpu", " --index-url https://download.pytorch.org/whl/cpu"),
                                                  ("2.9.0+cu128", " --index-url https://download.pytorch.org/whl/cu128"),
                                                  ("2.10.0", "")])
def test_the_fix_pairs_torchvision_with_the_installed_torch(torch_version, index):
    plain = torch_version.split("+")[0]
    minor = int(plain.split(".")[1])
    assert install.fix_command(torch_version) == \
        f'pip install --force-reinstall "torch=={plain}" "torchvision==0.{minor + 15}.*"{index}'


def test_this_install_is_consistent():
    assert install.version_mismatch() is None
    install.check()
