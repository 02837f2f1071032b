"""The original release's published pix2pix generators and data sets (issue 31, part 3): golden outputs
of its own UnetGenerator (tests/data/golden_pix2pix.pt) in both test modes, strict loading, and
downloads from a server on 127.0.0.1 under names that cannot be confused with CycleGAN's."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import torch

from cyclegan.cli.main import main
from cyclegan.core.checkpoint import CheckpointError
from cyclegan.inference.loading import load_generator, module_copy, set_test_mode
from cyclegan.inference.translator import Translator
from cyclegan.models import networks
from test_download import FileServer, png_bytes
from tiny_models import one_thread, write_image  # noqa: F401

GOLDEN = torch.load(Path(__file__).parent / "data" / "golden_pix2pix.pt", weights_only=True)


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.close()


def _no_dropout(net):
    for m in net.modules():
        if isinstance(m, torch.nn.Dropout):
            m.eval()
    return net


@pytest.mark.parametrize("key, netG", [("G_unet_256_batch", "unet_256"), ("G_unet_128_batch", "unet_128")])
def test_golden_outputs_in_both_test_modes(key, netG):
    g = GOLDEN[key]
    net = networks.build_generator(netG, 3, 3, ngf=4, norm="batch", use_dropout=True)
    net.load_state_dict(g["state_dict"], strict=True)
    with torch.no_grad():
        assert (set_test_mode(module_copy(net), "eval")(g["input"]) - g["output_eval"]).abs().max() < 1e-5
        ref = _no_dropout(set_test_mode(module_copy(net), "reference"))
        assert (ref(g["input"]) - g["output_batchstats_nodropout"]).abs().max() < 1e-5
    # the reference mode leaves the shared running statistics alone
    for k, v in net.state_dict().items():
        assert torch.equal(v, g["state_dict"][k]), k


def _published_file(folder: Path, name: str = "pix2pix_facades_label2photo", drop_counts: bool = True) -> Path:
    """The golden U-Net 256 saved as the release publishes it (older PyTorch: no num_batches_tracked)."""
    state = {k: v for k, v in GOLDEN["G_unet_256_batch"]["state_dict"].items()
             if not (drop_counts and k.endswith("num_batches_tracked"))}
    path = folder / f"{name}_pretrained" / "latest_net_G.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def test_a_published_name_loads_strictly_and_runs_as_the_reference_by_default(tmp_path):
    _published_file(tmp_path / "checkpoints")
    g = GOLDEN["G_unet_256_batch"]
    gen = load_generator("pix2pix_facades_label2photo", arch={"ngf": 4}, checkpoints_dir=tmp_path / "checkpoints")
    assert gen.test_mode == "reference" and gen.size == 256
    assert (gen.spec.netG, gen.spec.norm, gen.spec.dropout) == ("unet_256", "batch", True)
    evaluated = Translator(gen, device="cpu", precision="fp32", test_mode="eval").forward(g["input"])
    assert (evaluated - g["output_eval"]).abs().max() < 1e-5

    reference = Translator(gen, device="cpu", precision="fp32")  # the reference's mode: its default here
    assert reference.test_mode == "reference"
    one = g["input"][:1]
    a, b = reference.forward(one), reference.forward(one)
    assert not torch.equal(a, b)  # dropout is active, as in the release's test.py
    _no_dropout(reference.net)
    by_hand = _no_dropout(set_test_mode(module_copy(gen.net), "reference"))
    with torch.no_grad():
        assert (reference.forward(g["input"])[1:] - by_hand(g["input"][1:])).abs().max() < 1e-5  # one image at a time
    assert torch.equal(gen.net.state_dict()["model.model.1.model.2.running_mean"],
                       g["state_dict"]["model.model.1.model.2.running_mean"])

    # strict: an extra entry is refused, naming it
    state = torch.load(_published_file(tmp_path / "bad", drop_counts=False), weights_only=True)
    torch.save({**state, "model.extra.weight": torch.zeros(1)}, tmp_path / "bad" / "x.pth")
    with pytest.raises(CheckpointError, match="unexpected model.extra.weight"):
        load_generator(tmp_path / "bad" / "x.pth", arch={"netG": "unet_256", "norm": "batch", "dropout": True, "ngf": 4})


def test_published_pix2pix_weights_download_then_translate(server, tmp_path, monkeypatch, capsys):
    served = _published_file(tmp_path / "served")
    server.files["/models-pytorch/facades_label2photo.pth"] = served.read_bytes()
    monkeypatch.chdir(tmp_path)
    assert main(["download", "weights", "pix2pix_facades_label2photo", "--base-url", server.url, "--no-progress"]) == 0
    target = tmp_path / "checkpoints" / "pix2pix_facades_label2photo_pretrained" / "latest_net_G.pth"
    assert target.read_bytes() == served.read_bytes()
    write_image(tmp_path / "in.png", 40, 48)
    assert main(["translate", "--model", "pix2pix_facades_label2photo", "--ngf", "4", "--input", "in.png",
                 "--output", "out.png", "--no-progress"]) == 0
    assert (tmp_path / "out.png").is_file()
    # the CycleGAN model of the same name comes from CycleGAN's folder on the server, not this one
    assert main(["download", "weights", "facades_label2photo", "--base-url", server.url, "--no-progress"]) == 2
    assert server.requests[-1][0] == "/pretrained_models/facades_label2photo.pth"
    # a name the pix2pix release uses but that is pix2pix_* here says so
    assert main(["download", "weights", "edges2shoes", "--base-url", server.url]) == 2
    assert "the pix2pix release's is pix2pix_edges2shoes" in capsys.readouterr().err
    # a file that is not the published U-Net is not kept
    torch.save({"model.1.weight": torch.zeros(1)}, tmp_path / "junk.pth")
    server.files["/models-pytorch/day2night.pth"] = (tmp_path / "junk.pth").read_bytes()
    assert main(["download", "weights", "pix2pix_day2night", "--base-url", server.url, "--no-progress"]) == 2
    assert "does not hold a unet_256 generator" in capsys.readouterr().err
    assert not (tmp_path / "checkpoints" / "pix2pix_day2night_pretrained" / "latest_net_G.pth").exists()


def make_tar(entries: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return buf.getvalue()


def test_pix2pix_dataset_download_extracts_aligned_folders(server, tmp_path, monkeypatch, capsys):
    server.files["/datasets/facades.tar.gz"] = make_tar({
        "facades/train/1.png": png_bytes(tmp_path, 1), "facades/val/2.png": png_bytes(tmp_path, 2),
        "facades/test/3.png": png_bytes(tmp_path, 3)})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CYCLEGAN_BASE_URL", server.url)
    assert main(["download", "dataset", "pix2pix_facades", "--no-progress"]) == 0
    root = tmp_path / "datasets" / "pix2pix_facades"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png")) == [
        "test/3.png", "train/1.png", "val/2.png"]
    assert sorted(p.name for p in (tmp_path / "datasets").iterdir()) == ["pix2pix_facades"]
    assert server.requests == [("/datasets/facades.tar.gz", None)]
    assert main(["download", "dataset", "facades", "--no-progress"]) == 2  # CycleGAN's facades: its own zip
    assert server.requests[-1][0] == "/datasets/facades.zip"


@pytest.mark.parametrize("entries, links, message", [
    ({"maps/../../escaped.txt": b"x"}, None, "unsafe path"),
    ({"maps/train/ok.txt": b"x"}, {"maps/train/link": "../../../../outside"}, "symbolic or hard link"),
    ({"elsewhere/train/ok.txt": b"x"}, None, "does not hold the folder maps/"),
], ids=["dotdot", "symlink", "outside"])
def test_hostile_or_foreign_tar_is_refused(server, tmp_path, monkeypatch, capsys, entries, links, message):
    server.files["/datasets/maps.tar.gz"] = make_tar(entries, links)
    monkeypatch.chdir(tmp_path)
    assert main(["download", "dataset", "pix2pix_maps", "--base-url", server.url, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "datasets").exists() and not (tmp_path / "escaped.txt").exists()


def test_truncated_tar_is_refused(server, tmp_path, monkeypatch, capsys):
    data = make_tar({"maps/train/1.png": png_bytes(tmp_path, 1) * 50})
    server.files["/datasets/maps.tar.gz"] = data[: len(data) // 2]
    monkeypatch.chdir(tmp_path)
    assert main(["download", "dataset", "pix2pix_maps", "--base-url", server.url, "--no-progress"]) == 2
    assert "not an intact tar.gz" in capsys.readouterr().err


def test_a_published_pix2pix_model_translates_a_video(tmp_path, monkeypatch):
    from test_video import frames_of, write_clip

    _published_file(tmp_path / "checkpoints")
    write_clip(tmp_path / "clip.mp4", frames=4, audio=False)
    monkeypatch.chdir(tmp_path)
    assert main(["translate", "clip.mp4", "--model", "pix2pix_facades_label2photo", "--ngf", "4", "--output",
                 "out.mp4", "--no-progress"]) == 0
    out = frames_of(tmp_path / "out.mp4")
    assert len(out) == 4 and out[0].shape == (40, 48, 3)
