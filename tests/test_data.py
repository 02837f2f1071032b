"""Tests for cyclegan.data: discovery, decoding, augmentation, the dataset and the sampler.

Every test writes its own small image files into tmp_path with PIL.
"""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from cyclegan.data.images import IMAGE_EXTENSIONS, DataError, UnreadableImageError, find_images, load_image
from cyclegan.data.augment_config import PREPROCESS_MODES, AugmentConfig
from cyclegan.data.transforms import build_transform
from cyclegan.data.unpaired import EpochSampler, ImageFolder, UnpairedImageDataset

SMALL = AugmentConfig(load_size=32, crop_size=24)  # fast everywhere a size does not matter


# ----------------------------------------------------------------------------- helpers


def noise(h: int, w: int, c: int = 3, seed: int = 0) -> np.ndarray:
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)
    return arr[:, :, 0] if c == 1 else arr


def save(path: Path, img: Image.Image | np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    img.save(path, **kwargs)
    return path


def truncated_jpeg(path: Path, seed: int = 0) -> Path:
    buf = io.BytesIO()
    Image.fromarray(noise(48, 48, seed=seed)).save(buf, "JPEG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def make_domain(folder: Path, n: int, h: int = 40, w: int = 60, seed: int = 0) -> list[Path]:
    return [save(folder / f"{i:03d}.png", noise(h, w, seed=seed * 1000 + i)) for i in range(n)]


def warnings_from(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "cyclegan.data" and r.levelno == logging.WARNING
    ]


@pytest.fixture
def data_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="cyclegan.data")
    return caplog


@pytest.fixture
def two_domains(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "trainA", tmp_path / "trainB"
    make_domain(a, 5, seed=1)
    make_domain(b, 3, seed=2)
    return a, b


# --------------------------------------------------------------------------- discovery


def test_find_images_recursive_case_insensitive(tmp_path: Path) -> None:
    img = noise(8, 8)
    expected = [
        save(tmp_path / "a.JPG", img, format="JPEG"),
        save(tmp_path / "b.bmp", img),
        save(tmp_path / "sub" / "c.Png", img, format="PNG"),
        save(tmp_path / "sub" / "deep" / "d.webp", img),
        save(tmp_path / "sub" / "deep" / "e.tif", img),
    ]
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub" / "f.jpg.bak").write_bytes(b"x")
    save(tmp_path / ".hidden.png", img)
    assert find_images(tmp_path) == expected
    assert set(IMAGE_EXTENSIONS) >= {".jpg", ".png", ".webp", ".bmp", ".tif"}


def test_find_images_missing_folder_and_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "trainA"
    with pytest.raises(DataError, match="trainA"):
        find_images(missing)
    a_file = save(tmp_path / "x.png", noise(4, 4))
    with pytest.raises(DataError, match="x.png"):
        find_images(a_file)


def test_image_folder_skips_corrupt_and_truncated(tmp_path: Path, data_log) -> None:
    good = make_domain(tmp_path, 3)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(np.random.default_rng(0).bytes(500))
    truncated = truncated_jpeg(tmp_path / "sub" / "truncated.jpg")

    folder = ImageFolder(tmp_path, name="A")

    assert folder.paths == good
    assert [p for p, _ in folder.skipped] == [corrupt, truncated]
    assert all(reason for _, reason in folder.skipped)
    msgs = warnings_from(data_log)
    assert len(msgs) == 2
    assert sum(str(corrupt) in m for m in msgs) == 1
    assert sum(str(truncated) in m for m in msgs) == 1
    assert folder.summary() == f"domain A: 3 images in {tmp_path} (2 unreadable skipped)"


def test_image_folder_only_corrupt_files(tmp_path: Path, data_log) -> None:
    for i in range(2):
        (tmp_path / f"bad{i}.png").write_bytes(b"not really a png" * (i + 1))
    with pytest.raises(DataError) as err:
        ImageFolder(tmp_path, name="B")
    msg = str(err.value)
    assert str(tmp_path) in msg and ".png" in msg and ".jpg" in msg
    assert "2 files failed to decode" in msg


def test_image_folder_empty(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="0 files failed to decode"):
        ImageFolder(tmp_path)


def test_image_folder_summary_single_image(tmp_path: Path) -> None:
    make_domain(tmp_path, 1)
    assert ImageFolder(tmp_path, name="A").summary() == f"domain A: 1 image in {tmp_path}"


# ----------------------------------------------------------------------------- decoding


def test_load_grayscale_to_rgb_and_back(tmp_path: Path) -> None:
    gray = noise(6, 5, c=1)
    path = save(tmp_path / "g.png", gray)
    rgb = load_image(path, 3)
    assert rgb.shape == (6, 5, 3) and rgb.dtype == np.uint8
    assert (rgb == gray[:, :, None]).all()
    one = load_image(path, 1)
    assert one.shape == (6, 5, 1) and (one[:, :, 0] == gray).all()


def test_load_rgba_composites_onto_white(tmp_path: Path) -> None:
    arr = np.zeros((4, 4, 4), dtype=np.uint8)
    arr[..., 0] = 200  # red, fully transparent in the left half, opaque on the right
    arr[:, 2:, 3] = 255
    out = load_image(save(tmp_path / "a.png", Image.fromarray(arr, "RGBA")), 3)
    assert (out[:, :2] == 255).all()
    assert (out[:, 2:] == [200, 0, 0]).all()
    assert load_image(tmp_path / "a.png", 1).shape == (4, 4, 1)


def test_load_la_composites_onto_white(tmp_path: Path) -> None:
    arr = np.zeros((3, 3, 2), dtype=np.uint8)  # black, transparent everywhere but one pixel
    arr[0, 0, 1] = 255
    out = load_image(save(tmp_path / "la.png", Image.fromarray(arr, "LA")), 1)
    assert out.shape == (3, 3, 1)
    assert out[0, 0, 0] == 0 and (out.reshape(-1)[1:] == 255).all()


def test_load_palette_with_and_without_transparency(tmp_path: Path) -> None:
    pal = Image.new("P", (4, 2))
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    pal.putdata([0, 1, 0, 1, 1, 1, 1, 1])
    plain = load_image(save(tmp_path / "p.png", pal), 3)
    assert plain.shape == (2, 4, 3)
    assert (plain[0, 0] == [0, 0, 0]).all() and (plain[0, 1] == [10, 20, 30]).all()
    transparent = load_image(save(tmp_path / "pt.png", pal, transparency=0), 3)
    assert (transparent[0, 0] == 255).all()  # palette entry 0 is transparent -> white
    assert (transparent[0, 1] == [10, 20, 30]).all()


def test_load_cmyk(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (5, 4), (0, 255, 255, 0))  # pure red
    out = load_image(save(tmp_path / "c.jpg", cmyk, quality=100), 3)
    assert out.shape == (4, 5, 3)
    assert out[..., 0].min() > 200 and out[..., 1:].max() < 60


def test_load_16bit_scales_not_clips(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    path = save(tmp_path / "d.png", Image.fromarray(values))
    with Image.open(path) as img:
        assert img.mode == "I;16"
    out = load_image(path, 1)
    assert out[0, :, 0].tolist() == [0, 1, 128, 255]
    assert load_image(path, 3).shape == (1, 4, 3)


def test_load_32bit_int_float_and_bilevel(tmp_path: Path) -> None:
    i32 = Image.fromarray(np.array([[0, 65535, 70000]], dtype=np.int32), "I")
    assert load_image(save(tmp_path / "i.tif", i32), 1)[0, :, 0].tolist() == [0, 255, 255]
    f32 = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), "F")
    assert load_image(save(tmp_path / "f.tif", f32), 1)[0, :, 0].tolist() == [0, 128, 255]
    bilevel = Image.new("1", (3, 2), 1)
    assert (load_image(save(tmp_path / "b.png", bilevel), 3) == 255).all()


def test_load_applies_exif_orientation(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = save(tmp_path / "r.jpg", noise(10, 20), exif=exif.tobytes())
    assert load_image(path, 3).shape == (20, 10, 3)
    assert ImageFolder(tmp_path).sizes == [(10, 20)]  # (width, height) as displayed


def test_load_truncated_and_corrupt_raise(tmp_path: Path, monkeypatch) -> None:
    truncated = truncated_jpeg(tmp_path / "t.jpg")
    with pytest.raises(UnreadableImageError) as err:
        load_image(truncated, 3)
    assert err.value.path == truncated and "truncated" in err.value.reason
    assert str(truncated) in str(err.value)
    # Someone else enabling lenient loading must not make truncated files pass.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(UnreadableImageError):
        load_image(truncated, 3)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True
    junk = tmp_path / "j.png"
    junk.write_bytes(b"\x89PNG garbage")
    with pytest.raises(UnreadableImageError):
        load_image(junk, 3)


def test_load_decompression_bomb(tmp_path: Path, monkeypatch) -> None:
    path = save(tmp_path / "big.png", noise(40, 40))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(UnreadableImageError, match="DecompressionBomb"):
        load_image(path, 3)


# --------------------------------------------------------------------------- transforms


@pytest.mark.parametrize(
    ("preprocess", "shape"),
    [
        ("resize_and_crop", (24, 24)),
        ("crop", (24, 24)),
        ("scale_width", (24, 32)),  # width -> 32, height 40*32/60 = 21 raised to crop 24
        ("scale_width_and_crop", (24, 24)),
        ("none", (40, 60)),
    ],
)
def test_preprocess_output_shapes(preprocess: str, shape: tuple[int, int]) -> None:
    cfg = AugmentConfig(preprocess=preprocess, load_size=32, crop_size=24)
    out = build_transform(cfg)(image=noise(40, 60))["image"]
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert tuple(out.shape) == (3, *shape)
    assert out.min() >= -1.0 and out.max() <= 1.0
    assert out.min() < -0.9 and out.max() > 0.9  # really uses the whole range


def test_sides_rounded_to_multiple_of_4() -> None:
    cfg = AugmentConfig(preprocess="none")
    assert tuple(build_transform(cfg)(image=noise(41, 62))["image"].shape) == (3, 40, 64)
    assert tuple(build_transform(cfg)(image=noise(1, 3))["image"].shape) == (3, 4, 4)
    odd_crop = AugmentConfig(preprocess="crop", crop_size=30)
    assert tuple(build_transform(odd_crop)(image=noise(40, 40))["image"].shape) == (3, 32, 32)


def test_normalisation_maps_0_255_to_minus1_1() -> None:
    cfg = AugmentConfig(preprocess="none", flip=False)
    img = np.zeros((4, 8, 3), dtype=np.uint8)
    img[:, 4:] = 255
    out = build_transform(cfg)(image=img)["image"]
    assert torch.all(out[:, :, :4] == -1.0) and torch.all(out[:, :, 4:] == 1.0)


def test_only_training_imports_albumentations() -> None:
    # Every command imports the CLI; translation and the app must not pay for albumentations.
    code = ("import sys, cyclegan.cli, cyclegan.inference.translator, cyclegan.app\n"
            "assert 'albumentations' not in sys.modules, 'albumentations imported'\n"
            "from cyclegan.data.transforms import build_transform\n"
            "assert 'albumentations' in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_resize_and_crop_load_smaller_than_crop_warns_once(data_log) -> None:
    tf = build_transform(AugmentConfig(load_size=16, crop_size=24))
    assert len(warnings_from(data_log)) == 1 and "load_size" in warnings_from(data_log)[0]
    assert tuple(tf(image=noise(40, 60))["image"].shape) == (3, 24, 24)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"preprocess": "zoom"}, "preprocess"),
        ({"channels": 2}, "channels"),
        ({"load_size": 3}, "load_size"),
        ({"crop_size": 0}, "crop_size"),
    ],
)
def test_invalid_config(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field) as err:
        AugmentConfig(**kwargs)
    if field == "preprocess":
        assert all(mode in str(err.value) for mode in PREPROCESS_MODES)


