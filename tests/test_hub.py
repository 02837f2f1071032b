"""Models to and from the Hugging Face Hub, without network: huggingface_hub's own client talks
to a Hub on 127.0.0.1 (tests/hub_server.py) for the upload (`cyclegan push`) and the download
(`--model hf:USER/REPO[@REV]`, `Translator.from_pretrained("USER/REPO")`), writes its own cache,
and HF_HUB_OFFLINE=1 then reads that cache with the server gone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cyclegan.app.actions import AppBackend
from cyclegan.app.settings import AppSettings
from cyclegan.cli.main import main
from cyclegan.core.checkpoint import CheckpointError
from cyclegan.inference.hub import HubError
from cyclegan.inference.publish import push_to_hub
from cyclegan.inference.sources import resolve
from cyclegan.inference.translator import Translator
from hub_server import FakeHub
from tiny_models import one_thread, tiny_checkpoint, tiny_export, write_image  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A Hub on 127.0.0.1, huggingface_hub pointed at it (HF_ENDPOINT), its cache and token file in
    tmp_path, no token unless a test sets one."""
    import huggingface_hub.constants as c

    server = FakeHub()
    cache = tmp_path / "hf_cache"
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(c, "HF_TOKEN_PATH", str(tmp_path / "no_token"))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    server.cache = cache
    yield server
    server.close()


@pytest.fixture
def run(tmp_path):
    """A tiny run: its export, checkpoint, an evaluation JSON, and A images in its dataroot."""
    run = tmp_path / "runs" / "tiny"
    tiny_checkpoint(run)
    tiny_export(run)
    (run / "eval.json").write_text(json.dumps({"fid": 123.25, "cycle_l1": 0.5, "model": "x"}))
    for i in range(3):
        write_image(tmp_path / "samples" / f"{i}.png", 32, 32, seed=i)
    return run


def _image(tmp_path) -> Path:
    return write_image(tmp_path / "in" / "a.png", 32, 32, seed=7)


def _out(translator: Translator, path: Path) -> np.ndarray:
    return translator.translate(np.asarray(Image.open(path).convert("RGB")))


def test_dry_run_writes_the_hub_folder_only(hub, run, tmp_path):
    assert main(["push", str(run), "me/tiny", "--dry-run", "--samples", str(tmp_path / "samples")]) == 0
    folder = run / "hub"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "generators.safetensors",
                                                       "samples.png"]
    config = json.loads((folder / "config.json").read_text())
    assert config["library_name"] == "cyclegan" and config["weights"] == "generators.safetensors"
    assert config["directions"] == ["AtoB", "BtoA"] and config["size"] == 32
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: cyclegan\n")
    for expected in ("cyclegan translate --model hf:me/tiny", 'Translator.from_pretrained("me/tiny")',
                     "fid 123.2", "cycle_l1 0.5", "samples.png", "32 px", "how long:"):
        assert expected in card, expected
    strip = Image.open(folder / "samples.png")
    assert strip.size == (3 * 32, 2 * 32)  # three inputs over their translations
    # the folder's weights are the run's: same translations
    image = _image(tmp_path)
    assert np.array_equal(_out(Translator.from_pretrained(folder / "generators.safetensors", device="cpu"), image),
                          _out(Translator.from_pretrained(run / "generators.safetensors", device="cpu"), image))
    assert hub.requests == []  # nothing uploaded, nothing asked


