"""Faults, bad input and hostile files (issue 16): each ends in one clear line naming the file or
flag, the right exit status, and nothing lost. Real processes, files, mounts and servers; the
attacks and their outcomes are listed in docs/reliability.md."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cyclegan.core.checkpoint import CheckpointError, export_generators, load_checkpoint, save_checkpoint
from loopback import LoopbackHTTP
from test_train import TINY_MODEL, make_domain
from tiny_models import ROOT, TINY, tiny_checkpoint, tiny_generators, write_image

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def run_cli(*args: str, cwd: Path, timeout: float = 240, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cyclegan", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=timeout, **kw)


def error_line(r: subprocess.CompletedProcess, status: int, *needles: str) -> str:
    """The command failed with ``status`` and one error line (no traceback) holding ``needles``."""
    assert r.returncode == status, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    lines = [l for l in r.stderr.splitlines() if "error:" in l]
    assert len(lines) == 1, r.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def two_domains(root: Path, size=(36, 44)) -> Path:
    make_domain(root / "trainA", 4, 0, size)
    make_domain(root / "trainB", 4, 1, size)
    return root


def all_finite(obj) -> bool:
    if isinstance(obj, torch.Tensor):
        return not obj.is_floating_point() or bool(torch.isfinite(obj).all())
    if isinstance(obj, dict):
        return all(all_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(all_finite(v) for v in obj)
    return True


# -- 1. non-finite weights are never saved, exported or used ---------------------------------------


@pytest.mark.parametrize("flag, value", [("--lr", "inf"), ("--lr", "nan"), ("--lambda-A", "inf"),
                                         ("--beta2", "1e999")])
def test_nonfinite_float_flags_are_rejected(tmp_path, flag, value):
    two_domains(tmp_path / "data")
    r = run_cli("train", "--dataroot", "data", "--name", "x", flag, value, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"argument {flag}: must be a finite number, got {value}" in r.stderr, r.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("lr, saved", [("1e30", False), ("1e38", False)])
def test_an_overflowing_update_is_never_saved(tmp_path, lr, saved):
    """An absurd but finite learning rate overflows the weights (1e38: in the first update, 1e30:
    in the next forward pass: finite weights of about 1e30 whose outputs are NaN, caught by the
    probe before the save); the losses of those steps were computed before the update and are
    finite. No checkpoint ever holds the overflow, and the message is true either way."""
    two_domains(tmp_path / "data")
    r = run_cli("train", "--dataroot", "data", "--name", "x", "--size", "32", "--num-workers", "0",
                "--preview-every", "0", "--save-every", "1", "--max-iters", "4", "--lr", lr, "--keep", "9",
                *TINY_MODEL, cwd=tmp_path)
    ckdir = tmp_path / "runs" / "x" / "checkpoints"
    files = sorted(ckdir.glob("*.pt"))
    if saved:
        error_line(r, 3, "became nan", f"The last good checkpoint is in {Path('runs/x/checkpoints')}")
        assert files
    else:
        error_line(r, 3, "NaN or infinite", "No checkpoint had been written yet")
        assert not files
    for path in files:
        assert all_finite(load_checkpoint(path)), path


@pytest.mark.parametrize("fused", [False, True], ids=["foreach", "fused"])
def test_nonfinite_gradients_leave_weights_and_ema_unchanged(fused):
    """fused: the CUDA and CPU default (Adam skips on the device, the EMA step is weighted by the
    flag, no host sync); foreach: torch's default Adam, which other devices get."""
    from cyclegan.models.cyclegan import CycleGAN, CycleGANConfig
    from cyclegan.training.config import with_optimizers

    torch.manual_seed(0)
    model = with_optimizers(CycleGAN(CycleGANConfig(netG="resnet_6blocks", ngf=4, ndf=4, ema_decay=0.9)))
    for opt in model.optimizers.values():
        for group in (opt.defaults, *opt.param_groups):
            group.update(fused=fused or None, foreach=False if fused else None)
    first = next(model.generators.parameters())
    hook = first.register_hook(lambda g: g * float("nan"))  # finite loss, NaN gradient
    before = {k: v.clone() for k, v in model.state_dict().items() if "generators" in k}
    d_before = next(model.discriminators.parameters()).clone()
    g = torch.Generator().manual_seed(1)
    losses = model.train_step({k: torch.rand(1, 3, 32, 32, generator=g) * 2 - 1 for k in "AB"})
    assert all(torch.isfinite(v) for v in losses.values())
    assert not model.grads_finite["G"] and model.grads_finite["D"]
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())  # G and its EMA untouched
    assert not torch.equal(d_before, next(model.discriminators.parameters()))  # D's update went on
    assert model.ema_updates == (1 if fused else 0)  # fused: counted, with a step of weight 0
    hook.remove()  # a finite step updates G and its average again
    model.train_step({k: torch.rand(1, 3, 32, 32, generator=g) * 2 - 1 for k in "AB"})
    assert model.grads_finite["G"]
    after = model.state_dict()
    assert not torch.equal(before["generators.G_A.model.1.weight"], after["generators.G_A.model.1.weight"])
    assert not torch.equal(before["ema_generators.G_A.model.1.weight"], after["ema_generators.G_A.model.1.weight"])


