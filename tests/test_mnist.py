"""The unconditional MNIST-format GAN: IDX reading (against torchvision), data sources and their
errors, networks, every loss on real image tensors, resume, the commands, the classifier-based
evaluation and the bundled model. Tiny IDX files are written by the tests; nothing is downloaded."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cyclegan.models import init, losses
from cyclegan.core.checkpoint import CheckpointError, export_generators, load_checkpoint
from cyclegan.evaluation.classifier import ClassifierConfig, extract, load_classifier, quality_report, save_classifier, train_classifier
from cyclegan.cli.main import main
from cyclegan.data.images import DataError
from cyclegan.data.unpaired import EpochSampler
from cyclegan.models.mnist import MnistGAN, MnistGANConfig, sample_noise
from cyclegan.data.mnist import DataSource, MnistDataset, load_idx_dir, read_idx, write_idx
from cyclegan.inference.mnist_sampler import BUNDLED_CLASSIFIER, BUNDLED_GENERATOR, EXPORT_KIND, LatentSampler, slerp
from cyclegan.training.config import OptimConfig, RunConfig, with_optimizers
from cyclegan.training.kinds import resolve
from cyclegan.training.run import run as run_training
from cyclegan.models.networks import build_latent_discriminator, build_latent_generator

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(ngf=4, ndf=4, z_dim=8)
TINY_FLAGS = ["--ngf", "4", "--ndf", "4", "--z-dim", "8"]


@pytest.fixture(autouse=True)
def one_thread():
    """The networks here are tiny: one thread is faster than several, and a second thread that
    spin-waits for a busy core (a loaded CI machine) makes a step ~100x slower."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def fake_digits(n: int, classes: int = 3, seed: int = 0, size: int = 28, channels: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images whose class is a bright block at a class-specific height, plus noise."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % classes).astype(np.uint8)
    images = rng.integers(0, 40, (n, size, size), dtype=np.uint8)
    band = size // classes
    for i, k in enumerate(labels):
        images[i, k * band:(k + 1) * band, size // 4: 3 * size // 4] = rng.integers(200, 256)
    if channels:
        images = np.repeat(images[..., None], channels, axis=-1)
    return images, labels


def write_mnist_files(folder: Path, n_train: int = 40, n_test: int = 20, gz: bool = True, seed: int = 0) -> Path:
    suffix = ".gz" if gz else ""
    for split, n, s in (("train", n_train, seed), ("t10k", n_test, seed + 1)):
        images, labels = fake_digits(n, seed=s)
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", labels)
    return folder


# -- IDX files ------------------------------------------------------------------------------------


def test_idx_reader_agrees_with_torchvision(tmp_path):
    import torchvision

    # torchvision.datasets.MNIST reads ROOT/MNIST/raw/<name> (uncompressed) when download=False.
    raw = write_mnist_files(tmp_path / "MNIST" / "raw", n_train=30, n_test=12, gz=False)
    for train, stem in ((True, "train"), (False, "t10k")):
        tv = torchvision.datasets.MNIST(str(tmp_path), train=train, download=False)
        ours = read_idx(raw / f"{stem}-images-idx3-ubyte")
        assert ours.dtype == np.uint8 and ours.shape == tuple(tv.data.shape)
        assert torch.equal(torch.from_numpy(ours), tv.data)
        assert torch.equal(torch.from_numpy(read_idx(raw / f"{stem}-labels-idx1-ubyte").astype(np.int64)), tv.targets)
    # The same bytes gzip-compressed (detected from content, whatever the name) read the same.
    blob = (raw / "train-images-idx3-ubyte").read_bytes()
    (tmp_path / "compressed").write_bytes(gzip.compress(blob))
    assert np.array_equal(read_idx(tmp_path / "compressed"), read_idx(raw / "train-images-idx3-ubyte"))
    # And --dataset mnist finds torchvision's layout without downloading.
    data = DataSource(dataset="mnist", data_root=str(tmp_path), download=False).load()
    tv = torchvision.datasets.MNIST(str(tmp_path), train=True, download=False)
    assert torch.equal(data.train.images[:, 0], tv.data) and torch.equal(data.train.labels, tv.targets)
    assert len(data.test) == 12 and data.classes == ["0", "1", "2"]  # not torchvision's 10 names


def test_idx_header_types_and_damage(tmp_path):
    # A hand-built big-endian int16 file: type 0x0B, 2 dims (2, 3).
    values = np.array([[1, -2, 300], [4, 5, -600]], dtype=">i2")
    path = tmp_path / "x.idx"
    path.write_bytes(bytes([0, 0, 0x0B, 2]) + np.array([2, 3], ">u4").tobytes() + values.tobytes())
    out = read_idx(path)
    assert out.dtype == np.int16 and out.dtype.isnative and np.array_equal(out, values)
    for dtype in (np.uint8, np.int8, np.int32, np.float32, np.float64):
        a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
        assert np.array_equal(read_idx(write_idx(tmp_path / f"a_{np.dtype(dtype).name}.gz", a)), a)

    bad = tmp_path / "bad-idx3-ubyte"
    bad.write_bytes(b"\x89PNG....")
    with pytest.raises(DataError, match="bad-idx3-ubyte is not an IDX file"):
        read_idx(bad)
    cut = tmp_path / "cut"
    cut.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match=r"cut: the header says 2x3 .*truncated"):
        read_idx(cut)
    broken_gz = tmp_path / "broken.gz"
    broken_gz.write_bytes(gzip.compress(path.read_bytes())[:-6])
    with pytest.raises(DataError, match="broken.gz is a damaged gzip file"):
        read_idx(broken_gz)


