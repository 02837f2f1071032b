"""Issue 30: no file, signal or stream makes the project run code, exhaust memory, lie or lose
work. Each class of attack is fixed at its root; these tests attack the root with several variants
(docs/reliability.md lists them)."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from test_faults import error_line as one_error_line
from tiny_models import ROOT, write_image

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def run_cli(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cyclegan", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=timeout)




class RunsCode:
    """Unpickling this calls open(marker, "w")."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# -- 1. a .pt2 archive whose loader would unpickle or eval ---------------------------------------------


class _Features(torch.nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3)) * 2 + 1


def _pt2_entries() -> dict[str, bytes]:
    ep = torch.export.export(_Features(), (torch.zeros(2, 3, 8, 8),),
                             dynamic_shapes=({0: torch.export.Dim("n")},))
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    with zipfile.ZipFile(buf) as z:
        return {n: z.read(n) for n in z.namelist()}


def _rezip(entries: dict[str, bytes], path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return path


def _hostile_pt2s(folder: Path, marker: Path) -> dict[str, Path]:
    """Variants of a valid torch.export archive, each of which runs code in torch.export.load."""
    base = _pt2_entries()
    prefix = next(iter(base)).split("/")[0] + "/"
    payload = torch_pickle = io.BytesIO()
    torch.save(RunsCode(marker), torch_pickle)
    payload = torch_pickle.getvalue()
    out = {}

    # an entry of the weights config marked use_pickle (our module has no weights: add one)
    e = dict(base)
    wcfg = f"{prefix}data/weights/model_weights_config.json"
    cfg = json.loads(e[wcfg])
    cfg["config"]["evil"] = {"path_name": "weight_9", "is_param": False, "use_pickle": True, "tensor_meta": None}
    e[wcfg] = json.dumps(cfg).encode()
    e[f"{prefix}data/weights/weight_9"] = payload
    out["use_pickle weight"] = _rezip(e, folder / "weights.pt2")

    # the same in the constants config
    e = dict(base)
    ccfg = f"{prefix}data/constants/model_constants_config.json"
    e[ccfg] = json.dumps({"config": {"evil": {"path_name": "tensor_9", "is_param": False, "use_pickle": True,
                                              "tensor_meta": None}}}).encode()
    e[f"{prefix}data/constants/tensor_9"] = payload
    out["use_pickle constant"] = _rezip(e, folder / "constants.pt2")

    # an opaque object constant: plain pickle.loads
    e = dict(base)
    e[ccfg] = json.dumps({"config": {"evil": {"path_name": "opaque_obj_0", "is_param": False,
                                              "use_pickle": True, "tensor_meta": None}}}).encode()
    e[f"{prefix}data/constants/opaque_obj_0"] = pickle.dumps(RunsCode(marker))
    out["opaque object"] = _rezip(e, folder / "opaque.pt2")

    # sample inputs that weights_only refuses: torch falls back to weights_only=False
    e = dict(base)
    e[f"{prefix}data/sample_inputs/model.pt"] = payload
    out["sample inputs"] = _rezip(e, folder / "inputs.pt2")

    # a symbolic size expression: torch hands it to sympy.sympify, which evals it
    e = dict(base)
    model = f"{prefix}models/model.json"
    text = e[model].decode()
    assert '"expr_str": "Symbol(' in text, text[:400]
    evil = f"__import__('builtins').open('{marker}', 'w')"
    import re
    e[model] = re.sub(r'"expr_str": "[^"]*"', json.dumps({"expr_str": evil})[1:-1], text, count=1).encode()
    out["sympy expression"] = _rezip(e, folder / "expr.pt2")

    # the legacy weights file torch loads as a plain torch pickle
    e = dict(base)
    e[f"{prefix}data/weights/model.pt"] = payload
    out["legacy weights"] = _rezip(e, folder / "legacy.pt2")
    return out


def test_the_pt2_variants_really_run_code_in_torch(tmp_path):
    """The attack is real: torch.export.load runs each variant's payload (guards the test)."""
    marker = tmp_path / "PWNED"
    ran = []
    for name, path in _hostile_pt2s(tmp_path, marker).items():
        try:
            torch.export.load(str(path))
        except Exception:
            pass
        if marker.exists():
            ran.append(name)
            marker.unlink()
    assert {"use_pickle weight", "sample inputs", "sympy expression", "legacy weights"} <= set(ran), ran


def test_hostile_pt2_archives_run_nothing(tmp_path):
    from cyclegan.data.images import DataError
    from cyclegan.evaluation.fid import load_feature_extractor

    marker = tmp_path / "PWNED"
    for name, path in _hostile_pt2s(tmp_path, marker).items():
        with pytest.raises(DataError, match=f"--features {path}"):
            load_feature_extractor(str(path), device="cpu")
        assert not marker.exists(), name
    # the intact archive still works
    good = _rezip(_pt2_entries(), tmp_path / "good.pt2")
    ex = load_feature_extractor(str(good), device="cpu")
    assert ex is not None


def test_hostile_pt2_through_the_command(tmp_path):
    marker = tmp_path / "PWNED"
    path = _hostile_pt2s(tmp_path, marker)["use_pickle weight"]
    for d in ("a", "b"):
        for i in range(2):
            write_image(tmp_path / d / f"{i}.png", 16, 16, seed=i)
    r = run_cli("eval", "fid", "--real", "a", "--fake", "b", "--features", str(path), "--device", "cpu", cwd=tmp_path)
    one_error_line(r, 2, path.name)
    assert not marker.exists()


# -- 2. sizes read from files are bounded ---------------------------------------------------------------


def test_a_stored_training_size_is_bounded(tmp_path):
    """size 65536 in an export's metadata or a checkpoint's run config would make translating a
    40x40 image allocate ~22 GB; refused when the file is loaded, naming the file."""
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    from cyclegan.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from cyclegan.inference.loading import load_generator
    from tiny_models import tiny_checkpoint, tiny_export

    export = tiny_export(tmp_path / "runs" / "e")
    with safe_open(str(export), framework="pt") as f:
        meta = f.metadata()
    for size in ("65536", "1e9", "[64]"):
        save_file(load_file(export), export, metadata={**meta, "size": size})
        with pytest.raises(CheckpointError, match="generators.safetensors: the stored training size"):
            load_generator(export)
    ckpt = tiny_checkpoint(tmp_path / "runs" / "c")
    state = load_checkpoint(ckpt)
    state["run_config"]["data"]["size"] = 65536
    save_checkpoint(state, ckpt)
    with pytest.raises(CheckpointError, match="latest.pt: the stored training size"):
        load_generator(ckpt)
    write_image(tmp_path / "in.png", 40, 40)
    r = run_cli("translate", "--model", "runs/c", "--input", "in.png", "--output", "out.png", cwd=tmp_path)
    one_error_line(r, 2, "latest.pt", "training size")


def _domains(root: Path) -> Path:
    from test_train import make_domain

    make_domain(root / "trainA", 4, 0, (20, 20))
    make_domain(root / "trainB", 4, 1, (20, 20))
    return root


def _crafted_cache(path: Path, craft: str) -> None:
    """Rewrite the cached classifier at ``path`` into the attack ``craft``."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    tensors = load_file(path)
    config = json.loads(meta["config"])
    if craft == "huge width":
        meta["config"] = json.dumps({**config, "width": 10 ** 9})
    elif craft == "huge stages":
        meta["config"] = json.dumps({**config, "stages": 10 ** 6})
    elif craft == "nested config":
        meta["config"] = "[" * 100_000 + "]" * 100_000
    elif craft == "nested fingerprint":
        meta["data_fingerprint"] = "[" * 100_000 + "]" * 100_000
    elif craft == "bad json":
        meta["config"] = '{"width": '
    elif craft == "config a list":
        meta["config"] = "[1, 2]"
    elif craft == "width a string":
        meta["config"] = json.dumps({**config, "width": "32"})
    elif craft == "accuracy a string":
        meta["test_accuracy"] = json.dumps("high")
    elif craft == "stale shapes":  # written by a classifier of another width, as an older version might
        meta["config"] = json.dumps({**config, "width": config["width"] * 2})
    elif craft == "nan weights":
        key = next(k for k, v in tensors.items() if v.is_floating_point() and v.dim() > 1)
        tensors[key] = tensors[key].clone().fill_(float("nan"))
    elif craft == "truncated":
        path.write_bytes(path.read_bytes()[:200])
        return
    save_file(tensors, path, metadata=meta)


CACHE_ATTACKS = ["huge width", "huge stages", "nested config", "nested fingerprint", "bad json", "config a list",
                 "width a string", "accuracy a string", "stale shapes", "nan weights", "truncated"]


@pytest.mark.parametrize("craft", CACHE_ATTACKS)
def test_a_cached_domain_classifier_that_does_not_check_out_is_rebuilt(tmp_path, craft, caplog):
    from cyclegan.evaluation.domain_classifier_cache import domain_classifier

    root = _domains(tmp_path / "data")
    model, info = domain_classifier(root, 3, size=16, epochs=1, workers=0)
    assert info.trained_now and info.path is not None
    _crafted_cache(info.path, craft)
    with caplog.at_level("WARNING"):
        model, again = domain_classifier(root, 3, size=16, epochs=1, workers=0)
    assert again.trained_now, craft
    assert str(info.path) in caplog.text and "ignoring" in caplog.text, caplog.text
    again.describe()
    # the rebuilt cache is used next time
    _, third = domain_classifier(root, 3, size=16, epochs=1, workers=0)
    assert not third.trained_now


def test_a_crafted_classifier_given_by_name_is_one_line(tmp_path):
    from cyclegan.evaluation.domain_classifier_cache import domain_classifier

    root = _domains(tmp_path / "data")
    _, info = domain_classifier(root, 3, size=16, epochs=1, workers=0)
    _crafted_cache(info.path, "huge width")
    r = run_cli("eval", "domains", "--model", "nothing", "--dataroot", "data", "--classifier", str(info.path),
                cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]


# -- 3. the app's Video tab bounds frame sizes as the image tabs do ------------------------------------


@pytest.mark.parametrize("full_res", [False, True])
def test_the_video_tab_refuses_frames_over_the_image_limit(tmp_path, full_res):
    pytest.importorskip("av")
    from cyclegan.app.actions import AppBackend
    from cyclegan.app.media import translate_video_upload
    from cyclegan.app.settings import AppSettings, UserError
    from test_video import write_clip
    from tiny_models import tiny_export

    tiny_export(tmp_path / "runs" / "tiny")
    clip = write_clip(tmp_path / "clip.mp4", frames=3, audio=False)  # 48x40 = 1920 px a frame
    app = AppBackend(AppSettings(runs_dir=tmp_path / "runs", checkpoints_dir=tmp_path / "none", bundled=False,
                                 device="cpu", output_dir=tmp_path / "out", max_input_pixels=1000,
                                 max_pixels=10 ** 6))
    with pytest.raises(UserError, match="48x40.*accepts images and video frames up to"):
        translate_video_upload(app, clip, "runs/tiny|AtoB", full_res=full_res)
    assert not list((tmp_path / "out").rglob("*.mp4"))


def test_each_decoded_frame_is_bounded_and_a_corrupt_stream_names_the_file(tmp_path):
    pytest.importorskip("av")
    from cyclegan.data.images import DataError
    from cyclegan.inference.loading import load_generator
    from cyclegan.inference.translator import Translator
    from cyclegan.inference.video import translate_video
    from test_video import write_clip
    from tiny_models import tiny_export

    translator = Translator(load_generator(tiny_export(tmp_path / "runs" / "tiny")), device="cpu")
    clip = write_clip(tmp_path / "clip.mp4", frames=3, audio=False)
    with pytest.raises(DataError, match="clip.mp4: frame 0 is 48x40, over the limit"):
        translate_video(translator, clip, tmp_path / "out.mp4", progress=False, max_pixels=1000)
    data = bytearray(clip.read_bytes())
    for i in range(len(data) // 3, len(data) - 200, 7):  # garble the middle of the stream
        data[i] ^= 0x5A
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    try:
        translate_video(translator, bad, tmp_path / "out2.mp4", progress=False)
    except DataError as e:
        assert "bad.mp4" in str(e)


# -- 4. "good" means finite outputs, not only finite weights --------------------------------------------


def _overflowing(path: Path) -> Path:
    """Move a tiny checkpoint's generator weights by +-1e30, as one Adam step at --lr 1e30 does:
    finite, but every output is NaN."""
    from cyclegan.core.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(path)
    g = torch.Generator().manual_seed(0)
    state["model"] = {k: (v + torch.randn(v.shape, generator=g).sign() * 1e30
                          if v.is_floating_point() and "generators" in k else v) for k, v in state["model"].items()}
    save_checkpoint(state, path)
    return path


def test_finite_weights_with_nan_outputs_are_never_used(tmp_path):
    from cyclegan.core.checkpoint import NonFiniteError
    from cyclegan.inference.loading import load_generator
    from tiny_models import tiny_checkpoint

    ckpt = _overflowing(tiny_checkpoint(tmp_path / "runs" / "x"))
    with pytest.raises(NonFiniteError, match="latest.pt: the weights are finite but produce NaN"):
        load_generator(ckpt)
    write_image(tmp_path / "in.png", 32, 32)
    r = run_cli("translate", "--model", "runs/x", "--input", "in.png", "--output", "out.png", cwd=tmp_path)
    one_error_line(r, 2, "latest.pt", "NaN")
    assert not (tmp_path / "out.png").exists()
    r = run_cli("export", "runs/x", cwd=tmp_path)
    one_error_line(r, 2, "latest.pt", "NaN")
    assert not (tmp_path / "runs" / "x" / "generators.safetensors").exists()


def test_a_checkpoint_whose_outputs_overflow_is_never_called_good(tmp_path):
    """--lr 1e30: iteration 1 leaves finite weights of about 1e30 whose every output is NaN."""
    from cyclegan.core.checkpoint import load_checkpoint
    from test_train import TINY_MODEL, make_domain

    make_domain(tmp_path / "data" / "trainA", 4, 0, (36, 44))
    make_domain(tmp_path / "data" / "trainB", 4, 1, (36, 44))
    r = run_cli("train", "--dataroot", "data", "--name", "x", "--size", "32", "--num-workers", "0",
                "--preview-every", "0", "--save-every", "1", "--max-iters", "4", "--lr", "1e30", "--keep", "9",
                *TINY_MODEL, cwd=tmp_path)
    one_error_line(r, 3, "No checkpoint had been written yet")
    assert not list((tmp_path / "runs" / "x" / "checkpoints").glob("*.pt"))


@pytest.mark.parametrize("damage", ["nan", "overflow"])
def test_a_published_download_whose_weights_are_not_usable_is_not_kept(tmp_path, damage):
    from test_faults import RawServer
    from tiny_models import original_pth

    net = original_pth(tmp_path / "served.pth", netG="resnet_9blocks", ngf=4)
    state = net.state_dict()
    g = torch.Generator().manual_seed(0)
    for k, v in state.items():
        if v.is_floating_point() and "running" not in k:
            v.fill_(float("nan")) if damage == "nan" else v.add_(torch.randn(v.shape, generator=g).sign() * 1e30)
    torch.save(state, tmp_path / "served.pth")
    server = RawServer()
    try:
        server.files["/pretrained_models/horse2zebra.pth"] = (tmp_path / "served.pth").read_bytes()
        r = run_cli("download", "weights", "horse2zebra", "--base-url", server.url, "--no-progress", cwd=tmp_path)
    finally:
        server.close()
    one_error_line(r, 2, "latest_net_G.pth", "NaN")
    assert not list((tmp_path / "checkpoints").rglob("*.pth")) if (tmp_path / "checkpoints").exists() else True


def test_a_folder_where_the_weights_go_is_an_error(tmp_path):
    (tmp_path / "checkpoints" / "horse2zebra_pretrained" / "latest_net_G.pth").mkdir(parents=True)
    r = run_cli("download", "weights", "horse2zebra", "--base-url", "http://127.0.0.1:9", "--no-progress",
                cwd=tmp_path)
    one_error_line(r, 2, "latest_net_G.pth is a folder")


# -- 5. bit damage is detected on load, and every loader falls back ---------------------------------------


def _flip(path: Path, n: int = 4096) -> None:
    """Flip ``n`` bytes in the middle of ``path`` in place (the inode, and so a hard link, shared)."""
    with open(path, "r+b") as f:
        size = f.seek(0, 2)
        f.seek(size // 2 - n // 2)
        data = bytearray(f.read(n))
        f.seek(size // 2 - n // 2)
        f.write(bytes(b ^ 0xFF for b in data))


def test_bit_damage_inside_a_checkpoint_is_detected(tmp_path):
    from cyclegan.core.checkpoint import CheckpointError, load_checkpoint
    from tiny_models import tiny_checkpoint

    ckpt = tiny_checkpoint(tmp_path / "runs" / "x")
    _flip(ckpt)
    with pytest.raises(CheckpointError, match="latest.pt.*(damaged|CRC)"):
        load_checkpoint(ckpt)


def test_translate_falls_back_past_a_damaged_latest_pt(tmp_path):
    import shutil

    from cyclegan.core.checkpoint import load_checkpoint, save_numbered
    from tiny_models import tiny_checkpoint

    ckpt = tiny_checkpoint(tmp_path / "runs" / "x")
    state = load_checkpoint(ckpt)
    state.pop("format"), state.pop("code_version")
    folder = ckpt.parent
    save_numbered(state, folder, 1, keep=3)
    save_numbered(state, folder, 2, keep=3)  # latest.pt is a hard link to iter_2
    _flip(folder / "latest.pt")
    write_image(tmp_path / "in.png", 32, 32)
    r = run_cli("translate", "--model", "runs/x", "--input", "in.png", "--output", "out.png", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "iter_00000001.pt" in r.stderr and "latest.pt" in r.stderr, r.stderr
    assert (tmp_path / "out.png").is_file()
    r = run_cli("export", "runs/x", cwd=tmp_path)
    assert r.returncode == 0 and "iter_00000001.pt" in r.stderr, r.stderr[-2000:]
    # an intact export beside a damaged checkpoint: translate uses it
    shutil.rmtree(folder)
    folder.mkdir()
    shutil.copy(tiny_checkpoint(tmp_path / "runs" / "y"), folder / "latest.pt")
    os.utime(folder / "latest.pt")  # newer than the export, so tried first
    _flip(folder / "latest.pt")
    r = run_cli("translate", "--model", "runs/x", "--input", "in.png", "--output", "out2.png", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "generators.safetensors" in r.stderr, r.stderr


# -- 11, 13. wrong-typed fields and wrong files: one line saying what is wrong ----------------------------


@pytest.mark.parametrize("field, value", [("model_config", 5), ("model_config", [1, 2]), ("model", [1, 2]),
                                          ("model", {"generators.G_A.model.1.weight": "x"}), ("run_config", 7),
                                          ("model_config", {"netG": ["x"], "ngf": 4})])
def test_a_wrong_typed_checkpoint_field_is_one_line(tmp_path, field, value):
    from cyclegan.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from cyclegan.inference.loading import load_generator
    from cyclegan.inference.translator import Translator
    from tiny_models import tiny_checkpoint

    ckpt = tiny_checkpoint(tmp_path / "runs" / "x")
    state = load_checkpoint(ckpt)
    state[field] = value
    save_checkpoint(state, ckpt)
    with pytest.raises(CheckpointError, match="latest.pt"):
        load_generator(ckpt)
    with pytest.raises(CheckpointError, match="latest.pt"):
        Translator.from_pretrained(str(ckpt)) if hasattr(Translator, "from_pretrained") else load_generator(ckpt)
    if value in (5, [1, 2]):  # the commands, for two of them (each is a process start)
        write_image(tmp_path / "in.png", 32, 32)
        one_error_line(run_cli("translate", "--model", "runs/x", "--input", "in.png", "--output", "o.png",
                               cwd=tmp_path), 2, "latest.pt")
        one_error_line(run_cli("export", "runs/x", cwd=tmp_path), 2, "latest.pt")


def test_wrong_files_are_named_for_what_they_are(tmp_path):
    from cyclegan.core.checkpoint import CheckpointError
    from cyclegan.inference.loading import load_generator

    zeros = tmp_path / "zeros.pt"
    zeros.write_bytes(b"\0" * 1000)
    rand = tmp_path / "random.pt"
    rand.write_bytes(bytes(torch.randint(0, 256, (100,), generator=torch.Generator().manual_seed(3)).tolist()))
    bad_key = tmp_path / "badkey.pth"
    torch.save({"model.x.weight": torch.zeros(4, 3, 7, 7), "model.1.weight": torch.zeros(4, 3, 7, 7)}, bad_key)
    for path, words in ((zeros, "zero bytes"), (rand, "not a file torch.save wrote"), (bad_key, "does not fit")):
        with pytest.raises(CheckpointError) as e:
            load_generator(path)
        text = str(e.value)
        assert words in text and "weights_only=False" not in text and "pickled Python" not in text, text
        assert "invalid literal" not in text, text


def test_resume_with_another_model_kind_is_refused(tmp_path):
    from test_train import TINY_MODEL, make_domain

    make_domain(tmp_path / "data" / "trainA", 2, 0, (36, 44))
    make_domain(tmp_path / "data" / "trainB", 2, 1, (36, 44))
    common = ["--dataroot", "data", "--name", "x", "--size", "32", "--num-workers", "0", "--preview-every", "0",
              *TINY_MODEL]
    r = run_cli("train", *common, "--max-iters", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_cli("train", *common, "--max-iters", "2", "--resume", "--model", "cut", cwd=tmp_path)
    one_error_line(r, 2, "--model cut", "is a cyclegan run")
    r = run_cli("train", *common, "--max-iters", "2", "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]


# -- 10. a symlink loop in an input folder ---------------------------------------------------------------


def test_a_symlink_to_itself_is_one_failed_image_not_a_stopped_run(tmp_path):
    write_image(tmp_path / "in" / "a.png", 32, 32)
    write_image(tmp_path / "in" / "c.png", 32, 32, seed=1)
    os.symlink("b.png", tmp_path / "in" / "b.png")  # points at itself
    from tiny_models import tiny_export

    tiny_export(tmp_path / "runs" / "t")
    r = run_cli("translate", "--model", "runs/t", "--input", "in", "--output", "out", "--no-progress", cwd=tmp_path)
    assert r.returncode == 1, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "b.png" in r.stderr, r.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["a.png", "c.png"]


# -- 7. the app's exit status after a signal ---------------------------------------------------------------


@pytest.mark.parametrize("sig, status", [("SIGTERM", 143), ("SIGINT", 130)])
def test_the_app_exits_128_plus_the_signal(tmp_path, sig, status):
    import signal as signals

    from loopback import free_port
    from test_app_server import running_app
    from tiny_models import tiny_export

    tiny_export(tmp_path / "runs" / "tiny")
    env = {**ENV, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(tmp_path / "gradio")}
    with running_app(tmp_path, env, free_port()) as (url, proc):
        proc.send_signal(getattr(signals, sig))
        assert proc.wait(timeout=60) == status


# -- 6. the video writer owns its frame cache --------------------------------------------------------------


def test_frames_of_another_model_or_clip_are_never_reused(tmp_path):
    pytest.importorskip("av")
    from PIL import Image

    from cyclegan.data.images import DataError
    from cyclegan.inference.loading import load_generator
    from cyclegan.inference.translator import Translator
    from cyclegan.inference.video import frames_folder, translate_video
    from test_video import frames_of, write_clip
    from tiny_models import tiny_export

    clip = write_clip(tmp_path / "clip.mp4", frames=4, audio=False)
    out = tmp_path / "out.mp4"
    a = Translator(load_generator(tiny_export(tmp_path / "runs" / "a", seed=0)), device="cpu", full_res=True)
    b = Translator(load_generator(tiny_export(tmp_path / "runs" / "b", seed=1)), device="cpu", full_res=True)
    # a killed run of model a left all its frames (simulated: red frames, the manifest of model a)
    cache = frames_folder(out)
    translate_video(a, clip, out, progress=False)
    expected_a = frames_of(out)
    out.unlink()
    from cyclegan.inference.video import _cache_key, _own_cache
    _own_cache(cache, _cache_key(a, clip))
    for i in range(4):
        Image.new("RGB", (48, 40), (255, 0, 0)).save(cache / f"{i:06d}.png")
    summary = translate_video(b, clip, out, progress=False)  # another model: nothing reused
    assert summary.reused == 0
    assert all(f[..., 0].mean() < 250 or f[..., 1].mean() > 5 for f in frames_of(out))
    out.unlink()
    _own_cache(cache, _cache_key(a, clip))  # the same model and clip: a resume reuses them
    for i in range(4):
        Image.new("RGB", (48, 40), (255, 0, 0)).save(cache / f"{i:06d}.png")
    assert translate_video(a, clip, out, progress=False).reused == 4
    out.unlink()
    # a folder as the output, a file where the frame cache goes
    (tmp_path / "dir.mp4").mkdir()
    with pytest.raises(DataError, match="dir.mp4 is a folder"):
        translate_video(a, clip, tmp_path / "dir.mp4", progress=False)
    frames_folder(tmp_path / "f.mp4").write_text("x")
    with pytest.raises(DataError, match="is not a folder"):
        translate_video(a, clip, tmp_path / "f.mp4", progress=False)
    assert len(expected_a) == 4


def test_a_variable_frame_rate_clip_keeps_its_timing(tmp_path):
    av = pytest.importorskip("av")
    import numpy as np
    from fractions import Fraction

    from cyclegan.inference.loading import load_generator
    from cyclegan.inference.translator import Translator
    from cyclegan.inference.video import translate_video
    from tiny_models import tiny_export

    times = [0, 0.1, 0.2, 0.3, 1.5, 1.6, 2.5, 2.6, 2.7, 3.0]
    clip = tmp_path / "vfr.mp4"
    with av.open(str(clip), "w") as c:
        v = c.add_stream("libx264", rate=10)
        v.width, v.height, v.pix_fmt = 32, 32, "yuv420p"
        v.time_base = v.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(times):
            f = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 20, np.uint8), format="rgb24")
            f.pts, f.time_base = int(t * 1000), Fraction(1, 1000)
            c.mux(v.encode(f))
        c.mux(v.encode(None))
    translator = Translator(load_generator(tiny_export(tmp_path / "runs" / "t")), device="cpu", full_res=True)
    translate_video(translator, clip, tmp_path / "out.mp4", progress=False)
    with av.open(str(tmp_path / "out.mp4")) as c:
        got = [float(f.time) for f in c.decode(video=0)]
    assert len(got) == len(times)
    assert max(abs((g - got[0]) - t) for g, t in zip(got, times)) < 0.02, got


@pytest.mark.parametrize("source_audio, suffix", [("aac", ".webm"), ("pcm_s16le", ".mp4")])
def test_audio_the_output_container_does_not_take_is_reencoded(tmp_path, source_audio, suffix):
    av = pytest.importorskip("av")
    import numpy as np

    from cyclegan.inference.loading import load_generator
    from cyclegan.inference.translator import Translator
    from cyclegan.inference.video import translate_video
    from tiny_models import tiny_export

    clip = tmp_path / ("src.mp4" if source_audio == "aac" else "src.mkv")
    rate = 16000
    with av.open(str(clip), "w") as c:
        v = c.add_stream("libx264", rate=8)
        v.width, v.height, v.pix_fmt = 32, 32, "yuv420p"
        a = c.add_stream(source_audio, rate=rate)
        a.layout = "mono"
        for i in range(4):
            f = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 40, np.uint8), format="rgb24")
            f.pts = i
            c.mux(v.encode(f))
        c.mux(v.encode(None))
        tone = (0.3 * np.sin(np.arange(rate // 2) / 10)).astype(np.float32)[None]
        fmt = "fltp" if source_audio == "aac" else "s16"
        data = tone if fmt == "fltp" else (tone * 32767).astype(np.int16)
        for k in range(0, data.shape[1], 1024):
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, k:k + 1024]), format=fmt, layout="mono")
            af.sample_rate, af.pts = rate, k
            c.mux(a.encode(af))
        c.mux(a.encode(None))
    translator = Translator(load_generator(tiny_export(tmp_path / "runs" / "t")), device="cpu", full_res=True)
    out = tmp_path / f"out{suffix}"
    translate_video(translator, clip, out, progress=False)
    with av.open(str(out)) as c:
        assert c.streams.audio and len(list(c.decode(video=0))) == 4


# -- 9. --preprocess none with domains of different sizes: the preview ---------------------------------------


def test_the_preview_shows_domains_of_different_sizes(tmp_path):
    from test_train import TINY_MODEL, make_domain

    make_domain(tmp_path / "data" / "trainA", 2, 0, (36, 44))
    make_domain(tmp_path / "data" / "trainB", 2, 1, (48, 40))
    r = run_cli("train", "--dataroot", "data", "--name", "x", "--num-workers", "0", "--preprocess", "none",
                "--batch-size", "1", "--preview-every", "1", "--max-iters", "2", *TINY_MODEL, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert list((tmp_path / "runs" / "x").rglob("iter_*.png"))


# -- 8, 12. downloads: progress, a dripping server, two at once, folders in the way ---------------------------


class _SlowServer:
    """A server that sends ``body`` with a Content-Length, ``per`` bytes every ``delay`` seconds."""

    def __init__(self, body: bytes, per: int, delay: float) -> None:
        import time
        from http.server import BaseHTTPRequestHandler

        from loopback import LoopbackHTTP

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    for i in range(0, len(body), per):
                        self.wfile.write(body[i:i + per])
                        self.wfile.flush()
                        time.sleep(delay)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = LoopbackHTTP()
        self.server.start(Handler)
        self.url = self.server.url + "/file.bin"

    def close(self) -> None:
        self.server.close()


def test_progress_is_counted_with_the_bar_off(tmp_path):
    from cyclegan.inference.http_download import download_file

    server = _SlowServer(b"x" * 50_000, 10_000, 0.01)
    seen = []
    try:
        download_file(server.url, tmp_path / "f.bin", progress=False, on_progress=lambda n, t: seen.append((n, t)))
    finally:
        server.close()
    assert seen and seen[-1] == (50_000, 50_000) and all(n > 0 for n, _ in seen)


def test_a_dripping_server_is_given_up_on(tmp_path, monkeypatch):
    import time

    from cyclegan.inference import http_download
    from cyclegan.inference.http_download import DownloadError, download_file

    monkeypatch.setattr(http_download, "_STALL_S", 1.0)
    server = _SlowServer(b"x" * 1000, 1, 0.2)
    t0 = time.monotonic()
    try:
        with pytest.raises(DownloadError, match="stalled"):
            download_file(server.url, tmp_path / "f.bin", progress=False, retries=1)
    finally:
        server.close()
    assert time.monotonic() - t0 < 20
    assert not (tmp_path / "f.bin").exists()


def test_two_downloads_of_one_file_at_once(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from cyclegan.inference.http_download import download_file

    body = bytes(range(256)) * 400
    server = _SlowServer(body, 20_000, 0.05)
    try:
        with ThreadPoolExecutor(2) as pool:
            results = [f.result() for f in [pool.submit(download_file, server.url, tmp_path / "f.bin", progress=False)
                                            for _ in range(2)]]
    finally:
        server.close()
    assert results == [tmp_path / "f.bin"] * 2 and (tmp_path / "f.bin").read_bytes() == body
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_a_folder_where_the_partial_download_goes(tmp_path):
    from cyclegan.inference.http_download import DownloadError, download_file

    (tmp_path / "f.bin.part").mkdir()
    with pytest.raises(DownloadError, match="f.bin.part is a folder"):
        download_file("http://127.0.0.1:9/f.bin", tmp_path / "f.bin", progress=False)


from test_faults import tmpfs  # noqa: E402,F401  (the fixture)


def test_a_full_disk_during_a_download_is_one_line_and_keeps_nothing(tmpfs):
    from cyclegan.inference.http_download import DownloadError, download_file

    disk = tmpfs("256k")
    server = _SlowServer(b"y" * 1_000_000, 100_000, 0)
    try:
        with pytest.raises(DownloadError, match="no space left on device; nothing was kept"):
            download_file(server.url, disk / "big.bin", progress=False)
    finally:
        server.close()
    assert list(disk.iterdir()) == []


def test_a_member_name_too_long_for_the_file_system(tmp_path):
    from test_faults import RawServer, _zip

    server = RawServer()
    try:
        server.files["/datasets/facades.zip"] = _zip({"facades/trainA/" + "a" * 300 + ".png": b"x",
                                                       "facades/trainB/b.png": b"y"})
        r = run_cli("download", "dataset", "facades", "--base-url", server.url, "--no-progress", cwd=tmp_path)
    finally:
        server.close()
    one_error_line(r, 2, "facades.zip", "too long")
    assert not (tmp_path / "datasets" / "facades").exists()
    assert not [p for p in (tmp_path / "datasets").iterdir() if p.name.startswith(".")] \
        if (tmp_path / "datasets").exists() else True


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"AtoB": 5}', "\xff\xfe", '{"AtoB": {"translated": []}}'])
def test_a_garbled_eval_domains_json_is_only_not_shown(tmp_path, text):
    from cyclegan.app.actions import AppBackend
    from cyclegan.app.published import model_info
    from cyclegan.app.settings import AppSettings
    from tiny_models import tiny_export

    tiny_export(tmp_path / "runs" / "tiny")
    (tmp_path / "runs" / "tiny" / "eval").mkdir()
    (tmp_path / "runs" / "tiny" / "eval" / "domains.json").write_bytes(text.encode("utf-8", "surrogateescape")
                                                                         if text != "\xff\xfe" else b"\xff\xfe")
    app = AppBackend(AppSettings(runs_dir=tmp_path / "runs", checkpoints_dir=tmp_path / "none", bundled=False,
                                 device="cpu", output_dir=tmp_path / "out"))
    choice = app.catalog().translate[0]
    assert "no evaluation saved" in model_info(app, choice.id)


def test_a_gzip_bomb_named_like_an_idx_file_is_refused(tmp_path, monkeypatch):
    import gzip

    from cyclegan.data import mnist
    from cyclegan.data.images import DataError

    monkeypatch.setattr(mnist, "MAX_IDX_BYTES", 1 << 20)
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    bomb.write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + b"\0" * (8 << 20)))
    with pytest.raises(DataError, match="gzip bomb"):
        mnist.read_idx(bomb)


def test_a_torch_zip_claiming_more_than_it_holds_is_refused(tmp_path):
    import zipfile

    from cyclegan.core.checkpoint import CheckpointError, load_checkpoint
    from tiny_models import tiny_checkpoint

    ckpt = tiny_checkpoint(tmp_path / "runs" / "x")
    with zipfile.ZipFile(ckpt) as z:
        entries = {i.filename: z.read(i) for i in z.infolist()}
    name = next(n for n in entries if "/data/" in n)
    entries[name] = b"\0" * (64 << 20)  # compresses to almost nothing
    with zipfile.ZipFile(ckpt, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for n, data in entries.items():
            z.writestr(n, data)
    with pytest.raises(CheckpointError, match="claim"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("config", [{"ngf": "64"}, {"netG": ["x"]}, {"lambda_A": [1]}])
def test_resume_from_a_checkpoint_with_a_wrong_typed_config_is_one_line(tmp_path, config):
    from cyclegan.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from cyclegan.training.config import ConfigError
    from cyclegan.training.run import prepare_run
    from cyclegan.training.kinds import resolve
    from tiny_models import tiny_checkpoint

    ckpt = tiny_checkpoint(tmp_path / "runs" / "x")
    state = load_checkpoint(ckpt)
    state["model_config"] = {**state["model_config"], **config}
    save_checkpoint(state, ckpt)
    run = resolve("cyclegan", {"name": "x", "runs_dir": str(tmp_path / "runs"), "dataroot": str(tmp_path)})
    with pytest.raises((CheckpointError, ConfigError, ValueError)) as e:
        prepare_run(run, resume=True)
    assert "latest.pt" in str(e.value) or "ngf" in str(e.value) or "netG" in str(e.value) or "lambda" in str(e.value)


def test_an_mnist_export_given_to_translate_says_what_it_is():
    from cyclegan.core.checkpoint import CheckpointError
    from cyclegan.inference.loading import load_generator
    from cyclegan.inference.sources import ASSETS

    path = ASSETS / "fashion_mnist_dcgan.safetensors"
    with pytest.raises(CheckpointError, match="is an MNIST GAN export .*cyclegan mnist sample"):
        load_generator(path)


def test_a_frame_size_that_changes_mid_stream_is_scaled_to_the_streams(tmp_path):
    av = pytest.importorskip("av")
    import numpy as np

    from cyclegan.inference.loading import load_generator
    from cyclegan.inference.translator import Translator
    from cyclegan.inference.video import translate_video
    from tiny_models import tiny_export

    def segment(path: Path, w: int, h: int, start: int) -> bytes:
        with av.open(str(path), "w", format="mpegts") as c:
            v = c.add_stream("libx264", rate=8)
            v.width, v.height, v.pix_fmt = w, h, "yuv420p"
            for i in range(3):
                f = av.VideoFrame.from_ndarray(np.full((h, w, 3), (start + i) * 30, np.uint8), format="rgb24")
                f.pts = start + i
                c.mux(v.encode(f))
            c.mux(v.encode(None))
        return path.read_bytes()

    clip = tmp_path / "changing.mkv"  # MPEG-TS inside: FFmpeg probes the content
    clip.write_bytes(segment(tmp_path / "a.ts", 48, 40, 0) + segment(tmp_path / "b.ts", 64, 32, 3))
    translator = Translator(load_generator(tiny_export(tmp_path / "runs" / "t")), device="cpu", full_res=True)
    translate_video(translator, clip, tmp_path / "out.mp4", progress=False)
    with av.open(str(tmp_path / "out.mp4")) as c:
        sizes = [(f.width, f.height) for f in c.decode(video=0)]
    assert sizes == [(48, 40)] * 6
