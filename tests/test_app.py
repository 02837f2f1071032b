"""The web app's logic, called directly (no server): which models it offers, every kind of
upload, bad inputs and bad model files as readable messages, caching, generation, and that the
app never imports training code. The running server and a real browser: test_app_server.py."""

from __future__ import annotations

import ast
import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cyclegan import app as app_logic
from cyclegan.app.settings import app_script
from cyclegan.cli.app import _argv_of
from cyclegan.inference.mnist_sampler import BUNDLED_GENERATOR
from cyclegan.app.actions import AppBackend
from cyclegan.app.settings import AppSettings, UserError
from cyclegan.app.uploads import read_upload
from cyclegan.core.checkpoint import export_generators
from cyclegan.models.mnist import MnistGAN, MnistGANConfig
from cyclegan.inference.mnist_sampler import EXPORT_KIND
from tiny_models import ROOT, SIZE, one_thread, original_pth, tiny_checkpoint, tiny_export, write_image  # noqa: F401


def latent_export(path: Path) -> Path:
    """A tiny noise -> image generator export, as `cyclegan mnist train` writes it."""
    model = MnistGAN(MnistGANConfig(ngf=4, ndf=4, z_dim=8), seed=0)
    return export_generators({"G": model.generators["G"]}, model.config_dict(), path,
                             {"kind": EXPORT_KIND, "name": path.parent.name})


@pytest.fixture
def folders(tmp_path):
    """runs/ and checkpoints/ with one model of every kind the app lists, plus broken ones."""
    runs, ckpts = tmp_path / "runs", tmp_path / "checkpoints"
    tiny_export(runs / "tiny")
    tiny_checkpoint(runs / "training")                                  # a run with a checkpoint only
    latent_export(runs / "digits" / "generators.safetensors")
    original_pth(ckpts / "mini_pretrained" / "latest_net_G.pth", netG="resnet_6blocks")  # arch read off the weights
    original_pth(ckpts / "horse2zebra_pretrained" / "latest_net_G.pth")  # ngf 4: not the published shape
    (ckpts / "garbage.pth").write_bytes(b"not a torch file")
    (ckpts / "broken.safetensors").write_bytes(b"\x00" * 3)
    (runs / "tiny" / "tb").mkdir()                                       # never searched
    return runs, ckpts


def backend(folders, **kw) -> AppBackend:
    runs, ckpts = folders
    return AppBackend(AppSettings(runs_dir=runs, checkpoints_dir=ckpts, bundled=False, device="cpu",
                                  output_dir=runs.parent / "out", **kw))


def image_file(tmp_path: Path, name: str, mode: str = "RGB", size=(40, 24), fmt: str | None = None, **save) -> Path:
    rng = np.random.default_rng(0)
    channels = {"L": 1, "RGB": 3, "RGBA": 4, "CMYK": 4}.get(mode, 3)
    arr = rng.integers(0, 255, (size[1], size[0], channels), dtype=np.uint8)
    img = Image.fromarray(arr[:, :, 0] if channels == 1 else arr,
                          mode if mode in ("L", "RGB", "RGBA", "CMYK") else None)
    if mode == "P":
        img = img.convert("P")
    if mode == "I;16":
        img = Image.fromarray(arr[:, :, 0].astype(np.uint16) * 257)  # mode I;16
    path = tmp_path / name
    img.save(path, format=fmt, **save)
    return path


# -- the catalog -------------------------------------------------------------------------------


def test_catalog_lists_runs_exports_and_published_weights_and_how_to_get_the_missing(folders):
    cat = backend(folders).catalog()
    labels = dict((c.id, c.label) for c in cat.translate)
    assert labels["runs/tiny|AtoB"] == "runs/tiny: A \u2192 B" and "runs/tiny|BtoA" in labels
    assert "runs/training|AtoB" in labels and "runs/training|BtoA" in labels
    assert labels["checkpoints/horse2zebra_pretrained/latest_net_G.pth"] == "horse2zebra (published)"
    assert "checkpoints/mini_pretrained/latest_net_G.pth" in labels
    assert "checkpoints/garbage.pth" in labels           # listed: choosing it says why it fails
    assert [e.key for e in cat.generate] == ["runs/digits"]
    # the offered published models that are not there come with the one command that gets them
    assert dict(cat.missing) == {n: f"cyclegan download weights {n} --root {folders[1]}"
                                 for n in ("zebra2horse", "style_monet", "monet2photo")}
    md = cat.missing_markdown()  # with models there, the page's download buttons replace the commands
    assert "cyclegan download weights" not in md and "broken.safetensors" in md