# -- data sources ---------------------------------------------------------------------------------


def test_idx_dir_and_dataset_keys(tmp_path):
    data = load_idx_dir(write_mnist_files(tmp_path / "d", n_train=10, n_test=4))
    assert data.train.images.shape == (10, 1, 28, 28) and data.train.images.dtype == torch.uint8
    assert data.test is not None and len(data.test) == 4 and data.classes == ["0", "1", "2"]
    ds = MnistDataset(data.train)
    a, b = ds[(3, 7)], ds[7]
    assert torch.equal(a["image"], b["image"]) and int(a["label"]) == 7 % 3
    assert a["image"].min() >= -1 and a["image"].max() <= 1 and a["image"].dtype == torch.float32
    loader = torch.utils.data.DataLoader(ds, batch_size=4, sampler=EpochSampler(len(ds), seed=1))
    assert sum(len(batch["image"]) for batch in loader) == 10


def test_image_folder_source_with_classes_and_splits(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        for cls, colour in (("boots", (250, 10, 10)), ("shirts", (10, 10, 250))):
            folder = tmp_path / "imgs" / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (32, 40), colour).save(folder / f"{i}.png")
    data = DataSource(image_dir=str(tmp_path / "imgs")).load(channels=1, size=28)
    assert data.train.images.shape == (6, 1, 28, 28) and data.test.images.shape == (4, 1, 28, 28)
    assert data.classes == ["boots", "shirts"] and data.train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    rgb = DataSource(image_dir=str(tmp_path / "imgs" / "train")).load(channels=3, size=16)
    assert rgb.train.images.shape == (6, 3, 16, 16) and rgb.test is None
    assert rgb.train.images[0, :, 8, 8].tolist() == [250, 10, 10]


def test_offline_error_names_files_and_how_to_get_them(tmp_path, monkeypatch):
    import torchvision

    def offline(self, *a, **k):  # what torchvision does without network, without touching it
        os.makedirs(self.raw_folder, exist_ok=True)
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    with pytest.raises(DataError) as err:
        DataSource(dataset="mnist", data_root=str(tmp_path)).load()
    text = str(err.value)
    assert "mnist not found and the download failed, probably because this machine is offline" in text
    assert f"{tmp_path}/MNIST/raw/{{train-images-idx3-ubyte, train-images-idx3-ubyte.gz" in text
    assert "--idx-dir" in text and "apt-get install dataset-fashion-mnist" in text
    assert not (tmp_path / "MNIST").exists()  # no empty folders left behind

    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no MNIST-format training images in .*empty: looked for .*train-images-idx3-ubyte"):
        DataSource(idx_dir=str(tmp_path / "empty")).load()
    with pytest.raises(DataError, match="--dataset.*--idx-dir.*--image-dir"):
        DataSource().load()


