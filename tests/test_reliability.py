"""Reliability under crashes and hostile input: repeated SIGKILLs during training (often inside a
checkpoint save) and during batch translation, a full disk during a save, and pickles that would run code (image
decoding is fuzzed in test_fuzz_images.py). Everything here uses real processes, files and mounts."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from cyclegan.core.checkpoint import CheckpointError, load_checkpoint
from test_train import ROOT, TINY_MODEL, make_domain
from tiny_models import tiny_export, write_image

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def _popen(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cyclegan", *args], cwd=cwd, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def _numbered(ckdir: Path) -> int:
    """The newest iteration whose iter_*.pt is in place (it is linked after latest.pt is renamed)."""
    its = [int(p.stem[5:]) for p in ckdir.glob("iter_*.pt")]
    return max(its, default=0)


# -- 1. SIGKILL at random moments -------------------------------------------------------------


def _kill_training_repeatedly(tmp_path: Path, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    make_domain(tmp_path / "data" / "trainA", 4, 0)
    make_domain(tmp_path / "data" / "trainB", 4, 1)
    ckdir = tmp_path / "runs" / "k" / "checkpoints"
    common = ["--dataroot", "data", "--name", "k", "--size", "32", "--num-workers", "0",
              "--preview-every", "0", "--save-every", "1", "--keep", "3", *TINY_MODEL]
    reached = 0
    in_save = 0  # kills that landed inside a save (its temp file is left behind)
    for k in range(kills):
        proc = _popen(["train", *common, "--max-iters", "100000", *(["--resume"] if k else [])], tmp_path)
        try:
            # wait until this run has saved at least once, then kill at a random moment; with
            # --save-every 1 a save is in progress a large part of the time
            deadline = time.time() + 120
            while _numbered(ckdir) <= reached:
                assert proc.poll() is None, proc.stdout.read()
                assert time.time() < deadline, "no checkpoint appeared"
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.4))
            seen = _numbered(ckdir)
            _kill(proc)
        finally:
            proc.kill()
            proc.stdout.close()
        in_save += any(p.name.endswith(".tmp") for p in ckdir.iterdir())
        state = load_checkpoint(ckdir / "latest.pt")  # never corrupt or missing
        it = state["counters"]["iteration"]
        # latest.pt is renamed before iter_N.pt is linked: it is never behind a numbered file,
        # and the run was at most inside iteration it + 1 (one save interval) when killed
        assert it >= seen >= reached, (it, seen, reached)
        for p in ckdir.glob("iter_*.pt"):
            load_checkpoint(p)
        reached = it
    print(f"{kills} kills, {in_save} inside a checkpoint save, reached iteration {reached}")
    final = reached + 2
    r = subprocess.run([sys.executable, "-m", "cyclegan", "train", *common, "--resume", "--max-iters", str(final)],
                       cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    assert load_checkpoint(ckdir / "latest.pt")["counters"]["iteration"] == final
    # temp files of saves that a kill interrupted are cleaned up by the next save
    assert not [p.name for p in ckdir.iterdir() if p.name.startswith(".")]


def test_repeated_sigkill_during_training_and_saves(tmp_path):
    _kill_training_repeatedly(tmp_path, kills=2, seed=1)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_repeated_sigkill_during_training_soak(tmp_path, seed):
    _kill_training_repeatedly(tmp_path, kills=5, seed=seed)


def _kill_translation_repeatedly(tmp_path: Path, kills: int, seed: int, n_images: int) -> None:
    rng = random.Random(seed)
    tiny_export(tmp_path / "runs" / "t")
    for i in range(n_images):
        write_image(tmp_path / "in" / f"{i:03d}.png", 64, 64 + i % 3, seed=i)
    out = tmp_path / "out"
    args = ["translate", "--model", "runs/t", "--input", "in", "--output", "out", "--no-progress",
            "--batch-size", "1"]

    def visible() -> list[Path]:
        return sorted(p for p in out.glob("*.png") if not p.name.startswith(".")) if out.exists() else []

    for _ in range(kills):
        before = len(visible())
        proc = _popen(args, tmp_path)
        try:
            deadline = time.time() + 120
            while len(visible()) <= before and proc.poll() is None:
                assert time.time() < deadline, "no output appeared"
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.3))
            if proc.poll() is None:
                _kill(proc)
        finally:
            proc.kill()
            proc.stdout.close()
        for p in visible():  # every visible output is complete: it decodes
            with Image.open(p) as im:
                im.load()
    r = subprocess.run([sys.executable, "-m", "cyclegan", *args], cwd=tmp_path, env=ENV,
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    assert [p.name for p in visible()] == [f"{i:03d}.png" for i in range(n_images)]
    for p in visible():
        with Image.open(p) as im:
            im.load()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # stale temp files removed


def test_repeated_sigkill_during_translation(tmp_path):
    _kill_translation_repeatedly(tmp_path, kills=1, seed=0, n_images=30)


@pytest.mark.slow
def test_repeated_sigkill_during_translation_soak(tmp_path):
    _kill_translation_repeatedly(tmp_path, kills=5, seed=1, n_images=200)


# -- 2. a full disk during a checkpoint save ----------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs mounted for this test; skipped where mounting is not permitted."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot mount a tmpfs here ({e}); this needs root with CAP_SYS_ADMIN")
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); this needs root with CAP_SYS_ADMIN")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, timeout=30)


def test_disk_full_during_save_keeps_the_previous_checkpoint(small_tmpfs):
    import torch

    from cyclegan.core.checkpoint import save_numbered

    folder = small_tmpfs / "checkpoints"
    save_numbered({"x": torch.zeros(60_000)}, folder, 1, keep=2)  # 240 kB
    st = os.statvfs(small_tmpfs)
    (small_tmpfs / "filler").write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 100_000))
    with pytest.raises(CheckpointError, match=r"latest\.pt: no space left on device"):
        save_numbered({"x": torch.ones(60_000)}, folder, 2, keep=2)
    assert sorted(p.name for p in folder.iterdir()) == ["iter_00000001.pt", "latest.pt"]  # no temp files
    for name in ("latest.pt", "iter_00000001.pt"):
        state = load_checkpoint(folder / name)
        assert torch.equal(state["x"], torch.zeros(60_000))
    (small_tmpfs / "filler").unlink()  # space again: the next save works
    save_numbered({"x": torch.ones(60_000)}, folder, 3, keep=2)
    assert torch.equal(load_checkpoint(folder / "latest.pt")["x"], torch.ones(60_000))


def test_a_failed_write_inside_torch_save_names_the_file(tmp_path, monkeypatch):
    """Without a mount: the same path through a write that fails like a full disk."""
    import errno

    import torch

    from cyclegan.core.checkpoint import save_checkpoint

    import cyclegan.core.checkpoint as ck

    save_checkpoint({"x": torch.zeros(3)}, tmp_path / "latest.pt")

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

    original = ck._WriteErrors.__init__
    monkeypatch.setattr(ck._WriteErrors, "__init__", lambda self, f: original(self, Full(f)))
    with pytest.raises(CheckpointError, match=r"latest\.pt: no space left on device"):
        save_checkpoint({"x": torch.ones(3)}, tmp_path / "latest.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]
    assert torch.equal(load_checkpoint(tmp_path / "latest.pt")["x"], torch.zeros(3))


# -- 4. hostile checkpoints ---------------------------------------------------------------------


class RunsCode:
    """Unpickling this calls open(marker, "w"): loading it with plain pickle creates the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _hostile_files(folder: Path, marker: Path) -> list[Path]:
    """The same payload as a torch zip checkpoint (with our format tag), as a bare
    original-release style .pth state dict and as a legacy (non-zip) torch file."""
    import pickle

    import torch

    from cyclegan.core.checkpoint import CHECKPOINT_FORMAT

    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / "evil" / "checkpoints" / "latest.pt", folder / "evil.pth", folder / "legacy.pth"]
    files[0].parent.mkdir(parents=True)
    torch.save({"format": CHECKPOINT_FORMAT, "model": {"w": RunsCode(marker)}}, files[0])
    torch.save({"model.1.weight": RunsCode(marker)}, files[1])
    torch.save({"w": RunsCode(marker)}, files[2], _use_new_zipfile_serialization=False)
    files.append(folder / "raw.pkl.pth")
    files[3].write_bytes(pickle.dumps({"w": RunsCode(marker)}))
    # the payload really runs code when unpickled the unsafe way
    torch.load(files[1], weights_only=False)
    assert marker.exists()
    marker.unlink()
    return files