def test_the_default_checkpoints_folder_needs_no_root_flag(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cat = AppBackend(AppSettings(bundled=False, output_dir=tmp_path / "out")).catalog()
    assert cat.translate == [] and ("horse2zebra", "cyclegan download weights horse2zebra") in cat.missing
    assert "No translation model found" in cat.missing_markdown()
    with pytest.raises(UserError, match="Pick a model"):
        AppBackend(AppSettings(bundled=False, output_dir=tmp_path / "out")).translate("x.png", None)


def test_symlinks_out_of_the_model_folders_are_not_followed(tmp_path, folders):
    runs, _ = folders
    outside = tiny_export(tmp_path / "elsewhere" / "secret")
    (runs / "link.safetensors").symlink_to(outside)
    (runs / "linkdir").symlink_to(outside.parent, target_is_directory=True)
    keys = {c.entry.key for c in backend(folders).catalog().translate}
    assert not any("link" in k for k in keys)


def test_rescan_finds_new_models(folders):
    app = backend(folders)
    assert not any(c.id.startswith("runs/new") for c in app.catalog().translate)
    tiny_export(folders[0] / "new")
    assert not any(c.id.startswith("runs/new") for c in app.catalog().translate)  # cached until asked
    assert any(c.id == "runs/new|AtoB" for c in app.catalog(refresh=True).translate)


def test_model_flag_is_the_default_and_fails_clearly(tmp_path, folders):
    export = tiny_export(tmp_path / "mine")
    app = backend(folders, model=export)
    first = app.catalog().translate[0]
    assert first.id == "model|AtoB" and "(--model)" in first.label
    assert app.model_roots()[-1] == export.resolve()
    assert backend(folders, model=Path("tiny")).catalog().translate[0].entry.source == folders[0] / "tiny"
    with pytest.raises(UserError, match="no such file or folder.*`cyclegan download weights zebra2horse` fetches"):
        backend(folders, model=Path("zebra2horse"))
    app = backend(folders, model=folders[1] / "horse2zebra_pretrained" / "latest_net_G.pth")
    with pytest.raises(UserError, match="Cannot load the model 'horse2zebra \\(--model\\)'"):
        app.preload()


# -- translating -------------------------------------------------------------------------------


def test_translate_gives_output_download_and_cycle(folders, tmp_path):
    app = backend(folders)
    src = write_image(tmp_path / "photo.jpg", 48, 64)
    r = app.translate(src, "runs/tiny|AtoB", cycle=True)
    assert r.output.size == (SIZE, SIZE) and r.display.size == (512, 512)      # shown enlarged, crisp
    assert r.reconstruction is not None and r.reconstruction.size == (512, 512)
    with Image.open(r.download) as saved:
        assert saved.size == (SIZE, SIZE) and saved.format == "PNG"
    assert r.download.name == "photo_tiny_AtoB.png" and "training size (32x32; input 64x48" in r.info
    full = app.translate(src, "runs/tiny|BtoA", full_res=True)
    assert full.output.size == (64, 48) and "full resolution (64x48)" in full.info
    assert app._cache.loads == 2  # AtoB (also used by the cycle) and BtoA, each loaded once
    app.translate(src, "runs/tiny|AtoB")
    assert app._cache.loads == 2


def test_a_changed_model_file_is_loaded_again(folders, tmp_path):
    app = backend(folders)
    src = write_image(tmp_path / "a.png", 32, 32)
    app.translate(src, "runs/tiny|AtoB")
    export = folders[0] / "tiny" / "generators.safetensors"
    st = export.stat()
    os.utime(export, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    app.translate(src, "runs/tiny|AtoB")
    assert app._cache.loads == 2


@pytest.mark.parametrize("name,mode,fmt,save", [
    ("gray.png", "L", None, {}),
    ("alpha.png", "RGBA", None, {}),
    ("print.jpg", "CMYK", "JPEG", {}),
    ("palette.gif", "P", None, {}),
    ("deep.png", "I;16", None, {}),
    ("scan.tif", "RGB", "TIFF", {}),
    ("web.webp", "RGB", "WEBP", {}),
])
def test_every_image_mode_translates(folders, tmp_path, name, mode, fmt, save):
    r = backend(folders).translate(image_file(tmp_path, name, mode, fmt=fmt, **save), "runs/tiny|AtoB",
                                   full_res=True)
    assert r.output.size == (40, 24) and r.output.mode == "RGB"


def test_exif_rotation_is_applied(folders, tmp_path):
    img = Image.fromarray(np.zeros((24, 40, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.jpg"
    img.save(path, exif=exif.tobytes())
    r = backend(folders).translate(path, "runs/tiny|AtoB", full_res=True)
    assert r.output.size == (24, 40)


def test_grayscale_model_takes_color_and_gray(tmp_path):
    from dataclasses import asdict

    from cyclegan.models.cyclegan import CycleGANConfig, build_generators

    cfg = CycleGANConfig(netG="resnet_6blocks", ngf=4, ndf=4, input_nc=1, output_nc=1)
    runs = tmp_path / "runs"
    export_generators(dict(build_generators(cfg).items()), asdict(cfg), runs / "gray" / "generators.safetensors",
                      {"size": 32, "name": "gray"})
    app = AppBackend(AppSettings(runs_dir=runs, checkpoints_dir=tmp_path / "c", bundled=False,
                                 output_dir=tmp_path / "out"))
    for src in (image_file(tmp_path, "c.png", "RGB"), image_file(tmp_path, "g.png", "L")):
        r = app.translate(src, "runs/gray|AtoB", cycle=True)
        assert r.output.mode == "L" and r.output.size == (32, 32) and r.reconstruction is not None


def test_bad_uploads_give_readable_messages(folders, tmp_path):
    app = backend(folders)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    good = write_image(tmp_path / "good.png", 64, 64)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good.read_bytes()[:200])
    svg = tmp_path / "drawing.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    cases = {None: "No image yet", "": "No image yet", text: "notes.txt is not an image",
             svg: "drawing.svg is not an image", empty: "empty.png is empty",
             truncated: "cut.png could not be decoded", tmp_path / "gone.png": "gone"}
    for upload, message in cases.items():
        with pytest.raises(UserError, match=message):
            app.translate(upload, "runs/tiny|AtoB")


def test_huge_images_are_refused_or_downscaled(folders, tmp_path):
    app = backend(folders, max_input_pixels=100 * 100, max_pixels=40 * 40)
    big = image_file(tmp_path, "big.png", size=(120, 100))
    with pytest.raises(UserError, match=r"big.png is 120x100 \(0.0 MP\); this app accepts images up to"):
        app.translate(big, "runs/tiny|AtoB")
    ok = image_file(tmp_path, "ok.png", size=(80, 60))
    r = app.translate(ok, "runs/tiny|AtoB", full_res=True)
    assert r.output.size == (46, 34) and "downscaled to 46x34" in r.notes[0]
    assert app.translate(ok, "runs/tiny|AtoB").notes == []  # training size: resized anyway, no note
    # the decoder's own bomb guard: the header alone is refused, nothing is decoded
    array, _ = read_upload(ok, 3, max_input_pixels=10**9)
    assert array.shape == (60, 80, 3)


def test_models_that_fail_to_load_give_readable_messages(folders, tmp_path):
    app = backend(folders)
    src = write_image(tmp_path / "a.png", 32, 32)
    with pytest.raises(UserError, match="Cannot load the model 'horse2zebra \\(published\\)'.*does not fit"):
        app.translate(src, "checkpoints/horse2zebra_pretrained/latest_net_G.pth")
    with pytest.raises(UserError, match="Cannot load the model 'checkpoints/garbage.pth'.*is a text file, not PyTorch weights"):
        app.translate(src, "checkpoints/garbage.pth")
    (folders[0] / "tiny" / "generators.safetensors").write_bytes(b"{}")  # damaged after the scan
    with pytest.raises(UserError, match="Cannot load the model 'runs/tiny'"):
        app.translate(src, "runs/tiny|AtoB")
    # an arch read off the weights works, one way only; its cycle says why there is none
    r = app.translate(src, "checkpoints/mini_pretrained/latest_net_G.pth", cycle=True)
    assert r.reconstruction is None and "no published reverse model" in r.notes[0]


def test_published_cycle_names_the_reverse_download(folders, tmp_path, monkeypatch):
    app = backend(folders)
    choice = app.catalog().find("checkpoints/horse2zebra_pretrained/latest_net_G.pth")
    assert "cyclegan download weights zebra2horse --root" in app._reverse(choice)


def test_client_values_cannot_name_files(folders, tmp_path):
    app = backend(folders)
    src = write_image(tmp_path / "a.png", 32, 32)
    for bad in ("../../etc/passwd", str(folders[0] / "tiny"), "runs/tiny", "runs/tiny|sideways", 3, ["x"]):
        with pytest.raises(UserError, match="Pick a model"):
            app.translate(src, bad)
    with pytest.raises(UserError, match="Pick a generator"):
        app.generate("/etc/passwd", 0, 1)


# -- generating --------------------------------------------------------------------------------


def test_generate_and_interpolate(folders):
    app = backend(folders)
    r = app.generate("runs/digits", 3, 10)
    assert r.image.size[0] >= 4 * 30 and "10 samples of 28x28 from seed 3" in r.info
    with Image.open(r.download) as grid:
        assert grid.size == (4 * 30 + 2, 3 * 30 + 2)  # 4 to a row, 2 px padding, true size
        first = np.asarray(grid)
    with Image.open(app.generate("runs/digits", 3, 10).download) as again:
        assert np.array_equal(np.asarray(again), first)  # a seed gives the same images
    s = app.interpolate("runs/digits", 1, 2, 5)
    with Image.open(s.download) as strip:
        assert strip.size == (5 * 30 + 2, 32)
    for args, message in [((-1, 4), "Seed must be"), ((1.5, 4), "Seed must be"), (("x", 4), "Seed must be"),
                          ((0, 0), "Count must be"), ((0, 65), "Count must be")]:
        with pytest.raises(UserError, match=message):
            app.generate("runs/digits", *args)
    with pytest.raises(UserError, match="Steps must be"):
        app.interpolate("runs/digits", 0, 1, 99)


def test_generate_without_any_generator_says_what_to_do(tmp_path):
    app = AppBackend(AppSettings(runs_dir=tmp_path, checkpoints_dir=tmp_path, bundled=False,
                                 output_dir=tmp_path / "out"))
    assert "cyclegan mnist train" in app.catalog().generate_markdown()
    with pytest.raises(UserError, match="No noise -> image generator"):
        app.generate(None, 0, 4)


def test_bundled_models_are_the_defaults(tmp_path):
    """A fresh checkout is useful at once: the demo CycleGAN and DCGAN ship in cyclegan/assets."""
    assert app_logic.BUNDLED_CYCLEGAN.is_file() and BUNDLED_GENERATOR.is_file()
    app = AppBackend(AppSettings(runs_dir=tmp_path, checkpoints_dir=tmp_path, output_dir=tmp_path / "out"))
    cat = app.catalog()
    assert cat.default_translate == "bundled|AtoB" and cat.default_generate == "bundled-latent"
    assert cat.translate[0].label == "Fashion-MNIST demo: T-shirt/top \u2192 Pullover"
    assert cat.translate[1].label == "Fashion-MNIST demo: Pullover \u2192 T-shirt/top"
    app.preload()
    examples = {p.name: p for p in app_logic.example_images()}
    assert {"tshirt_1.png", "pullover_1.png"} <= set(examples)
    for name, choice in (("tshirt_1.png", "bundled|AtoB"), ("pullover_1.png", "bundled|BtoA")):
        r = app.translate(examples[name], choice, cycle=True)
        assert r.output.size == (32, 32) and r.output.mode == "L" and r.reconstruction is not None
    with Image.open(app.generate("bundled-latent", 0, 4).download) as grid:
        assert grid.size == (2 * 30 + 2, 2 * 30 + 2)


# -- flags and hygiene -------------------------------------------------------------------------


def test_flags_and_the_cyclegan_app_command(monkeypatch):
    from cyclegan.cli.main import build_parser

    monkeypatch.setenv("GRADIO_SERVER_PORT", "8123")
    s = app_logic.parse_args(["--model", "runs/x", "--max-pixels", "100", "--no-bundled"])
    assert s.port == 8123 and s.host == "127.0.0.1" and s.model == Path("runs/x") and s.max_pixels == 100
    assert not s.bundled and app_logic.parse_args(["--port", "9000"]).port == 9000
    with pytest.raises(SystemExit):
        app_logic.parse_args(["--port", "70000"])
    parser = build_parser()
    args = parser.parse_args(["app", "--port", "9001", "--share", "--model", "m.pt", "--threads", "1"])
    sub = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction)).choices["app"]
    assert _argv_of(args, sub) == ["--port", "9001", "--share", "--model", "m.pt", "--threads", "1"]
    assert app_script() == ROOT / "app.py"


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth in it; relative imports as cyclegan.NAME."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = "cyclegan" + (f".{node.module}" if node.module else "")
                found |= {base} if node.module else {f"cyclegan.{a.name}" for a in node.names}
            elif node.module:
                found.add(node.module)
                if node.module == "cyclegan":
                    found |= {f"cyclegan.{a.name}" for a in node.names}
    return found


def test_the_app_never_imports_training_code():
    """Follow app.py's imports through the package: no training loop, no data pipelines."""
    todo, seen = [ROOT / "app.py"], set()
    modules: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            modules.add(name)
            if name.startswith("cyclegan."):
                base = ROOT.joinpath(*name.split("."))
                for file in (base.with_suffix(".py"), base / "__init__.py"):
                    if file.is_file():
                        todo.append(file)
    assert "cyclegan.app.actions" in modules and "cyclegan.inference.translator" in modules
    training = {m for m in modules if m.split(".")[:2] in (["cyclegan", "training"], ["cyclegan", "cli"])
                or m in ("cyclegan.data.transforms", "cyclegan.data.unpaired", "cyclegan.data.mnist", "albumentations")}
    assert not training, f"the app imports training code: {sorted(training)}"


def test_no_stack_trace_reaches_the_page():
    """app.py turns every exception into a short gr.Error; a UserError keeps its message."""
    sys.path.insert(0, str(ROOT))
    try:
        import app
    finally:
        sys.path.remove(str(ROOT))
    import gradio as gr

    def bad():
        raise UserError("a readable message")

    def crash():
        raise KeyError("internal detail")

    with pytest.raises(gr.Error, match="a readable message"):
        app._call(bad)
    with pytest.raises(gr.Error) as info:
        app._call(crash)
    assert "KeyError" in str(info.value) and "internal detail" not in str(info.value)
    assert app._upload_path({"path": "/tmp/gradio/x.png", "orig_name": "x.png"}) == "/tmp/gradio/x.png"
    assert app._upload_path(None) is None


def test_read_upload_of_bytes_in_memory_formats(tmp_path):
    """16-bit and RGBA uploads keep their content: RGBA goes onto white, 16 bit scales to 8."""
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent: white after compositing
    path = tmp_path / "t.png"
    Image.fromarray(rgba, "RGBA").save(path)
    array, notes = read_upload(path, 3, max_input_pixels=100)
    assert (array == 255).all() and notes == []
    buf = io.BytesIO()
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(buf, format="PNG")
    (tmp_path / "w.png").write_bytes(buf.getvalue())
    assert (read_upload(tmp_path / "w.png", 1, max_input_pixels=100)[0] == 255).all()


def test_start_up_failures_are_one_line_messages(tmp_path, capsys):
    """A missing or broken --model and a taken port stop the start with a message, exit status 2."""
    import socket

    sys.path.insert(0, str(ROOT))
    try:
        import app
    finally:
        sys.path.remove(str(ROOT))
    base = ["--no-bundled", "--runs-dir", str(tmp_path), "--checkpoints-dir", str(tmp_path)]
    assert app.main([*base, "--model", str(tmp_path / "missing.pt")]) == 2
    assert "app.py: error: --model" in capsys.readouterr().err
    (tmp_path / "bad.safetensors").write_bytes(b"junk")
    assert app.main([*base, "--model", str(tmp_path / "bad.safetensors")]) == 2
    assert "cannot read it as safetensors" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert app.main([*base, "--port", str(taken.getsockname()[1])]) == 2
    err = capsys.readouterr().err
    assert "app.py: error:" in err and "--port" in err and "Traceback" not in err