def test_cli_offline_and_bad_input_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    cases = [
        (["--dataset", "mnist", "--data-root", str(tmp_path), "--no-download"],
         "mnist not found (download disabled by --no-download): looked for"),
        (["--idx-dir", str(tmp_path / "empty")], "no MNIST-format training images in"),
        (["--idx-dir", "x", "--image-dir", "y"], "--idx-dir and --image-dir both given"),
        (["--idx-dir", "x", "--out", "a", "--name", "b"], "do not combine it with --name"),
    ]
    for args, message in cases:
        assert main(["mnist", "train", *args, "--runs-dir", str(tmp_path / "runs")]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err


# -- networks and losses ----------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
@pytest.mark.parametrize("channels, size", [(1, 28), (3, 32)])
def test_latent_networks_shapes(arch, channels, size):
    G = build_latent_generator(arch, 16, channels, size, ngf=4)
    D = build_latent_discriminator(arch, channels, size, ndf=4, norm="none")
    x = G(torch.randn(5, 16))
    assert x.shape == (5, channels, size, size) and x.abs().max() <= 1
    assert D(x).shape == (5,)
    with pytest.raises(ValueError, match="dcgan, mlp"):
        build_latent_generator("stylegan", 16, 1, 28)


def test_noise_distributions():
    g = torch.Generator().manual_seed(0)
    u = sample_noise(2000, 10, "uniform", g)
    assert u.min() >= -1 and u.max() <= 1 and abs(u.mean()) < 0.05
    n = sample_noise(2000, 10, "normal", g)
    assert abs(n.std() - 1) < 0.05 and n.abs().max() > 1
    with pytest.raises(ValueError, match="normal, uniform"):
        sample_noise(1, 1, "cauchy")


def _real_batch(n: int = 16) -> dict:
    images, _ = fake_digits(n)
    return {"image": torch.from_numpy(images).float().div(127.5).sub(1).unsqueeze(1)}


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
@pytest.mark.parametrize("loss", sorted(losses.LOSSES))
def test_each_loss_moves_d_and_g_the_right_way(loss, arch):
    torch.manual_seed(0)
    model = with_optimizers(MnistGAN(MnistGANConfig(netG=arch, netD=arch, gan_mode=loss, **TINY), preview_count=16),
                            OptimConfig(lr=1e-3))
    batch = _real_batch()
    D, G, z = model.discriminators["D"], model.generators["G"], model.fixed_z

    def gap() -> float:
        with torch.no_grad():
            return float(D(batch["image"]).mean() - D(G(z)).mean())

    # D steps alone: D's outputs on real images rise above those on fakes.
    before = gap()
    init.set_requires_grad(model.generators, False)
    for _ in range(15):
        with torch.no_grad():
            out = model.generate(batch)
        model._d_update(batch, out, {})
    init.set_requires_grad(model.generators, True)
    assert gap() > before

    # G steps alone (D frozen): D's output on G's images rises.
    with torch.no_grad():
        d_fake = float(D(G(z)).mean())
    for _ in range(15):
        model._g_update(batch, {"fake": G(z)}, {})
    with torch.no_grad():
        assert float(D(G(z)).mean()) > d_fake
    # The full alternating step stays finite and logs D(x), D(G(z)).
    for _ in range(3):
        logs = model.train_step(batch)
        assert all(torch.isfinite(v) for v in logs.values())
    assert {"D", "G", "D_real", "D_fake"} <= set(logs) and ("gp" in logs) == (loss == "wgangp")


def test_d_steps_update_g_every_kth_step_and_wgangp_drops_batchnorm():
    model = with_optimizers(MnistGAN(MnistGANConfig(gan_mode="wgangp", d_steps=3, **TINY), preview_count=4))
    assert model.cfg.d_norm == "none"
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.discriminators.modules())
    batch = _real_batch(4)
    g_param = next(model.generators.parameters())
    changed = []
    for _ in range(6):
        before = g_param.detach().clone()
        model.train_step(batch)
        changed.append(not torch.equal(before, g_param))
    assert changed == [True, False, False, True, False, False]
    with pytest.raises(ValueError, match="--d-norm none"):
        MnistGAN(MnistGANConfig(gan_mode="wgangp", d_norm="batch", **TINY))