def test_push_needs_a_token_and_uploads_nothing_without(hub, run, capsys):
    assert main(["push", str(run), "me/tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no Hugging Face token" in err and "hf auth login" in err
    assert hub.requests == [] and not (run / "hub").exists()


def test_a_checkpoint_alone_is_pushed_as_its_export(hub, tmp_path):
    from cyclegan.core.checkpoint import load_checkpoint, save_checkpoint

    run = tmp_path / "runs" / "ckpt_only"
    state = load_checkpoint(tiny_checkpoint(run))
    state["counters"] = {"iteration": 1200, "epoch": 3}
    state["run_config"]["schedule"] = {"n_epochs": 5, "n_epochs_decay": 5}
    state["run_config"]["data"]["dataroot"] = "datasets/horse2zebra"
    save_checkpoint(state, run / "checkpoints" / "latest.pt")
    result = push_to_hub(run, "me/ckpt", dry_run=True)
    image = _image(tmp_path)
    assert np.array_equal(_out(Translator.from_pretrained(result.folder / "generators.safetensors", device="cpu"),
                               image), _out(Translator.from_pretrained(run, device="cpu"), image))
    card = (result.folder / "README.md").read_text()
    assert "how long: 1200 iterations, epoch 3 of 10" in card and "`horse2zebra`" in card


def test_push_download_translate_and_offline(hub, run, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    result = push_to_hub(run, "me/tiny", samples=tmp_path / "samples")
    assert result.uploaded and "me/tiny" in result.describe()
    assert all(with_token for _, _, with_token in hub.requests)  # every upload call carried the token
    files = hub.repos["me/tiny"]["branches"]["main"]["files"]
    assert set(files) == {"README.md", "config.json", "generators.safetensors", "samples.png"}
    push_to_hub(run, "me/tiny", revision="v2", samples=tmp_path / "samples")
    assert "v2" in hub.repos["me/tiny"]["branches"]
    push_to_hub(run, "me/secret", private=True, dry_run=False)
    assert hub.repos["me/secret"]["private"]
    monkeypatch.delenv("HF_TOKEN")

    image = _image(tmp_path)
    local = _out(Translator.from_pretrained(run, device="cpu"), image)
    # from_pretrained("USER/REPO"): the Hub, into huggingface_hub's cache layout
    assert np.array_equal(_out(Translator.from_pretrained("me/tiny", device="cpu"), image), local)
    snapshot = next((hub.cache / "models--me--tiny" / "snapshots").iterdir())
    assert (snapshot / "generators.safetensors").is_file() and (snapshot / "config.json").is_file()
    assert (hub.cache / "models--me--tiny" / "refs" / "main").read_text() == \
        hub.repos["me/tiny"]["branches"]["main"]["commit"]
    # --model hf:USER/REPO@REVISION in a command; BtoA too
    out = tmp_path / "out.png"
    assert main(["translate", "--model", "hf:me/tiny@v2", "--direction", "BtoA", "--input", str(image),
                 "--output", str(out), "--device", "cpu", "--no-progress"]) == 0
    back = _out(Translator.from_pretrained(run, "BtoA", device="cpu"), image)
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), back)
    # the app's --model
    app = AppBackend(AppSettings(model=Path("hf:me/tiny"), bundled=False, device="cpu", runs_dir=tmp_path / "r",
                                 checkpoints_dir=tmp_path / "c", output_dir=tmp_path / "app_out"))
    assert str(hub.cache) in str(app.catalog().translate[0].entry.source)
    # a private repo needs the token
    with pytest.raises(HubError, match="no such repo on the Hub \\(or it is private"):
        resolve("hf:me/secret")

    # offline: the server is gone, the cache answers; what it lacks says so in one line
    hub.close()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert np.array_equal(_out(Translator.from_pretrained("hf:me/tiny", device="cpu"), image), local)
    with pytest.raises(HubError) as e:
        resolve("hf:me/never-downloaded")
    assert "HF_HUB_OFFLINE is set and the cache holds no copy" in str(e.value) and "\n" not in str(e.value)


def test_bad_hub_models_get_one_line_each(hub, run, tmp_path, monkeypatch, capsys):
    from huggingface_hub import HfApi

    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    push_to_hub(run, "me/tiny")
    api = HfApi(endpoint=hub.url, token="hf_test_token")
    other, card_only = tmp_path / "other", tmp_path / "card_only"
    other.mkdir()
    (other / "model.safetensors").write_bytes(b"not ours")
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    card_only.mkdir()
    (card_only / "README.md").write_text("---\nlibrary_name: cyclegan\n---\n# a card\n")
    (card_only / "generators.safetensors").write_bytes(b"x")
    for repo, folder in (("me/other", other), ("me/card", card_only)):
        api.create_repo(repo)
        api.upload_folder(repo_id=repo, folder_path=folder)
    monkeypatch.delenv("HF_TOKEN")
    cases = {"hf:me/nosuch": "no such repo on the Hub",
             "hf:me/tiny@nosuch": "the repo has no revision 'nosuch'",
             "hf:me/other": "the repo holds no cyclegan model (its config.json is for 'bert')",
             "hf:me/card": "the repo has a model card but no config.json",
             "hf:me/x/y": "not a Hub model id"}
    for typed, message in cases.items():
        with pytest.raises(CheckpointError) as e:
            resolve(typed)
        assert message in str(e.value) and "\n" not in str(e.value), typed
        assert main(["translate", "--model", typed, "--input", str(_image(tmp_path)), "--output",
                     str(tmp_path / "o.png"), "--device", "cpu"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_a_local_path_wins_over_a_repo_id(hub, run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny_export(tmp_path / "me" / "tiny", seed=3)  # ./me/tiny holds a model: "me/tiny" is that folder
    t = Translator.from_pretrained("me/tiny", device="cpu")
    assert t.generator.source == Path("me/tiny/generators.safetensors") and hub.requests == []
    # a bare USER/REPO that is no local path stays a path to the commands: no request, the usual message
    with pytest.raises(CheckpointError, match="no such file or folder"):
        resolve("you/model")
    assert hub.requests == []


def test_the_cli_subprocess_downloads_then_runs_offline(hub, run, tmp_path, monkeypatch):
    """HF_ENDPOINT and HF_HUB_OFFLINE as a user sets them, in a fresh process (huggingface_hub reads
    them at import there), with the cache under HF_HOME."""
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    push_to_hub(run, "me/tiny")
    image = _image(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_HUB_OFFLINE")}
    env.update(PYTHONPATH=str(ROOT), HF_HOME=str(tmp_path / "hf_home"), HF_ENDPOINT=hub.url, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "cyclegan", "translate", "--model", "hf:me/tiny", "--input", str(image),
           "--device", "cpu", "--no-progress"]
    first = subprocess.run([*cmd, "--output", str(tmp_path / "1.png")], env=env, capture_output=True, text=True,
                           timeout=120)
    assert first.returncode == 0, first.stderr
    assert list((tmp_path / "hf_home" / "hub" / "models--me--tiny" / "snapshots").glob("*/generators.safetensors"))
    hub.close()
    offline = subprocess.run([*cmd, "--output", str(tmp_path / "2.png")], env={**env, "HF_HUB_OFFLINE": "1"},
                             capture_output=True, text=True, timeout=120)
    assert offline.returncode == 0, offline.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "1.png")), np.asarray(Image.open(tmp_path / "2.png")))


def test_a_space_picks_its_model_from_a_variable(monkeypatch):
    """A Space runs `python app.py` without flags: CYCLEGAN_MODEL (a Space variable) is --model."""
    from cyclegan.app.settings import parse_args

    monkeypatch.setenv("CYCLEGAN_MODEL", "hf:me/tiny@v2")
    assert parse_args([]).model == Path("hf:me/tiny@v2")
    assert parse_args(["--model", "demo"]).model == Path("demo")
    monkeypatch.delenv("CYCLEGAN_MODEL")
    assert parse_args([]).model is None