# ------------------------------------------------------------------------------ dataset


def test_dataset_sample_format(two_domains, data_log) -> None:
    ds = UnpairedImageDataset(*two_domains, SMALL)
    assert len(ds) == 5
    sample = ds[(0, 4)]
    assert set(sample) == {"A", "B", "A_path", "B_path"}
    assert tuple(sample["A"].shape) == (3, 24, 24) and tuple(sample["B"].shape) == (3, 24, 24)
    assert sample["A_path"].endswith("trainA/004.png") and "trainB" in sample["B_path"]
    assert all(-1.0 <= t.min() and t.max() <= 1.0 for t in (sample["A"], sample["B"]))
    assert torch.equal(ds[3]["A"], ds[(0, 3)]["A"])  # an int key means epoch 0
    with pytest.raises(IndexError):
        ds[5]
    summary = ds.summary()
    assert "domain A: 5 images" in summary and "domain B: 3 images" in summary
    assert "resize_and_crop" in summary
    assert warnings_from(data_log) == []


def test_dataset_deterministic_across_instances_and_epochs(two_domains) -> None:
    cfg = AugmentConfig(load_size=32, crop_size=16, flip=False)
    first = UnpairedImageDataset(*two_domains, cfg, seed=7)
    second = UnpairedImageDataset(*two_domains, cfg, seed=7)
    for key in [(0, 0), (3, 2), (1, 4)]:
        x, y = first[key], second[key]
        assert torch.equal(x["A"], y["A"]) and torch.equal(x["B"], y["B"]) and x["B_path"] == y["B_path"]
    # Same file (A index 0 every epoch), different epoch -> a different crop.
    assert any(not torch.equal(first[(0, 0)]["A"], first[(e, 0)]["A"]) for e in (1, 2, 3))
    # A and B get different random streams, and the seed matters.
    other_seed = UnpairedImageDataset(*two_domains, cfg, seed=8)
    assert any(not torch.equal(first[(0, i)]["A"], other_seed[(0, i)]["A"]) for i in range(5))


