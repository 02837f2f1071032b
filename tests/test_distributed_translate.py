"""`torchrun --nproc_per_node 2 -m cyclegan translate`: real torchrun processes on the CPU (gloo)
split one folder, write each output once, report one summary with the totals of both ranks and
an exit status that says a file failed; a rank SIGKILLed mid-run loses nothing, and the rerun
translates only what is missing. `eval cycle` splits its images the same way."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cyclegan.inference.sharded import share_of
from cyclegan.inference.translator import Translator
from test_distributed import env, torchrun_cmd
from tiny_models import tiny_export, write_image

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")


def _translate(model: Path, src: Path, out: Path, *extra: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(torchrun_cmd("translate", "--model", str(model), "--input", str(src), "--output", str(out),
                                       "--device", "cpu", *extra), cwd=src.parent, env=env(), capture_output=True,
                          text=True, timeout=timeout)


def _summary(stderr: str) -> list[str]:
    return re.findall(r"^\d+ translated, \d+ skipped.*$", stderr, flags=re.M)


def _state(out: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("*.png")}


def test_two_ranks_split_a_folder_and_report_once(tmp_path):
    model = tiny_export(tmp_path / "run")
    src = tmp_path / "in"
    for i in range(9):
        write_image(src / f"sub{i % 2}" / f"{i}.png", 32, 32, seed=i)
    (src / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    first = _translate(model, src, out)
    assert first.returncode != 0, first.stderr  # a rank failed a file: the job says so
    summaries = _summary(first.stderr)
    assert summaries == ["9 translated, 0 skipped, 1 failed in " + summaries[0].split(" failed in ")[1]], first.stderr
    assert "over 2 processes" in summaries[0]
    assert first.stderr.count("failed: ") == 1 and "broken.png" in first.stderr
    assert first.stderr.count("2 processes, rank 0 on cpu") == 1  # one voice: rank 0's
    bars = re.findall(r"translate \(2 processes\): +(\d+)%\|.*?\| (\d+)/(\d+)", first.stderr)
    assert bars and bars[-1][1:] == ("10", "10")  # one bar, counting both ranks' images to the end
    assert (out / "index.html").is_file()
    one = Translator.from_pretrained(model, device="cpu")
    for i in range(9):
        got = np.asarray(Image.open(out / f"sub{i % 2}" / f"{i}.png"), dtype=np.int16)
        want = one.translate(np.asarray(Image.open(src / f"sub{i % 2}" / f"{i}.png"))).astype(np.int16)
        assert np.abs(got - want).max() <= 1, i  # other processes' kernels: equal to rounding

    (src / "broken.png").unlink()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    again = _translate(model, src, out, "--no-progress")
    assert again.returncode == 0, again.stderr
    assert _summary(again.stderr)[0].startswith("0 translated, 9 skipped")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == before


def _pid_of_rank(launcher: int, rank: int) -> int | None:
    for child in Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split():
        try:
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ:
            return int(child)
    return None


def test_a_rank_killed_mid_run_loses_nothing_and_the_rerun_repeats_nothing(tmp_path):
    model = tiny_export(tmp_path / "run")
    src, out = tmp_path / "in", tmp_path / "out"
    n = 160
    names = [f"{i:03d}" for i in range(n)]
    for i, name in enumerate(names):
        write_image(src / f"{name}.png", 64, 64, seed=i)
    rank1 = share_of(names, 1, 2)  # the split the ranks make: sorted, every other one
    cmd = torchrun_cmd("translate", "--model", str(model), "--input", str(src), "--output", str(out), "--device",
                       "cpu", "--size", "64", "--batch-size", "1", "--no-progress", "--no-html")
    with open(tmp_path / "log.txt", "w") as log:
        proc = subprocess.Popen(cmd, env=env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not (out / f"{rank1[0]}.png").exists():  # rank 1 is translating its share
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "log.txt").read_text()
            time.sleep(0.005)
        victim = _pid_of_rank(proc.pid, 1)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        assert proc.wait(timeout=60) != 0  # torchrun names the dead rank and stops the other
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    kept = _state(out)
    assert 0 < len(kept) < n, "the kill came after the run had finished: make the run longer"
    assert not all(f"{name}.png" in kept for name in rank1)
    for name in kept:  # atomic writes: every output there is whole
        Image.open(out / name).load()

    again = _translate(model, src, out, "--size", "64", "--no-progress", "--no-html")
    assert again.returncode == 0, again.stderr
    assert re.match(f"{n - len(kept)} translated, {len(kept)} skipped .*, 0 failed", _summary(again.stderr)[0])
    after = _state(out)
    assert sorted(after) == sorted(f"{name}.png" for name in names)
    assert {k: after[k] for k in kept} == kept  # not one finished file written again
    assert not list(out.glob(".*.tmp"))  # what the killed ranks left half-written is gone


def test_eval_cycle_over_two_ranks_reports_every_image_once(tmp_path):
    import json

    from cyclegan.evaluation.fid import cycle_errors
    from cyclegan.inference.loading import load_generator

    model = tiny_export(tmp_path / "run")
    src = tmp_path / "horses"
    for i in range(5):
        write_image(src / f"{i}.png", 32, 32, seed=i)
    done = subprocess.run(torchrun_cmd("eval", "cycle", "--model", str(model), "--input", str(src), "--json",
                                       str(tmp_path / "c.json"), "--device", "cpu", "--no-progress"),
                          cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("cycle L1 AtoB then back, over 5 images") == 1  # rank 0 alone, all 5 images
    result = json.loads((tmp_path / "c.json").read_text())
    forward = Translator(load_generator(model, "AtoB"), device="cpu")
    backward = Translator(load_generator(model, "BtoA"), device="cpu", full_res=True)
    want, _ = cycle_errors(forward, backward, src, progress=False)
    assert sorted(result["per_image"]) == sorted(want)
    for name, err in want.items():
        assert result["per_image"][name] == pytest.approx(err, rel=1e-4)
