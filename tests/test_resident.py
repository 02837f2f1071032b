"""--data-on-device: the unpaired images held on the device, cropped and flipped there
(cyclegan.data.resident), on real PNG/JPEG files."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from cyclegan.core.checkpoint import load_checkpoint
from cyclegan.data.augment_config import AugmentConfig
from cyclegan.data.images import DataError
from cyclegan.data.resident import ResidentLoader, loader_for
from cyclegan.data.unpaired import EpochSampler, UnpairedImageDataset
from cyclegan.training.run import run as run_training
from test_train import TINY_MODEL, cli, make_domain, tiny_run

CPU = torch.device("cpu")


def resident(ds: UnpairedImageDataset, batch_size: int = 1, rank: int = 0, world: int = 1,
             shuffle: bool = True, epoch: int = 0, start: int = 0) -> ResidentLoader:
    sampler = EpochSampler(len(ds), seed=ds.seed, shuffle=shuffle, rank=rank, world_size=world)
    sampler.set_epoch(epoch, start)
    loader = loader_for(ds, sampler, SimpleNamespace(data_on_device="on"), batch_size, CPU)
    assert isinstance(loader, ResidentLoader)
    return loader


def pixels(x: torch.Tensor) -> np.ndarray:
    """A normalised batch back to its uint8 values."""
    return (x * 127.5 + 127.5).round().to(torch.uint8).numpy()


def constant_domain(folder: Path, values: list[int], size=(40, 40), fmt="png") -> Path:
    """One image per value, every pixel that value: a crop's content says which image it came from."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, v in enumerate(values):
        Image.fromarray(np.full((*size, 3), v, np.uint8)).save(folder / f"{i:03d}.{fmt}")
    return folder


def position_domain(folder: Path, n: int, size: int = 40) -> Path:
    """Images whose red channel is 6 x row and green 6 x column (blue: the image's number), so a
    crop's pixels say where it was cut and whether it was flipped."""
    folder.mkdir(parents=True, exist_ok=True)
    rows, cols = np.mgrid[0:size, 0:size]
    for i in range(n):
        arr = np.stack([rows * 6, cols * 6, np.full_like(rows, 10 * i)], axis=2).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{i:03d}.png")
    return folder


def test_batches_have_the_shape_range_and_dtype_of_the_dataloaders(tmp_path):
    make_domain(tmp_path / "A", 5, 0, size=(36, 44))
    make_domain(tmp_path / "B", 3, 1, size=(50, 30))
    ds = UnpairedImageDataset(tmp_path / "A", tmp_path / "B", AugmentConfig(load_size=36, crop_size=32), seed=3)
    batches = list(resident(ds, batch_size=2))
    assert [b["A"].shape[0] for b in batches] == [2, 2, 1]  # 5 samples; the last batch is short, as drop_last=False
    for b in batches:
        for k in ("A", "B"):
            assert b[k].dtype == torch.float32 and b[k].device == CPU and b[k].shape[1:] == (3, 32, 32)
            assert -1 <= b[k].min() and b[k].max() <= 1
    pooled = torch.cat([b["A"] for b in batches])
    assert pooled.min() < -0.9 and pooled.max() > 0.9  # the full range is used (random pixels)


@pytest.mark.parametrize("channels,fmt", [(3, "png"), (1, "jpg")])
def test_decoding_resize_and_normalisation_equal_the_normal_pipeline(tmp_path, channels, fmt):
    # load == crop and no flip: no random choice left, so both paths must give the same tensors
    rng = np.random.default_rng(0)
    for domain, n in (("A", 3), ("B", 2)):
        (tmp_path / domain).mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (30, 44, 3), dtype=np.uint8)).save(tmp_path / domain / f"{i}.{fmt}")
    cfg = AugmentConfig(load_size=32, crop_size=32, flip=False, channels=channels)
    ds = UnpairedImageDataset(tmp_path / "A", tmp_path / "B", cfg, serial=True)
    batches = list(resident(ds, shuffle=False))
    for i, b in enumerate(batches):
        sample = ds[(0, i)]
        assert torch.equal(b["A"][0], sample["A"]) and torch.equal(b["B"][0], sample["B"])