# -- training runs ----------------------------------------------------------------------------------


def _tiny_run(data: Path, runs: Path, **kw) -> RunConfig:
    return resolve("mnist", dict(gan_mode="wgangp", d_steps=2, **TINY, name="r", runs_dir=str(runs), idx_dir=str(data),
                                 batch_size=4, preview_every=0, log_every=1, eval_samples=0, save_every=0, **kw))


def test_loader_workers_are_stopped_when_training_ends(tmp_path):
    # The persistent DataLoader workers end with fit(), not whenever the garbage collector or
    # interpreter exit gets to the trainer (kept alive here by its export callback).
    import gc
    import multiprocessing

    data = write_mnist_files(tmp_path / "d", n_train=10, n_test=4)
    before = set(multiprocessing.active_children())
    gc.disable()  # the reference cycle stays until the assertion, as it may at exit
    try:
        run_training(_tiny_run(data, tmp_path / "a", max_iters=2, num_workers=1))
        assert set(multiprocessing.active_children()) <= before
    finally:
        gc.enable()


def test_resume_is_bit_identical(tmp_path):
    # 10 images, batch 4: 3 iterations per epoch, so iteration 4 is in the second epoch.
    data = write_mnist_files(tmp_path / "d", n_train=10, n_test=4)
    straight = run_training(_tiny_run(data, tmp_path / "a", max_iters=4))
    run_training(_tiny_run(data, tmp_path / "b", max_iters=2))
    resumed = run_training(_tiny_run(data, tmp_path / "b", max_iters=4), resume=True)
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert a["counters"] == b["counters"] == {"iteration": 4, "epoch": 1, "epoch_samples": 4}
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert torch.equal(a["extra"]["rng"], b["extra"]["rng"])


def cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "cyclegan", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=240)


