"""Downloads against a real HTTP server on 127.0.0.1 (http.server in a thread) serving files the
tests make: extraction, resume with Range after a cut connection, hostile zips, published
weights, the offline message. No test touches the network."""

from __future__ import annotations

import io
import socket
import stat
import zipfile
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import torch

from cyclegan.cli.main import main
from cyclegan.inference.download import DownloadError, download_file
from loopback import LoopbackHTTP
from tiny_models import one_thread, original_pth, write_image  # noqa: F401


class FileServer(LoopbackHTTP):
    """Serves ``files`` (URL path -> bytes). ``cut_first`` URL paths get their first response
    cut off halfway (the full Content-Length is announced, then the connection closes);
    ``ranges`` says whether Range requests are honoured. ``requests`` records (path, Range)."""

    def __init__(self, ranges: bool = True) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_first: set[str] = set()
        self.ranges = ranges
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and server.ranges:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in server.cut_first:
                    server.cut_first.discard(self.path)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        self.start(Handler)


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.close()


def make_zip(entries: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def png_bytes(tmp_path: Path, seed: int) -> bytes:
    return write_image(tmp_path / f"src{seed}.png", 24, 24, seed=seed).read_bytes()


def test_dataset_download_and_extract(server, tmp_path, monkeypatch, capsys):
    server.files["/datasets/horse2zebra.zip"] = make_zip({
        "horse2zebra/trainA/1.png": png_bytes(tmp_path, 1), "horse2zebra/trainB/2.png": png_bytes(tmp_path, 2),
        "horse2zebra/testA/3.png": png_bytes(tmp_path, 3), "horse2zebra/testB/4.png": png_bytes(tmp_path, 4)})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CYCLEGAN_BASE_URL", server.url)  # the environment override
    assert main(["download", "dataset", "horse2zebra", "--no-progress"]) == 0
    root = tmp_path / "datasets" / "horse2zebra"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png")) == [
        "testA/3.png", "testB/4.png", "trainA/1.png", "trainB/2.png"]
    assert sorted(p.name for p in (tmp_path / "datasets").iterdir()) == ["horse2zebra"]  # zip and staging gone
    assert main(["download", "dataset", "horse2zebra"]) == 0  # already there: no second request
    assert len(server.requests) == 1 and "already exists" in capsys.readouterr().err


def test_resume_after_the_connection_is_cut(server, tmp_path):
    payload = bytes(range(256)) * 4000  # ~1 MB
    server.files["/big.bin"] = payload
    server.cut_first.add("/big.bin")
    out = download_file(f"{server.url}/big.bin", tmp_path / "big.bin", progress=False)
    assert out.read_bytes() == payload and not (tmp_path / "big.bin.part").exists()
    assert server.requests == [("/big.bin", None), ("/big.bin", f"bytes={len(payload) // 2}-")]


def test_resume_of_a_part_file_from_an_earlier_run(server, tmp_path):
    payload = b"0123456789" * 1000
    server.files["/f.bin"] = payload
    (tmp_path / "f.bin.part").write_bytes(payload[:3000])
    download_file(f"{server.url}/f.bin", tmp_path / "f.bin", progress=False)
    assert (tmp_path / "f.bin").read_bytes() == payload and server.requests == [("/f.bin", "bytes=3000-")]
    # a server without Range support sends everything again: the download restarts cleanly
    plain = FileServer(ranges=False)
    try:
        plain.files["/f.bin"] = payload
        (tmp_path / "g.bin.part").write_bytes(b"stale bytes")
        download_file(f"{plain.url}/f.bin", tmp_path / "g.bin", progress=False)
        assert (tmp_path / "g.bin").read_bytes() == payload
    finally:
        plain.close()