def test_checkpoint_and_export_writers_refuse_nonfinite_tensors(tmp_path):
    save_checkpoint({"w": torch.zeros(3)}, tmp_path / "latest.pt")
    with pytest.raises(CheckpointError, match=r"latest\.pt: 1 tensor\(s\) hold NaN or infinite values \(w\)"):
        save_checkpoint({"w": torch.tensor([0.0, float("inf"), 1.0])}, tmp_path / "latest.pt")
    assert torch.equal(load_checkpoint(tmp_path / "latest.pt")["w"], torch.zeros(3))
    gens = tiny_generators()
    with torch.no_grad():
        next(gens["G_A"].parameters())[0] = float("nan")
    with pytest.raises(CheckpointError, match="G_A.model.1.weight"):
        export_generators(dict(gens.items()), {}, tmp_path / "generators.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt"]


def test_translate_refuses_nonfinite_weights(tmp_path):
    from cyclegan.core.checkpoint import CHECKPOINT_FORMAT

    ckpt = tiny_checkpoint(tmp_path / "runs" / "bad")
    state = torch.load(ckpt, weights_only=True)
    for k, v in state["model"].items():
        if v.is_floating_point():
            v.fill_(float("nan"))
    assert state["format"] == CHECKPOINT_FORMAT
    torch.save(state, ckpt)  # as the old trainer could leave it
    write_image(tmp_path / "in.png", 32, 32)
    r = run_cli("translate", "--model", "runs/bad", "--input", "in.png", "--output", "out.png", "--no-progress",
                cwd=tmp_path)
    error_line(r, 2, "latest.pt", "NaN or infinite", "cannot translate")
    assert not (tmp_path / "out.png").exists()


# -- 7. a run stopped by a signal does not look finished ---------------------------------------------


def test_sigterm_saves_then_exits_143(tmp_path):
    from test_train import _signal_mid_training

    status, out, ckdir = _signal_mid_training(tmp_path, signal.SIGTERM, save_every=3, at=3)
    assert status == 143, out  # 128 + SIGTERM, as a shell reports a job killed by it
    assert "SIGTERM received" in out and "resume with --resume" in out and "Traceback" not in out
    it = load_checkpoint(ckdir / "latest.pt")["counters"]["iteration"]
    assert it >= 3 and (ckdir / f"iter_{it:08d}.pt").exists()  # 3: the signal came during that save


# -- 11. a damaged latest.pt: resume from the newest intact checkpoint -------------------------------