def test_dataset_ignores_global_rng(two_domains) -> None:
    ds = UnpairedImageDataset(*two_domains, SMALL)
    torch.manual_seed(1), np.random.seed(1)
    x = ds[(2, 1)]
    torch.manual_seed(2), np.random.seed(2)
    y = ds[(2, 1)]
    assert torch.equal(x["A"], y["A"]) and torch.equal(x["B"], y["B"])


def test_serial_pairs_a_i_with_b_i(two_domains) -> None:
    ds = UnpairedImageDataset(*two_domains, SMALL, serial=True)
    for i in range(len(ds)):
        sample = ds[(5, i)]
        assert Path(sample["A_path"]).name == f"{i:03d}.png"
        assert Path(sample["B_path"]).name == f"{i % 3:03d}.png"


def test_unpaired_b_is_random(two_domains) -> None:
    ds = UnpairedImageDataset(*two_domains, SMALL)
    chosen = [Path(ds[(e, i)]["B_path"]).name for e in range(4) for i in range(5)]
    serial = [f"{i % 3:03d}.png" for _ in range(4) for i in range(5)]
    assert set(chosen) == {"000.png", "001.png", "002.png"} and chosen != serial


def test_grayscale_dataset(two_domains) -> None:
    ds = UnpairedImageDataset(*two_domains, AugmentConfig(load_size=32, crop_size=24, channels=1))
    sample = ds[0]
    assert tuple(sample["A"].shape) == (1, 24, 24) and tuple(sample["B"].shape) == (1, 24, 24)
    assert "grayscale" in ds.summary()