def test_cli_train_end_to_end(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    write_mnist_files(tmp_path / "data", n_train=48, n_test=24)
    r = cli("mnist", "train", "--idx-dir", "data", "--out", "runs/t", "--max-iters", "4", "--batch-size", "8",
            "--preview-every", "2", "--save-every", "2", "--eval-samples", "40", *TINY_FLAGS, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "runs" / "t"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["iter_00000002.pt", "iter_00000004.pt", "latest.pt"]
    previews = sorted(p.name for p in (run / "previews").iterdir())
    assert previews == ["iter_00000001.png", "iter_00000002.png", "iter_00000004.png"]
    with Image.open(run / "previews" / previews[-1]) as im:  # 64 fixed-noise samples, 8 to a row
        assert im.size == (8 * 30 + 2, 8 * 30 + 2)
    ev = EventAccumulator(str(run / "tb"))
    ev.Reload()
    assert "preview" in ev.Tags()["images"] and {"loss/D", "loss/G", "loss/D_real"} <= set(ev.Tags()["scalars"])
    assert (run / "generators.safetensors").is_file() and (run / "classifier.safetensors").is_file()
    report = json.loads((run / "eval.json").read_text())
    assert report["n_fake"] == 40 and report["n_real"] == 24 and report["fid"] >= 0 and 0 <= report["confident"] <= 1
    assert "FID" in r.stdout and "confidently classified" in r.stdout
    assert "48 training images 28x28x1" in r.stderr


def _export(tmp_path: Path, **cfg) -> Path:
    model = MnistGAN(MnistGANConfig(**{**TINY, **cfg}), seed=0)
    return export_generators({"G": model.generators["G"]}, model.config_dict(), tmp_path / "g.safetensors",
                             {"kind": EXPORT_KIND})


def test_sample_and_interpolate_commands(tmp_path, capsys):
    path = str(_export(tmp_path))
    out = tmp_path / "grid.png"
    assert main(["mnist", "sample", path, "--n", "6", "--seed", "3", "--out", str(out)]) == 0
    with Image.open(out) as im:  # ceil(sqrt(6)) = 3 per row, 28 px + 2 px padding
        assert im.size == (3 * 30 + 2, 2 * 30 + 2) and im.mode == "L"
        first = np.asarray(im)
    main(["mnist", "sample", path, "--n", "6", "--seed", "3", "--out", str(out)])
    with Image.open(out) as im:
        assert np.array_equal(np.asarray(im), first)  # same seed, same images
    main(["mnist", "sample", path, "--n", "6", "--seed", "4", "--scale", "2", "--out", str(out)])
    with Image.open(out) as im:
        assert im.size == (2 * 92, 2 * 62)

    walk = tmp_path / "walk.png"
    assert main(["mnist", "interpolate", path, "--steps", "5", "--rows", "2", "--out", str(walk)]) == 0
    with Image.open(walk) as im:
        assert im.size == (5 * 30 + 2, 2 * 30 + 2)
    assert main(["mnist", "interpolate", path, "--steps", "4", "--dim", "7", "--out", str(walk)]) == 0
    with Image.open(walk) as im:
        assert im.size == (4 * 30 + 2, 30 + 2)
    assert main(["mnist", "interpolate", path, "--dim", "8", "--out", str(walk)]) == 2
    assert "--dim must be in 0..7" in capsys.readouterr().err


def test_interpolation_ends_at_the_seeds_and_walks_one_dimension(tmp_path):
    sampler = LatentSampler.load(_export(tmp_path))
    a, b = sampler.sample(1, seed=5), sampler.sample(1, seed=9)
    for mode in ("slerp", "linear"):
        path = sampler.interpolate(5, 9, steps=4, mode=mode)
        assert path.shape == (4, 1, 28, 28)
        assert torch.allclose(path[0], a[0], atol=1e-5) and torch.allclose(path[-1], b[0], atol=1e-5)
    z = torch.randn(2, 8, dtype=torch.float64)
    mid = slerp(z[:1], z[1:], torch.tensor([0.5]))
    assert torch.allclose(mid.norm(), ((z[0].norm() + z[1].norm()) / 2).float(), rtol=0.05)
    walk = sampler.walk(seed=5, dim=2, steps=3, span=2.0)
    assert walk.shape == (3, 1, 28, 28) and not torch.equal(walk[0], walk[2])


def test_load_from_run_folder_and_checkpoint_and_reject_others(tmp_path):
    data = write_mnist_files(tmp_path / "d", n_train=8, n_test=4)
    ckpt = run_training(_tiny_run(data, tmp_path / "runs", max_iters=1))
    from_run = LatentSampler.load(tmp_path / "runs" / "r")
    from_ckpt = LatentSampler.load(ckpt)
    assert from_run.path.name == "generators.safetensors" and from_run.meta["data"]["idx_dir"] == str(data)
    assert torch.equal(from_run.sample(3, seed=1), from_ckpt.sample(3, seed=1))
    cyclegan_export = export_generators({"G_A": torch.nn.Conv2d(1, 1, 1)}, {"netG": "resnet_9blocks"},
                                        tmp_path / "cg.safetensors")
    with pytest.raises(CheckpointError, match="CycleGAN generator export"):
        LatentSampler.load(cyclegan_export)
    with pytest.raises(CheckpointError, match="holds no generators.safetensors, checkpoints/latest.pt"):
        LatentSampler.load(tmp_path)


# -- classifier and evaluation ----------------------------------------------------------------------


def test_classifier_any_channels_and_size_features_and_report(tmp_path):
    images, labels = fake_digits(90, seed=2, size=32, channels=3)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(labels.astype(np.int64))
    cfg = ClassifierConfig(channels=3, image_size=32, n_classes=3, width=8, feature_dim=16)
    model, metrics = train_classifier(x[:60], y[:60], cfg, epochs=6, batch_size=16, lr=3e-3,
                                      held_out=(x[60:], y[60:]))
    assert metrics["held_out_accuracy"] >= 0.9
    feats, probs = extract(model, x)
    assert feats.shape == (90, 16) and torch.allclose(probs.sum(1), torch.ones(90))
    path = save_classifier(model, tmp_path / "c.safetensors", {"data_fingerprint": "abc"})
    loaded, meta = load_classifier(path)
    assert meta["data_fingerprint"] == "abc" and torch.equal(extract(loaded, x)[0], feats)

    real, other_real = x[:45], x[45:]
    noise = torch.randint(0, 256, x[:45].shape, dtype=torch.uint8)
    same = quality_report(model, real, other_real, kid_subset_size=40, threshold=0.6)
    diff = quality_report(model, real, noise, kid_subset_size=40, threshold=0.6)
    assert diff["fid"] > 5 * same["fid"] and diff["kid"] > same["kid"]
    assert same["confident"] > diff["confident"] and abs(sum(same["class_share"]) - 1) < 1e-6
    with pytest.raises(ValueError, match="one label per training image"):
        train_classifier(x, None, cfg)


def test_eval_command_uses_the_recorded_data(tmp_path, capsys):
    data = write_mnist_files(tmp_path / "d", n_train=30, n_test=12)
    run_training(_tiny_run(data, tmp_path / "runs", max_iters=2))
    out = tmp_path / "eval.json"
    assert main(["mnist", "eval", str(tmp_path / "runs" / "r"), "--samples", "20", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "FID" in text and "trained now" in text
    report = json.loads(out.read_text())
    assert report["n_real"] == 12 and report["n_fake"] == 20
    assert (tmp_path / "runs" / "r" / "classifier.safetensors").is_file()  # reused next time
    main(["mnist", "eval", str(tmp_path / "runs" / "r"), "--samples", "20"])
    assert "trained now" not in capsys.readouterr().out


def test_bench_command(capsys):
    assert main(["mnist", "bench", "--batch-size", "2", "4", "--warmup", "0", "--iters", "1", "--repeats", "1",
                 *TINY_FLAGS]) == 0
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()  # the shared harness's table: cyclegan bench --model mnist --mode train
    assert lines[0].split()[:3] == ["mode", "size", "batch"] and len(lines) == 3
    assert [line.split()[:3] for line in lines[1:]] == [["train", "28", "2"], ["train", "28", "4"]]
    assert "error" not in out.out and "the MNIST GAN (ngf 4, ndf 4)" in out.err


@pytest.mark.parametrize("command", ["train", "sample", "interpolate", "eval", "classifier", "bench"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["mnist", command, "--help"])
    assert exit_.value.code == 0 and f"usage: cyclegan mnist {command}" in capsys.readouterr().out


# -- the bundled model ------------------------------------------------------------------------------


@pytest.mark.skipif(not BUNDLED_GENERATOR.is_file(), reason="bundled generator not built yet")
def test_bundled_generator_and_classifier():
    assert BUNDLED_GENERATOR.stat().st_size < 5 * 2**20
    sampler = LatentSampler.load()
    assert sampler.path == BUNDLED_GENERATOR and sampler.meta["kind"] == EXPORT_KIND
    images = sampler.sample(8, seed=0)
    assert images.shape == (8, 1, 28, 28) and torch.isfinite(images).all()
    assert images.std() > 0.1  # not a constant image
    classifier, meta = load_classifier(BUNDLED_CLASSIFIER)
    assert meta["data_fingerprint"] == sampler.meta["data_fingerprint"]
    assert meta["metrics"]["held_out_accuracy"] > 0.85
    assert classifier(images).shape == (8, 10)