def test_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path):
    two_domains(tmp_path / "data")
    common = ["--dataroot", "data", "--name", "x", "--size", "32", "--num-workers", "0", "--preview-every", "0",
              "--save-every", "1", "--keep", "3", *TINY_MODEL]
    r = run_cli("train", *common, "--max-iters", "3", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ckdir = tmp_path / "runs" / "x" / "checkpoints"
    # damage in place (a bad sector, a stray write): latest.pt and iter_3.pt share these bytes
    with open(ckdir / "latest.pt", "r+b") as f:
        f.truncate(os.path.getsize(ckdir / "latest.pt") // 2)
    r = run_cli("train", *common, "--resume", "--max-iters", "5", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    warning = next(l for l in r.stderr.splitlines() if "newest intact checkpoint" in l)
    assert "latest.pt" in warning and "iter_00000003.pt" in warning
    assert f"using {Path('runs/x/checkpoints/iter_00000002.pt')}, the newest intact" in warning
    assert f"resumed {Path('runs/x/checkpoints/iter_00000002.pt')} at iteration 2" in r.stderr
    assert load_checkpoint(ckdir / "latest.pt")["counters"]["iteration"] == 5


def test_resume_with_no_intact_checkpoint_names_them_all(tmp_path):
    ckdir = tmp_path / "runs" / "x" / "checkpoints"
    ckdir.mkdir(parents=True)
    (ckdir / "latest.pt").write_bytes(b"PK\x03\x04 garbage")
    (ckdir / "iter_00000004.pt").write_bytes(b"")
    two_domains(tmp_path / "data")
    r = run_cli("train", "--dataroot", "data", "--name", "x", "--size", "32", "--resume", *TINY_MODEL, cwd=tmp_path)
    error_line(r, 2, "no intact checkpoint in", "latest.pt", "iter_00000004.pt")


# -- 12. wrong model files: say what the file is and what is accepted ---------------------------------


def _wrong_model_files(folder: Path) -> dict[str, str]:
    """file name -> what the message must call it."""
    folder.mkdir(parents=True, exist_ok=True)
    write_image(folder / "notimage.png", 8, 8)
    from PIL import Image

    Image.new("RGB", (4, 4)).save(folder / "photo.pth", format="JPEG")
    try:
        import onnx
        from onnx import TensorProto, helper

        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        onnx.save(helper.make_model(graph), folder / "model.onnx")
    except ImportError:
        (folder / "model.onnx").write_bytes(b"\x08\x07\x12\x04test")
    torch.save(torch.nn.Linear(2, 2), folder / "whole_module.pth")  # a pickled module, not a state dict
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), folder / "scripted.pt")
    (folder / "empty.pt").write_bytes(b"")
    return {"notimage.png": "is an image (PNG), not PyTorch weights", "photo.pth": "is an image (JPEG)",
            "model.onnx": "is an ONNX model", "whole_module.pth": "holds pickled Python objects besides tensors",
            "scripted.pt": "is a TorchScript archive", "empty.pt": "is an empty file"}


def test_wrong_model_files_are_named_for_what_they_are(tmp_path):
    files = _wrong_model_files(tmp_path / "models")
    write_image(tmp_path / "in.png", 16, 16)
    for name, what in files.items():
        r = run_cli("translate", "--model", f"models/{name}", "--input", "in.png", "--output", "out.png",
                    cwd=tmp_path)
        line = error_line(r, 2, name, what, "--model takes a run folder")
        assert "weights_only=False" not in r.stderr and "KeyError" not in line
    assert not (tmp_path / "out.png").exists()


def test_resume_from_a_wrong_file_says_what_it_is(tmp_path):
    ckdir = tmp_path / "runs" / "x" / "checkpoints"
    ckdir.mkdir(parents=True)
    write_image(tmp_path / "x.png", 8, 8).rename(ckdir / "latest.pt")  # a PNG under the checkpoint's name
    two_domains(tmp_path / "data")
    r = run_cli("train", "--dataroot", "data", "--name", "x", "--size", "32", "--resume", *TINY_MODEL, cwd=tmp_path)
    error_line(r, 2, "latest.pt is an image (PNG), not PyTorch weights", "expected a cyclegan training checkpoint")


# -- 4. written files honour the umask -------------------------------------------------------------


def _modes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mode & 0o777 for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o007, 0o660)])
def test_written_files_honour_the_umask(tmp_path, umask, mode):
    two_domains(tmp_path / "data")
    write_image(tmp_path / "in" / "a.png", 32, 32)
    set_umask = lambda: os.umask(umask)  # noqa: E731  (in the child only)
    r = run_cli("train", "--dataroot", "data", "--name", "x", "--size", "32", "--num-workers", "0",
                "--max-iters", "1", "--preview-every", "1", *TINY_MODEL, cwd=tmp_path, preexec_fn=set_umask)
    assert r.returncode == 0, r.stderr
    r = run_cli("translate", "--model", "runs/x", "--input", "in", "--output", "out", "--no-progress",
                cwd=tmp_path, preexec_fn=set_umask)
    assert r.returncode == 0, r.stderr
    r = run_cli("export", "runs/x", "--output", "exported.safetensors", cwd=tmp_path, preexec_fn=set_umask)
    assert r.returncode == 0, r.stderr
    written = {**_modes(tmp_path / "runs"), **_modes(tmp_path / "out"),
               "exported.safetensors": (tmp_path / "exported.safetensors").stat().st_mode & 0o777}
    for name in ("x/checkpoints/latest.pt", "x/checkpoints/iter_00000001.pt", "x/generators.safetensors",
                 "x/previews/iter_00000001.png", "a.png", "index.html", "exported.safetensors"):
        assert written.pop(name) == mode, name
    assert {n: m for n, m in written.items() if m != mode} == {}  # config.yaml, TensorBoard's files


