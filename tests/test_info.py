"""``cyclegan info``: what --precision auto / --compile auto resolve to on this machine (or on the
CPU that CYCLEGAN_CPU_FLAGS describes), without starting a run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cyclegan.cli.main import main
from cyclegan.core import fastpath

ROOT = Path(__file__).resolve().parents[1]


def _report(capsys, *argv: str) -> dict:
    assert main(["info", "--device", "cpu", "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def _paths(report: dict) -> dict[str, str]:
    return {row["case"].split(" (")[0]: row["path"] for row in report["fast_path"]}


def test_an_amx_cpu_compiles_large_crops_and_translates_in_bf16(cpu_with, capsys):
    cpu_with("GenuineIntel avx2 avx512f avx512_bf16 amx_bf16 amx_tile")
    report = _report(capsys)
    assert report["cpu"]["vendor"] == "GenuineIntel" and "amx_bf16" in report["cpu"]["deciding_flags"]
    assert report["env"]["CYCLEGAN_CPU_FLAGS"].startswith("GenuineIntel")
    assert _paths(report) == {"train, 256 px crops": "bf16 + torch.compile", "train, 128 px crops": "bf16 + torch.compile",
                              "train, 64 px crops": "bf16 + eager", "train, --preprocess none": "bf16 + eager",
                              "translate": "bf16 + eager"}
    # each row is what the training and translation code would get from the one place that decides
    row = report["fast_path"][0]
    assert {k: row[k] for k in ("precision", "compile", "compile_mode", "why", "step_graph")} == \
        fastpath.choose("cpu", "train", image_side=256).as_dict()


@pytest.mark.parametrize("vendor, train", [("AuthenticAMD", "bf16 + eager"), ("GenuineIntel", "fp32 + eager")])
def test_avx512_bf16_without_amx_depends_on_the_vendor(cpu_with, capsys, vendor, train):
    cpu_with(f"{vendor} avx2 avx512f avx512_bf16")
    paths = _paths(_report(capsys))
    assert paths["train, 256 px crops"] == paths["train, 64 px crops"] == train
    assert paths["translate"] == "fp32 + eager"


def test_the_text_report_names_the_cpu_and_every_case(cpu_with, capsys):
    cpu_with("AuthenticAMD avx2 avx512f avx512_bf16")
    assert main(["info", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "CPU: AuthenticAMD" in out and "flags that decide: avx2 avx512f avx512_bf16" in out
    assert "CYCLEGAN_CPU_FLAGS=AuthenticAMD avx2 avx512f avx512_bf16" in out
    assert "  train, 256 px crops (the default size)  bf16 + eager  [1]" in out
    # each reason is said once, and the cases that share it point at it
    reasons = [line for line in out.splitlines() if line.startswith("  [")]
    assert reasons[0].startswith("  [1] AuthenticAMD CPU with avx512_bf16") and len(reasons) == len(set(reasons)) == 2
    assert out.count("avx512_bf16 (measured") == 1 and out.count("[1]\n") == 4
    assert "  translate" in out and "--precision fp32 --no-compile is the reference" in out


def test_info_runs_as_a_command_on_this_machine():
    r = subprocess.run([sys.executable, "-m", "cyclegan", "info"], capture_output=True, text=True, timeout=120,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("cyclegan ") and "fast path by default" in r.stdout and "Traceback" not in r.stderr


def test_an_unavailable_device_is_a_clear_error(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["info", "--device", "cuda"]) == 2
    assert "--device cuda: CUDA is not available" in capsys.readouterr().err