def test_hostile_pickles_never_run_in_our_loaders(tmp_path):
    from cyclegan.inference.loading import load_generator

    marker = tmp_path / "PWNED"
    files = _hostile_files(tmp_path / "ckpts", marker)
    for path in files:
        with pytest.raises(CheckpointError, match=path.name.replace(".", r"\.")):
            load_checkpoint(path)
        with pytest.raises(CheckpointError, match="weights_only|cannot load|not a|Unsupported"):
            load_generator(path)
    with pytest.raises(CheckpointError):
        load_generator(files[0].parent.parent)  # the run folder
    assert not marker.exists()


def test_hostile_pickles_never_run_in_the_app_or_the_command(tmp_path, monkeypatch, capsys):
    from cyclegan.app.actions import AppBackend
    from cyclegan.app.settings import AppSettings, UserError

    marker = tmp_path / "PWNED"
    runs, ckpts = tmp_path / "runs", tmp_path / "checkpoints"
    files = _hostile_files(ckpts, marker)
    (runs / "evil").mkdir(parents=True)
    os.replace(files[0].parent, runs / "evil" / "checkpoints")
    src = write_image(tmp_path / "a.png", 32, 32)
    app = AppBackend(AppSettings(runs_dir=runs, checkpoints_dir=ckpts, bundled=False, device="cpu",
                                 output_dir=tmp_path / "out"))
    for choice in ("runs/evil|AtoB", "runs/evil", "checkpoints/evil.pth", "checkpoints/legacy.pth",
                   "checkpoints/raw.pkl.pth"):
        with pytest.raises(UserError, match="Cannot load the model|Pick a model"):
            app.translate(src, choice)
    for model in (runs / "evil", ckpts / "evil.pth", ckpts / "legacy.pth"):
        with pytest.raises(UserError):
            AppBackend(AppSettings(runs_dir=runs, checkpoints_dir=ckpts, bundled=False, device="cpu",
                                   output_dir=tmp_path / "out2", model=model)).translate(src, None)
    from cyclegan.cli.main import main

    monkeypatch.chdir(tmp_path)
    for model in ("runs/evil", "checkpoints/evil.pth", "checkpoints/legacy.pth"):
        try:
            code = main(["translate", "--model", model, "--input", "a.png", "--output", "out3", "--no-progress"])
        except SystemExit as e:
            code = e.code
        err = capsys.readouterr().err
        assert code not in (0, None) and "Traceback" not in err, err
        assert "weights_only" in err or "cannot load" in err, err
    assert not marker.exists()