def test_tiny_images_upscaled_with_one_warning(tmp_path: Path, data_log) -> None:
    make_domain(tmp_path / "A", 2, h=8, w=8)
    make_domain(tmp_path / "B", 2, h=8, w=12, seed=1)
    ds = UnpairedImageDataset(tmp_path / "A", tmp_path / "B", AugmentConfig(preprocess="crop", crop_size=32))
    for key in [(0, 0), (0, 1), (1, 0)]:
        sample = ds[key]
        assert tuple(sample["A"].shape) == (3, 32, 32) and tuple(sample["B"].shape) == (3, 32, 32)
    msgs = warnings_from(data_log)
    assert len(msgs) == 1
    assert "crop_size 32" in msgs[0] and "upscaled" in msgs[0]


def test_file_broken_after_scan_falls_back_to_next(two_domains, data_log) -> None:
    folder_a, folder_b = two_domains
    ds = UnpairedImageDataset(folder_a, folder_b, SMALL, serial=True)
    broken = folder_a / "001.png"
    broken.write_bytes(broken.read_bytes()[:60])  # passed the scan, now truncated
    for _ in range(2):
        sample = ds[(0, 1)]
        assert Path(sample["A_path"]).name == "002.png"
    assert torch.equal(sample["A"], ds[(0, 1)]["A"])
    msgs = warnings_from(data_log)
    assert len(msgs) == 1 and str(broken) in msgs[0]