def _cuts(batch: torch.Tensor) -> list[tuple[int, int, bool, int]]:
    """(top, left, flipped, image) of each crop in a batch of position_domain images."""
    out = []
    for crop in pixels(batch):
        r, g, b = crop.astype(int)
        flipped = g[0, 0] > g[0, -1]
        left = (g[0, -1] if flipped else g[0, 0]) // 6
        assert np.array_equal(r, r[:, :1] + np.zeros_like(r)) and np.array_equal(np.diff(r[:, 0]), [6] * 31)
        assert np.array_equal(np.abs(np.diff(g, axis=1)), np.full((32, 31), 6))  # a contiguous (mirrored) cut
        out.append((r[0, 0] // 6, left, bool(flipped), b[0, 0] // 10))
    return out


def test_crops_and_flips_vary_and_are_reproducible_for_a_seed(tmp_path):
    position_domain(tmp_path / "A", 12)
    position_domain(tmp_path / "B", 12)
    cfg = AugmentConfig(preprocess="crop", crop_size=32)

    def epochs(seed: int) -> list:
        ds = UnpairedImageDataset(tmp_path / "A", tmp_path / "B", cfg, seed=seed)
        return [cut for e in range(3) for b in resident(ds, batch_size=4, epoch=e) for cut in _cuts(b["A"])]

    cuts = epochs(0)
    assert len({(t, l) for t, l, _, _ in cuts}) > 10  # 36 samples from 81 possible positions
    assert 0.2 < np.mean([f for _, _, f, _ in cuts]) < 0.8
    assert all(0 <= t <= 8 and 0 <= l <= 8 for t, l, _, _ in cuts)
    assert epochs(0) == cuts and epochs(1) != cuts
    ds = UnpairedImageDataset(tmp_path / "A", tmp_path / "B", AugmentConfig(preprocess="crop", crop_size=32, flip=False))
    assert not any(f for b in resident(ds, batch_size=4) for _, _, f, _ in _cuts(b["A"]))


@pytest.mark.parametrize("world", [1, 2])
def test_an_epoch_visits_every_image_once_on_any_number_of_ranks(tmp_path, world):
    values = [20, 60, 100, 140, 180]
    constant_domain(tmp_path / "A", values, fmt="jpg")
    constant_domain(tmp_path / "B", [40, 200])
    ds = UnpairedImageDataset(tmp_path / "A", tmp_path / "B", AugmentConfig(load_size=40, crop_size=32), seed=5)
    seen: Counter = Counter()
    for rank in range(world):
        sampler = EpochSampler(len(ds), seed=5, rank=rank, world_size=world)
        sampler.set_epoch(1)
        keys = [values[i] for _, i in sampler]
        batches = list(resident(ds, batch_size=2, rank=rank, world=world, epoch=1))
        got = [int(np.median(x)) for b in batches for x in pixels(b["A"])]
        assert all(abs(g - k) <= 2 for g, k in zip(got, keys)) and len(got) == len(keys)  # JPEG rounding
        seen.update(keys)
        assert {int(np.median(x)) for b in batches for x in pixels(b["B"])} <= {40, 200}
    assert set(seen) == set(values) and sum(seen.values()) == 5 + (5 % world)  # padded as DistributedSampler


def test_a_mid_epoch_start_gives_the_rest_of_the_same_epoch(tmp_path):
    position_domain(tmp_path / "A", 7)
    position_domain(tmp_path / "B", 4)
    ds = UnpairedImageDataset(tmp_path / "A", tmp_path / "B", AugmentConfig(preprocess="crop", crop_size=32), seed=2)
    whole = [(b["A"], b["B"]) for b in resident(ds, epoch=2)]
    rest = [(b["A"], b["B"]) for b in resident(ds, epoch=2, start=3)]
    assert len(rest) == 4
    for (a1, b1), (a2, b2) in zip(whole[3:], rest):
        assert torch.equal(a1, a2) and torch.equal(b1, b2)


def test_resume_with_data_on_device_is_bit_identical(tmp_path):
    root = tmp_path / "data"
    make_domain(root / "trainA", 5, 0)
    make_domain(root / "trainB", 4, 1)
    straight = run_training(tiny_run(root, tmp_path / "straight", max_iters=7, save_every=0, data_on_device="on"))
    run_training(tiny_run(root, tmp_path / "resumed", max_iters=3, save_every=0, data_on_device="on"))
    resumed = run_training(tiny_run(root, tmp_path / "resumed", max_iters=7, save_every=0), resume=True)  # stored: on
    sa, sb = load_checkpoint(straight), load_checkpoint(resumed)
    assert sa["counters"] == sb["counters"] == {"iteration": 7, "epoch": 1, "epoch_samples": 2}  # over an epoch end
    for k in sa["model"]:
        assert torch.equal(sa["model"][k], sb["model"][k]), k
    # the other data path trains on other crops: the weights show which path ran
    other = load_checkpoint(run_training(tiny_run(root, tmp_path / "loader", max_iters=7, save_every=0)))["model"]
    assert not all(torch.equal(sa["model"][k], other[k]) for k in sa["model"])


def test_unsupported_preprocessing_is_refused_with_what_to_do(tmp_path):
    make_domain(tmp_path / "A", 2, 0, size=(40, 40))
    make_domain(tmp_path / "B", 2, 1, size=(40, 48))
    make_domain(tmp_path / "B", 1, 2, size=(48, 40))  # 000.png: another size in B
    sampler = EpochSampler(2)
    on = SimpleNamespace(data_on_device="on")
    for preprocess, message in [("scale_width", "--preprocess scale_width keeps the images' own sizes"),
                                ("none", "--data-on-device off"),
                                ("crop", r"domain B's images at different sizes \(.*001.png: 48x40")]:
        ds = UnpairedImageDataset(tmp_path / "A", tmp_path / "B", AugmentConfig(preprocess=preprocess, crop_size=32))
        with pytest.raises(DataError, match=message):
            loader_for(ds, sampler, on, 1, CPU)
        assert loader_for(ds, sampler, SimpleNamespace(data_on_device="auto"), 1,
                          torch.device("cuda")) is None  # auto falls back (checked before any device memory)


def test_auto_is_off_on_the_cpu_and_a_set_over_the_memory_limit_falls_back(tmp_path, caplog):
    make_domain(tmp_path / "A", 3, 0)
    make_domain(tmp_path / "B", 2, 1)
    ds = UnpairedImageDataset(tmp_path / "A", tmp_path / "B", AugmentConfig(load_size=36, crop_size=32))
    sampler = EpochSampler(len(ds))
    assert loader_for(ds, sampler, SimpleNamespace(data_on_device="auto"), 1, CPU) is None
    assert loader_for(ds, sampler, SimpleNamespace(), 1, CPU) is None  # data sections without the field
    on = SimpleNamespace(data_on_device="on")
    need = 5 * 3 * 36 * 36
    with caplog.at_level(logging.INFO, logger="cyclegan.data"):
        assert loader_for(ds, sampler, on, 1, CPU, limit=need - 1) is None
        assert isinstance(loader_for(ds, sampler, on, 1, CPU, limit=need), ResidentLoader)
    assert [r.message for r in caplog.records if "DataLoader instead" in r.message] == [
        f"data: the decoded images need {need / 2**20:.1f} MiB, more than the {(need - 1) / 2**20:.1f} MiB "
        "allowed (the limit given); using the DataLoader instead"]


def test_cli_train_with_data_on_device_says_so(tmp_path):
    make_domain(tmp_path / "data" / "trainA", 4, 2, size=(40, 40))
    make_domain(tmp_path / "data" / "trainB", 3, 3, size=(48, 40))
    r = cli("train", "--dataroot", "data", "--name", "dev", "--size", "32", "--max-iters", "5", "--save-every", "0",
            "--num-workers", "0", "--data-on-device", "on", *TINY_MODEL, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "data: on the device (cpu; A 4x3x36x36, B 3x3x36x36 uint8" in r.stderr
    run = tmp_path / "runs" / "dev"
    assert "data_on_device: 'on'" in (run / "config.yaml").read_text()
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["counters"]["iteration"] == 5
    r = cli("train", "--dataroot", "data", "--name", "bad", "--size", "32", "--preprocess", "scale_width",
            "--data-on-device", "on", *TINY_MODEL, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "error: --data-on-device needs a --preprocess that crops to one size" in r.stderr


@pytest.mark.gpu
def test_on_cuda_auto_holds_the_images_there_and_resume_stays_bit_identical(tmp_path, capsys, monkeypatch):
    root = tmp_path / "data"
    make_domain(root / "trainA", 5, 0)
    make_domain(root / "trainB", 4, 1)
    ds = UnpairedImageDataset(root / "trainA", root / "trainB", AugmentConfig(load_size=36, crop_size=32))
    cuda = torch.device("cuda")
    loader = loader_for(ds, EpochSampler(len(ds)), SimpleNamespace(data_on_device="auto"), 2, cuda)
    assert isinstance(loader, ResidentLoader)
    assert all(b["A"].is_cuda and b["B"].is_cuda for b in loader)
    common = dict(save_every=0, device="cuda", precision="fp32", compile=False)  # eager: same kernels
    # the training loop turns cuDNN's benchmarking on, which may choose other algorithms in the
    # resumed run (timings differ): deterministic algorithms make "bit-identical" testable
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    straight = run_training(tiny_run(root, tmp_path / "straight", max_iters=7, data_on_device="auto", **common))
    assert "data: on the device (cuda" in capsys.readouterr().err
    run_training(tiny_run(root, tmp_path / "resumed", max_iters=3, data_on_device="auto", **common))
    resumed = run_training(tiny_run(root, tmp_path / "resumed", max_iters=7, **common), resume=True)
    sa, sb = load_checkpoint(straight)["model"], load_checkpoint(resumed)["model"]
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