# -- 2. a tiny image in a --full-res folder run ----------------------------------------------------


def test_full_res_folder_with_tiny_and_thin_images(tmp_path):
    from PIL import Image

    from tiny_models import tiny_export

    tiny_export(tmp_path / "runs" / "t")
    sizes = {"ok": (32, 32), "dot": (1, 1), "strip": (3, 5000), "thin": (2, 700), "two": (2, 2)}
    for name, (h, w) in sizes.items():
        write_image(tmp_path / "in" / f"{name}.png", h, w)
    r = run_cli("translate", "--model", "runs/t", "--input", "in", "--output", "out", "--full-res", "--no-progress",
                "--batch-size", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "5 translated" in r.stderr and "0 failed" in r.stderr
    for name, (h, w) in sizes.items():
        with Image.open(tmp_path / "out" / f"{name}.png") as im:
            assert im.size == (w, h), name


def test_an_image_the_generator_fails_on_is_listed_and_the_rest_go_on(tmp_path):
    """A generator that fails on one image (as on one too large for the memory): that image is
    listed at the end; the others in its batch and after it are written."""
    from PIL import Image

    from cyclegan.inference.folder import plan_jobs, translate_jobs
    from cyclegan.inference.loading import load_generator
    from cyclegan.inference.translator import Translator
    from tiny_models import tiny_export

    class FailsOnWhite(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            if (x.flatten(1).amin(1) > 0.99).any():
                raise RuntimeError("CUDA out of memory. Tried to allocate 12.00 GiB")
            return self.net(x)

    gen = load_generator(tiny_export(tmp_path / "runs" / "t"))
    gen.net = FailsOnWhite(gen.net)
    for name in "abcd":
        write_image(tmp_path / "in" / f"{name}.png", 32, 32, seed=ord(name))
    Image.new("RGB", (32, 32), "white").save(tmp_path / "in" / "b.png")
    jobs = plan_jobs(tmp_path / "in", tmp_path / "out")
    summary = translate_jobs(Translator(gen, device="cpu", full_res=True), jobs, batch_size=4, progress=False)
    assert summary.translated == 3 and [p.name for p, _ in summary.failed] == ["b.png"]
    assert "RuntimeError: CUDA out of memory" in summary.failed[0][1]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png", "d.png"]


# -- 9. images that keep their own size cannot share a batch ---------------------------------------


@pytest.mark.parametrize("preprocess", ["none", "scale_width"])
def test_own_size_preprocessing_with_mixed_sizes_and_batches(tmp_path, preprocess):
    make_domain(tmp_path / "data" / "trainA", 2, 0, (32, 32))
    make_domain(tmp_path / "data" / "trainA" / "more", 1, 2, (64, 32))
    make_domain(tmp_path / "data" / "trainB", 3, 1, (32, 32))
    common = ["--dataroot", "data", "--name", "x", "--size", "32", "--load-size", "32", "--num-workers", "0",
              "--preview-every", "0", "--max-iters", "2", "--preprocess", preprocess, *TINY_MODEL]
    r = run_cli("train", *common, "--batch-size", "2", cwd=tmp_path)
    error_line(r, 2, f"--preprocess {preprocess}", "domain A", "000.png: 32x32", "more/000.png: ",
               "--batch-size 1")
    assert not (tmp_path / "runs" / "x").exists()
    r = run_cli("train", *common, "--batch-size", "1", cwd=tmp_path)  # one image per batch: fine
    assert r.returncode == 0, r.stderr


# -- 10. a symlink from the input folder to the output folder ---------------------------------------


def test_outputs_reached_through_a_symlink_are_never_inputs(tmp_path):
    from tiny_models import tiny_export

    tiny_export(tmp_path / "runs" / "t")
    for name in ("a", "b"):
        write_image(tmp_path / "in" / f"{name}.png", 32, 32)
    (tmp_path / "out").mkdir()
    (tmp_path / "in" / "results").symlink_to(tmp_path / "out", target_is_directory=True)
    args = ["translate", "--model", "runs/t", "--input", "in", "--output", "out", "--no-progress"]
    for _ in range(3):  # reruns: nothing new to do, nothing nested
        r = run_cli(*args, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")) == [
        "a.png", "b.png", "index.html"]
    assert "skipping 2 image(s) that are in the output folder out" in r.stderr


# -- 3. a nearly full disk: the intended message, not TensorBoard's or a preview's traceback --------


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size) -> a tmpfs of that size, unmounted after the test; skipped where mounting is
    not permitted (needs root with CAP_SYS_ADMIN)."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        mnt = tmp_path / f"disk{len(mounted)}"
        mnt.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()})")
        mounted.append(mnt)
        return mnt

    yield mount
    for mnt in mounted:
        subprocess.run(["umount", str(mnt)], capture_output=True, timeout=30)