def test_checksum_mismatch_is_refused(server, tmp_path):
    server.files["/f.bin"] = b"hello"
    with pytest.raises(DownloadError, match="SHA-256"):
        download_file(f"{server.url}/f.bin", tmp_path / "f.bin", sha256="00" * 32, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("entries, links", [
    ({"evil/../../escaped.txt": b"x"}, None),
    ({"/tmp/absolute.txt": b"x"}, None),
    ({"maps/trainA/ok.txt": b"x"}, {"maps/trainA/link": "../../../../outside"}),
], ids=["dotdot", "absolute", "symlink"])
def test_hostile_zip_is_refused(server, tmp_path, monkeypatch, capsys, entries, links):
    server.files["/datasets/maps.zip"] = make_zip(entries, links)
    monkeypatch.chdir(tmp_path)
    assert main(["download", "dataset", "maps", "--base-url", server.url, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "refusing to extract" in err and "Traceback" not in err
    assert not (tmp_path / "datasets" / "maps").exists() and not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "datasets").exists()  # checked before it is kept; no empty folder left behind


def test_published_weights_download_then_translate(server, tmp_path, monkeypatch, capsys):
    original_pth(tmp_path / "served.pth", netG="resnet_9blocks", ngf=4)  # with stale running stats
    server.files["/pretrained_models/horse2zebra.pth"] = (tmp_path / "served.pth").read_bytes()
    monkeypatch.chdir(tmp_path)
    assert main(["download", "weights", "horse2zebra", "--base-url", server.url, "--no-progress"]) == 0
    target = tmp_path / "checkpoints" / "horse2zebra_pretrained" / "latest_net_G.pth"
    assert target.read_bytes() == (tmp_path / "served.pth").read_bytes()
    assert sorted(p.name for p in target.parent.iterdir()) == ["latest_net_G.pth"]
    write_image(tmp_path / "in.png", 20, 28)
    assert main(["translate", "--model", "horse2zebra", "--ngf", "4", "--input", "in.png", "--output", "out.png",
                 "--no-progress"]) == 0
    assert (tmp_path / "out.png").is_file()
    # a file that is not the published architecture is not kept
    torch.save({"model.1.weight": torch.zeros(1)}, tmp_path / "junk.pth")
    server.files["/pretrained_models/zebra2horse.pth"] = (tmp_path / "junk.pth").read_bytes()
    assert main(["download", "weights", "zebra2horse", "--base-url", server.url, "--no-progress"]) == 2
    assert "does not hold a resnet_9blocks generator" in capsys.readouterr().err
    assert not (tmp_path / "checkpoints" / "zebra2horse_pretrained" / "latest_net_G.pth").exists()


def test_offline_gives_a_clear_message(tmp_path, monkeypatch, capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.chdir(tmp_path)
    assert main(["download", "dataset", "facades", "--base-url", f"http://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert "cannot download" in err and "offline" in err and "--base-url" in err and "Traceback" not in err


def test_unknown_names_and_cityscapes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["download", "dataset", "horse2cat"]) == 2
    assert "available: apple2orange" in capsys.readouterr().err
    assert main(["download", "dataset", "cityscapes"]) == 2
    assert "cityscapes-dataset.com" in capsys.readouterr().err
    # the manual route: the official folders in, the CycleGAN layout out
    for phase in ("train", "val"):
        write_image(tmp_path / "gtFine" / phase / "aachen" / f"aachen_{phase}_gtFine_color.png", 16, 32)
        write_image(tmp_path / "leftImg8bit" / phase / "aachen" / f"aachen_{phase}_leftImg8bit.png", 16, 32)
    assert main(["download", "dataset", "cityscapes", "--gtfine", "gtFine", "--leftimg8bit", "leftImg8bit"]) == 0
    out = tmp_path / "datasets" / "cityscapes"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg")) == [
        "testA/0_A.jpg", "testB/0_B.jpg", "trainA/0_A.jpg", "trainB/0_B.jpg"]
    assert main(["download", "list"]) == 0
    listed = capsys.readouterr().out
    assert "style_monet" in listed and "summer2winter_yosemite" in listed