def test_dataloader_workers_match_single_process(two_domains) -> None:
    ds = UnpairedImageDataset(*two_domains, SMALL, seed=3)

    def batches(workers: int) -> list[dict]:
        sampler = EpochSampler(len(ds), seed=3)
        sampler.set_epoch(2)
        loader = torch.utils.data.DataLoader(ds, batch_size=2, sampler=sampler, num_workers=workers)
        return list(loader)

    serial, parallel = batches(0), batches(2)
    assert len(serial) == len(parallel) == 3
    for x, y in zip(serial, parallel):
        assert torch.equal(x["A"], y["A"]) and torch.equal(x["B"], y["B"])
        assert x["A_path"] == y["A_path"] and x["B_path"] == y["B_path"]


# ------------------------------------------------------------------------------ sampler


def test_sampler_permutation_changes_with_epoch() -> None:
    sampler = EpochSampler(50, seed=1)
    first = list(sampler)
    assert all(epoch == 0 for epoch, _ in first)
    assert sorted(i for _, i in first) == list(range(50))
    assert [i for _, i in first] != list(range(50))
    sampler.set_epoch(1)
    second = list(sampler)
    assert all(epoch == 1 for epoch, _ in second)
    assert sorted(i for _, i in second) == list(range(50)) and second != first
    assert list(EpochSampler(50, seed=1)) == first  # seeded, not global-RNG


def test_sampler_without_shuffle_is_identity() -> None:
    sampler = EpochSampler(7, shuffle=False)
    sampler.set_epoch(4)
    assert list(sampler) == [(4, i) for i in range(7)]


def test_sampler_resume_yields_tail() -> None:
    sampler = EpochSampler(20, seed=5)
    sampler.set_epoch(3)
    full = list(sampler)
    for k in (0, 1, 7, 20):
        sampler.set_epoch(3, start=k)
        assert len(sampler) == 20 - k
        assert list(sampler) == full[k:]
    with pytest.raises(ValueError, match="start"):
        sampler.set_epoch(3, start=21)


@pytest.mark.parametrize(("n", "world_size"), [(10, 3), (12, 4), (2, 3)])
def test_sampler_shards_disjoint_and_cover(n: int, world_size: int) -> None:
    shards = []
    for rank in range(world_size):
        sampler = EpochSampler(n, seed=2, rank=rank, world_size=world_size)
        sampler.set_epoch(1)
        shards.append([i for _, i in sampler])
        assert len(sampler) == len(shards[-1]) == -(-n // world_size)
    positions = [(rank, pos) for rank, shard in enumerate(shards) for pos in range(len(shard))]
    assert len(positions) % world_size == 0
    flat = [i for shard in shards for i in shard]
    assert set(flat) == set(range(n))
    if n % world_size == 0:  # no padding: every index exactly once
        assert sorted(flat) == list(range(n))
    else:  # only the padding repeats
        assert len(flat) - len(set(flat)) == world_size - n % world_size


def test_sampler_shards_interleave_the_permutation() -> None:
    whole = EpochSampler(9, seed=4)
    order = [i for _, i in whole]
    for rank in range(3):
        shard = EpochSampler(9, seed=4, rank=rank, world_size=3)
        assert [i for _, i in shard] == order[rank::3]


def test_sampler_rejects_bad_rank() -> None:
    with pytest.raises(ValueError, match="rank"):
        EpochSampler(10, rank=2, world_size=2)