@pytest.mark.parametrize("size, preview_fits", [("64k", False), ("1m", True)])
def test_a_full_disk_during_training_gives_the_checkpoint_message(tmp_path, tmpfs, size, preview_fits):
    """64 KiB: the config fits but the first preview (~70 kB) does not, then the checkpoint
    (~1.5 MB) cannot be written; 1 MiB: the preview fits, the checkpoint does not. TensorBoard's
    event file fails too, in its background thread and at close."""
    disk = tmpfs(size)
    two_domains(tmp_path / "data")
    r = run_cli("train", "--dataroot", "data", "--name", "x", "--runs-dir", str(disk), "--size", "32",
                "--num-workers", "0", "--max-iters", "3", "--save-every", "1", "--preview-every", "1",
                *TINY_MODEL, cwd=tmp_path)
    error_line(r, 2, f"could not write {disk}/x/checkpoints/latest.pt: no space left on device")
    assert ("preview not written: could not write" in r.stderr) != preview_fits, r.stderr
    assert not (disk / "x" / "checkpoints" / "latest.pt").exists()
    assert not [p for p in disk.rglob(".*") if p.name.endswith(".tmp")]  # no temporary files left behind


# -- 5. crafted export metadata --------------------------------------------------------------------


def _crafted_export(path: Path, config: str, ngf: int = 4) -> Path:
    """generators.safetensors with real tiny (ngf ``ngf``) weights and the metadata's config
    replaced by the JSON text ``config``."""
    import json

    from safetensors.torch import save

    from cyclegan.core.checkpoint import EXPORT_FORMAT
    from cyclegan.models.networks import build_generator

    tensors = {f"{n}.{k}": v.contiguous() for n in ("G_A", "G_B")
               for k, v in build_generator("resnet_6blocks", 3, 3, ngf=ngf).state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(save(tensors, metadata={"format": EXPORT_FORMAT, "config": config, "size": json.dumps(32)}))
    return path


def _config(**fields) -> str:
    import json
    from dataclasses import asdict

    return json.dumps({**asdict(TINY), **fields})


@pytest.mark.parametrize("config, message", [
    ("[1, 2, 3]", "the metadata's config is not a JSON object"),
    ('{"netG": "resnet_6blocks", ', "the metadata's 'config' is not valid JSON"),
    ("[" * 100_000 + "]" * 100_000, "the metadata's 'config' is not valid JSON"),
    (_config(ngf="64"), "ngf must be an integer 1..1024, got '64'"),
    (_config(ngf=100_000_000), "ngf must be an integer 1..1024, got 100000000"),
    (_config(netG=["resnet_6blocks"]), "netG must be one of"),
    (_config(input_nc=3.5), "input_nc must be an integer"),
])
def test_crafted_export_configs_are_refused_with_the_file_name(tmp_path, config, message):
    _crafted_export(tmp_path / "runs" / "evil" / "generators.safetensors", config)
    write_image(tmp_path / "in.png", 32, 32)
    r = run_cli("translate", "--model", "runs/evil", "--input", "in.png", "--output", "out.png", cwd=tmp_path)
    error_line(r, 2, "generators.safetensors", message)


def test_a_small_file_claiming_a_huge_generator_allocates_nothing(tmp_path):
    """ngf 512 would take ~2.5 GB to build; the shapes are compared before anything is built."""
    _crafted_export(tmp_path / "runs" / "big" / "generators.safetensors", _config(ngf=512))
    write_image(tmp_path / "in.png", 32, 32)
    measure = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "sys.stderr.write(r.stderr); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
               "sys.exit(r.returncode)")
    r = subprocess.run([sys.executable, "-c", measure, sys.executable, "-m", "cyclegan", "translate", "--model",
                        "runs/big", "--input", "in.png", "--output", "out.png"], cwd=tmp_path, env=ENV,
                       capture_output=True, text=True, timeout=240)
    error_line(r, 2, "generators.safetensors does not fit a resnet_6blocks, ngf 512", "shape model.1.weight: (4, 3, 7, 7)")
    peak_mb = int(r.stdout.split()[-1]) / 1024
    assert peak_mb < 1000, peak_mb  # torch and the tiny file; the generator would be 2,500+


# -- 6. a garbled config.yaml beside a valid run --------------------------------------------------------

GARBLED_CONFIGS = {"bad utf-8": b"model:\n  netG: \xff\xfe\xfa\n", "deep nesting": b"[" * 50_000 + b"]" * 50_000,
                   "model is a number": b"model: 5\ntrain: [1, 2]\n", "a list": b"- 1\n- 2\n", "binary": bytes(range(256))}


@pytest.mark.parametrize("garble", sorted(GARBLED_CONFIGS))
def test_a_garbled_config_yaml_hides_no_run(tmp_path, garble):
    from cyclegan.app.actions import AppBackend
    from cyclegan.app.settings import AppSettings

    run = tmp_path / "runs" / "ok"
    tiny_checkpoint(run)
    (run / "config.yaml").write_bytes(GARBLED_CONFIGS[garble])
    src = write_image(tmp_path / "a.png", 32, 32)
    settings = dict(runs_dir=tmp_path / "runs", checkpoints_dir=tmp_path / "checkpoints", bundled=False,
                    device="cpu", output_dir=tmp_path / "out")
    app = AppBackend(AppSettings(**settings))
    assert app.translate(src, "runs/ok|AtoB").output.size == (32, 32)  # listed and usable
    app = AppBackend(AppSettings(**settings, model=run / "checkpoints" / "latest.pt"))
    first = app.catalog().translate[0]
    assert "(--model)" in first.label
    assert app.translate(src, first.id).output.size == (32, 32)


def test_app_py_starts_on_a_run_with_a_garbled_config_yaml(tmp_path):
    from loopback import free_port
    from test_app_server import running_app

    tiny_checkpoint(tmp_path / "runs" / "tiny")
    (tmp_path / "runs" / "tiny" / "config.yaml").write_bytes(GARBLED_CONFIGS["bad utf-8"])
    env = {**ENV, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(tmp_path / "gradio")}
    with running_app(tmp_path, env, free_port(), "--model", "runs/tiny/checkpoints/latest.pt") as (url, proc):
        assert proc.poll() is None
    assert "Traceback" not in (tmp_path / "server.log").read_text()


# -- 8. downloads from a server that sends less, more or something else -------------------------------


class RawServer(LoopbackHTTP):
    """http.server on 127.0.0.1 in a thread. ``files``: URL path -> bytes sent WITHOUT a
    Content-Length (the body ends when the connection closes), or None for an endless body."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler

        self.files: dict[str, bytes | None] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                if self.path not in server.files:
                    self.send_error(404)
                    return
                body = server.files[self.path]
                self.send_response(200)
                self.end_headers()
                try:
                    if body is not None:
                        self.wfile.write(body)
                        return
                    while True:  # endless: until the client hangs up
                        self.wfile.write(b"\0" * 65536)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.start(Handler)


@pytest.fixture
def raw_server():
    server = RawServer()
    yield server
    server.close()


def _zip(entries: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


def _dataset_zip(name: str) -> bytes:
    import io

    from PIL import Image

    def png(seed: int) -> bytes:
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (seed * 40, 0, 0)).save(buf, format="PNG")
        return buf.getvalue()

    return _zip({f"{name}/trainA/{i}.png": png(i) for i in range(3)} | {f"{name}/trainB/{i}.png": png(i + 3)
                                                                       for i in range(3)})


def _download(server: RawServer, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli("download", *args, "--base-url", server.url, "--no-progress", cwd=cwd, timeout=120)


def test_a_truncated_zip_without_content_length_is_not_kept(raw_server, tmp_path):
    whole = _dataset_zip("facades")
    raw_server.files["/datasets/facades.zip"] = whole[: len(whole) * 2 // 3]
    r = _download(raw_server, tmp_path, "dataset", "facades")
    error_line(r, 2, "facades.zip", "not an intact zip file", "truncated")
    assert not (tmp_path / "datasets").exists()  # nothing kept, no empty folder
    raw_server.files["/datasets/facades.zip"] = whole  # the next try works
    r = _download(raw_server, tmp_path, "dataset", "facades")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "datasets" / "facades" / "trainA").iterdir()) == ["0.png", "1.png", "2.png"]


def test_an_endless_body_is_capped(raw_server, tmp_path):
    raw_server.files["/datasets/facades.zip"] = None
    r = _download(raw_server, tmp_path, "dataset", "facades", "--max-size", "2")
    error_line(r, 2, "facades.zip is larger than the 2 MiB", "--max-size", "nothing was kept")
    assert not (tmp_path / "datasets").exists()


def test_a_truncated_pth_without_content_length_is_not_kept(raw_server, tmp_path):
    from tiny_models import original_pth

    original_pth(tmp_path / "served.pth", netG="resnet_9blocks", ngf=4)
    data = (tmp_path / "served.pth").read_bytes()
    raw_server.files["/pretrained_models/horse2zebra.pth"] = data[: len(data) // 2]
    r = _download(raw_server, tmp_path, "weights", "horse2zebra")
    error_line(r, 2, "latest_net_G.pth.part", "truncated download")
    assert not (tmp_path / "checkpoints").exists()
    raw_server.files["/pretrained_models/horse2zebra.pth"] = data
    r = _download(raw_server, tmp_path, "weights", "horse2zebra")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "checkpoints" / "horse2zebra_pretrained" / "latest_net_G.pth").read_bytes() == data


@pytest.mark.parametrize("entries, message", [
    ({"facades/trainA": b"a file", "facades/trainA/x.png": b"..."}, "both a file and a folder named facades/trainA"),
    ({"elsewhere/trainA/x.png": b"..."}, "does not hold the folder facades/"),
    ({"facades/trainA/x.png": b"\0" * (120 << 20)}, "zip bomb"),
])
def test_crafted_zips_are_refused(raw_server, tmp_path, entries, message):
    raw_server.files["/datasets/facades.zip"] = _zip(entries)
    if message == "zip bomb":  # the size check comes at extraction: the zip itself is intact
        r = _download(raw_server, tmp_path, "dataset", "facades", "--keep-zip")
    else:
        r = _download(raw_server, tmp_path, "dataset", "facades")
    error_line(r, 2, "facades.zip", message)
    assert not (tmp_path / "datasets" / "facades").exists()


def test_a_file_where_the_data_set_folder_goes(raw_server, tmp_path):
    raw_server.files["/datasets/facades.zip"] = _dataset_zip("facades")
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "facades").write_text("my notes")
    r = _download(raw_server, tmp_path, "dataset", "facades")
    error_line(r, 2, f"{Path('datasets/facades')} exists and is a file", "move it away or pass another --root")
    assert (tmp_path / "datasets" / "facades").read_text() == "my notes"


def test_download_list_promises_nothing_it_does_not_show(tmp_path):
    r = run_cli("download", "list", cwd=tmp_path)
    assert r.returncode == 0 and "cityscapes" in r.stdout
    assert "see below" not in r.stdout
