"""pix2pix (issue 31): the objective, paired data, the kind contract, training through the commands."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cyclegan.core.checkpoint import load_checkpoint, load_export
from cyclegan.data.augment_config import AugmentConfig
from cyclegan.data.images import DataError
from cyclegan.data.paired import PairedImageDataset
from cyclegan.models.pix2pix import PAPER_PIX2PIX, Pix2Pix, Pix2PixConfig
from cyclegan.training import kinds
from cyclegan.training.config import OptimConfig, with_optimizers
from cyclegan.training.kinds import KINDS, contract_gaps, resolve
from cyclegan.training.run import run as run_training
from test_train import cli
from tiny_models import one_thread  # noqa: F401

TINY = dict(netG="unet_32", ngf=4, ndf=4)


def tiny(seed: int = 0, **kw) -> Pix2Pix:
    torch.manual_seed(seed)
    return with_optimizers(Pix2Pix(Pix2PixConfig(**{**TINY, **kw}), seed=seed))


def images(seed: int, n: int = 2, size: int = 32, channels=(3, 3)) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.rand(n, c, size, size, generator=g) * 2 - 1 for k, c in zip("AB", channels)}


def make_aligned(folder, n: int, seed: int = 0, size: int = 40, negate: bool = True):
    """n aligned A|B files (B = 255 - A, so a shared crop and flip keep B == -A after normalising)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        a = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        b = 255 - a if negate else rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(np.concatenate([a, b], axis=1)).save(folder / f"{i:03d}.png")
    return folder


def tiny_run(dataroot, runs, **settings):
    return resolve("pix2pix", {**TINY, "n_epochs": 1, "n_epochs_decay": 1, "name": "t", "runs_dir": str(runs),
                               "dataroot": str(dataroot), "size": 32, "num_workers": 0, "preview_every": 0,
                               "log_every": 1, "precision": "fp32", **settings})


# -- the objective -----------------------------------------------------------------------------


def test_losses_are_the_written_out_formulas():
    model = tiny().eval()  # eval: no dropout, running statistics, so two passes agree
    batch = images(1)
    out = model.generate(batch)
    D = model.discriminators["D_A"]
    d_real, d_fake = D(torch.cat([batch["A"], batch["B"]], 1)), D(torch.cat([batch["A"], out["fake"]], 1))
    bce = F.binary_cross_entropy_with_logits  # the reference's vanilla GANLoss
    want_d = 0.5 * (bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake)))
    want_g = bce(d_fake, torch.ones_like(d_fake)) + 100 * (out["fake"] - batch["B"]).abs().mean()
    loss_d, _ = model.discriminator_loss(batch, out)
    loss_g, logs = model.generator_loss(batch, out)
    assert torch.allclose(loss_d, want_d, atol=1e-5) and torch.allclose(loss_g, want_g, atol=1e-4)
    assert set(logs) == {"G_GAN", "G_L1"}


def test_conditional_d_sees_input_and_output_channels_and_btoa_learns_from_b():
    model = tiny(direction="BtoA", input_nc=3, output_nc=1)
    assert list(model.generators) == ["G_B"] and list(model.discriminators) == ["D_B"]
    G, D = model.generators["G_B"], model.discriminators["D_B"]
    assert D.model[0].in_channels == 4  # B (1) + A (3)
    batch = images(2, channels=(3, 1))
    assert G(batch["B"]).shape == batch["A"].shape
    before = [p.clone() for p in G.parameters()]
    logs = model.train_step(batch)
    assert set(logs) == {"D", "G_GAN", "G_L1"}
    assert any(not torch.equal(a, b) for a, b in zip(before, G.parameters()))


def test_l1_alone_overfits_a_pair():
    torch.manual_seed(0)
    model = with_optimizers(Pix2Pix(Pix2PixConfig(**TINY, lambda_GAN=0.0, dropout=False)), OptimConfig(lr=5e-3))
    batch = images(3, n=1)
    first = [model.train_step(batch)["G_L1"].item() for _ in range(40)]
    assert first[-1] < 0.8 * first[0]


def test_paper_preset_and_direction_flag():
    run = resolve("pix2pix", {"dataroot": "x"}, "paper")
    m = run.model
    for k, v in PAPER_PIX2PIX.items():
        section = next(s for s in run.sections().values() if hasattr(s, k))
        assert getattr(section, k) == v, k
    assert (m.netG, m.norm, m.dropout, m.gan_mode, m.lambda_L1) == ("unet_256", "batch", True, "vanilla", 100.0)
    assert (run.data.size, run.data.resolved_load_size(), run.data.flip, run.loop.batch_size) == (256, 286, True, 1)
    assert (run.optim.lr, run.optim.beta1, run.schedule.n_epochs, run.schedule.n_epochs_decay) == (2e-4, 0.5, 100, 100)
    assert resolve("pix2pix", {"direction": "BtoA", "size": 64}).model.netG == "unet_64"
    assert resolve("pix2pix", {"size": 64, "netG": "unet_32"}).model.netG == "unet_32"
    assert resolve("pix2pix", {"size": 320}).model.netG == "unet_64"  # the deepest U-Net that divides it
    from cyclegan.training.pix2pix import check_size

    with pytest.raises(DataError, match="--size 48 does not suit --netG unet_256"):
        check_size(resolve("pix2pix", {"size": 48}).model.netG, 48)
    from cyclegan.cli.main import build_parser
    from cyclegan.cli.train import train_config

    args = build_parser().parse_args(["train", "--model", "pix2pix", "--dataroot", "x", "--direction", "BtoA",
                                      "--lambda-L1", "10", "--no-dropout", "--output-channels", "1"])
    m = train_config(args).model
    assert (m.direction, m.lambda_L1, m.dropout, m.output_nc, m.input_nc) == ("BtoA", 10.0, False, 1, 3)


# -- the contract of a kind (part 7) -----------------------------------------------------------


@pytest.mark.parametrize("name", list(KINDS))
def test_every_kind_fulfils_the_contract(name, tmp_path):
    k = KINDS[name]
    assert isinstance(k.training, kinds.KindTraining)
    small = {"mnist": {}}.get(name, {"netG": "unet_32" if name == "pix2pix" else "resnet_6blocks", "size": 32})
    run = resolve(name, {**small, "ngf": 4, "ndf": 4}) if name != "mnist" else resolve(name, {})
    assert contract_gaps(k, run) == []
    assert isinstance(run.model, kinds.ModelConfig)


def test_the_contract_finds_what_a_kind_lacks(monkeypatch):
    monkeypatch.delattr(Pix2Pix, "preview")
    run = resolve("pix2pix", {**TINY, "size": 32})
    assert contract_gaps(KINDS["pix2pix"], run) == ["Pix2Pix does not implement preview"]


# -- paired data (part 2) ----------------------------------------------------------------------


def test_aligned_pairs_get_the_same_crop_and_flip(tmp_path):
    make_aligned(tmp_path / "train", 3)
    ds = PairedImageDataset(tmp_path / "train", None, AugmentConfig(preprocess="crop", crop_size=32, load_size=32))
    crops = set()
    for epoch in range(6):
        s = ds[(epoch, 0)]
        assert s["A"].shape == s["B"].shape == (3, 32, 32)
        assert torch.allclose(s["B"], -s["A"], atol=1e-6)
        crops.add(s["A"].sum().item())
    assert len(crops) > 1  # the crop (and flip) changes between epochs, for both images alike
    assert torch.equal(ds[(2, 1)]["A"], ds[(2, 1)]["A"])  # seeded by (seed, epoch, index)


def test_bad_pairs_are_skipped_with_the_file_named(tmp_path, caplog):
    make_aligned(tmp_path / "train", 2)
    Image.new("RGB", (81, 40)).save(tmp_path / "train" / "odd.png")
    (tmp_path / "train" / "broken.png").write_bytes(b"not a png")
    with caplog.at_level(logging.WARNING, logger="cyclegan.data"):
        ds = PairedImageDataset(tmp_path / "train", None, AugmentConfig(load_size=36, crop_size=32))
    assert len(ds) == 2
    text = caplog.text
    assert "odd.png (odd width 81" in text and "broken.png" in text

    a, b = tmp_path / "A", tmp_path / "B"
    for folder in (a / "sub", b / "sub"):
        folder.mkdir(parents=True)
    Image.new("RGB", (32, 32), "red").save(a / "sub" / "1.png")
    Image.new("L", (32, 32), 9).save(b / "sub" / "1.jpg")       # matched by path without extension
    Image.new("RGB", (32, 32)).save(a / "2.png")                 # no counterpart
    Image.new("RGB", (32, 32)).save(a / "3.png")
    Image.new("RGB", (40, 32)).save(b / "3.png")                 # sizes differ
    Image.new("RGB", (32, 32)).save(b / "4.png")                 # no counterpart
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cyclegan.data"):
        ds = PairedImageDataset(a, b, AugmentConfig(preprocess="crop", crop_size=32, load_size=32), channels_b=1)
    assert len(ds) == 1 and ds[0]["B"].shape == (1, 32, 32) and ds[0]["A_path"].endswith("1.png")
    for expected in ("2.png (no counterpart 2.* in", "3.png (32x32, but its counterpart", "4.png (no counterpart"):
        assert expected in caplog.text, expected

    for side in "AB":
        (tmp_path / "c" / side).mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(tmp_path / "c" / "A" / "x.png")
    Image.new("RGB", (32, 32)).save(tmp_path / "c" / "B" / "y.png")
    with pytest.raises(DataError, match=r"no usable image pairs .*2 skipped; first: .*x.png: no counterpart"):
        PairedImageDataset(tmp_path / "c" / "A", tmp_path / "c" / "B", AugmentConfig())


# -- training ----------------------------------------------------------------------------------


@pytest.mark.parametrize("planned", [False, True], ids=["ordinary", "step-graph-dry-run"])
def test_resume_is_bit_identical(tmp_path, monkeypatch, planned):
    make_aligned(tmp_path / "data" / "train", 3, negate=False)
    if planned:  # the whole-step graph's planned step in the real loop, every step checked for host reads
        monkeypatch.setenv("CYCLEGAN_STEP_GRAPH_DRY", "1")

    def run(folder, iters, resume=False):
        return run_training(tiny_run(tmp_path / "data", tmp_path / folder, max_iters=iters, save_every=0,
                                     ema_decay=0.9, step_graph=planned), resume=resume)

    straight = run("straight", 5)
    run("resumed", 2)
    resumed = run("resumed", 5, resume=True)
    a, b = load_checkpoint(straight)["model"], load_checkpoint(resumed)["model"]
    assert a.keys() == b.keys() and any(k.startswith("ema_generators.G_A.") for k in a)
    assert any(k.endswith("running_mean") for k in a)  # batch norm statistics resume too
    for k in a:
        assert torch.equal(a[k], b[k]), k
    if planned:
        assert "step_graph: dry" in (tmp_path / "straight" / "t" / "config.yaml").read_text()


def test_pix2pix_through_the_commands(tmp_path):
    make_aligned(tmp_path / "data" / "train", 3, negate=False)
    common = ["--model", "pix2pix", "--dataroot", "data", "--name", "p", "--size", "32", "--save-every", "2",
              "--preview-every", "2", "--num-workers", "0", "--ngf", "4", "--ndf", "4"]
    r = cli("train", "--max-iters", "2", *common, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "unet_32" in r.stderr and "pix2pix, 1 generator AtoB" in r.stderr
    run = tmp_path / "runs" / "p"
    with Image.open(run / "previews" / "iter_00000002.png") as im:  # input | translation | ground truth
        assert im.size[0] == 2 + 3 * 32 + 2
    states, config, _ = load_export(run / "generators.safetensors")
    assert list(states) == ["G_A"] and config["model"] == "pix2pix" and config["norm"] == "batch"
    for fmt, suffix in (("onnx", ".onnx"), ("torchscript", ".ts")):  # each checked against PyTorch first
        r = cli("export", str(run), "--format", fmt, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == [str(run / f"generator_AtoB{suffix}")]
    (tmp_path / "in").mkdir()
    Image.new("RGB", (32, 32), "white").save(tmp_path / "in" / "x.png")
    r = cli("translate", "--model", str(run), "--input", "in", "--output", "out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "x.png").is_file()


# -- paired evaluation -------------------------------------------------------------------------


def test_paired_scores_are_the_definitions():
    from cyclegan.evaluation.paired import image_scores

    rng = np.random.default_rng(0)
    x = rng.integers(20, 200, (32, 32, 3), dtype=np.uint8)
    same = image_scores(x, x.copy())
    assert same["l1"] == 0 and same["psnr"] == float("inf") and abs(same["ssim"] - 1) < 1e-9
    shifted = image_scores(x, x + 10)
    assert abs(shifted["l1"] - 10 / 255) < 1e-12 and abs(shifted["psnr"] - 20 * np.log10(255 / 10)) < 1e-9
    noisy = image_scores(x, np.clip(x + rng.normal(0, 40, x.shape), 0, 255).astype(np.uint8))
    assert 0 < noisy["ssim"] < shifted["ssim"] < 1
    big = image_scores(x, np.kron(x, np.ones((2, 2, 1), dtype=np.uint8)))  # truth resized to the output
    assert big["psnr"] > 20


def test_eval_paired_through_the_command(tmp_path):
    make_aligned(tmp_path / "data" / "train", 2, negate=False)
    make_aligned(tmp_path / "data" / "test", 3, seed=5, negate=False)
    run_training(tiny_run(tmp_path / "data", tmp_path / "runs", max_iters=1))
    r = cli("eval", "paired", "--model", str(tmp_path / "runs" / "t"), "--dataroot", "data", "--json", "e.json",
            "--output", "fakes", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "3 pairs of data/test; AtoB, 32 px, test mode eval" in r.stdout
    import json

    result = json.loads((tmp_path / "e.json").read_text())
    assert result["n"] == 3 and len(result["per_image"]) == 3 and 0 < result["l1"] < 1
    assert len(list((tmp_path / "fakes").glob("*.png"))) == 3
    r = cli("eval", "paired", "--model", str(tmp_path / "runs" / "t"), "--dataroot", "nowhere", cwd=tmp_path)
    assert r.returncode == 2 and "expected nowhere/test (aligned A|B files)" in r.stderr and "Traceback" not in r.stderr


def test_bf16_and_channels_last_train(tmp_path):
    make_aligned(tmp_path / "data" / "train", 2, negate=False)
    state = load_checkpoint(run_training(tiny_run(tmp_path / "data", tmp_path / "runs", max_iters=2,
                                                  precision="bf16", channels_last=True)))
    assert state["run_config"]["loop"]["precision"] == "bf16" and state["counters"]["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_pix2pix_under_torchrun_two_ranks(tmp_path):
    from test_distributed import torchrun

    make_aligned(tmp_path / "data" / "train", 4, negate=False)
    r = torchrun("train", "--model", "pix2pix", "--dataroot", str(tmp_path / "data"), "--name", "d", "--max-iters",
                 "2", "--size", "32", "--ngf", "4", "--ndf", "4", "--num-workers", "0", "--preview-every", "0",
                 "--log-every", "1", cwd=tmp_path, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "statistics stay per process" in r.stderr  # batch norm on CPU: said, not hidden
    state = load_checkpoint(tmp_path / "runs" / "d" / "checkpoints" / "latest.pt")
    assert len(state["per_rank"]) == 2 and state["counters"]["epoch_samples"] == 2


def test_the_planned_step_equals_the_ordinary_step_and_reads_nothing_on_the_host():
    """No host decision in a pix2pix step (no pool, no drawn augmentation; dropout draws on the
    device's generator): the whole-step graph's planned step is the ordinary one, bit for bit."""
    from cyclegan.training.step_graph import StepGraph

    ordinary, planned = tiny(ema_decay=0.9), tiny(ema_decay=0.9)
    for model in (ordinary, planned):
        model.use_fused_optimizers(force=True)
    assert planned.step_graph_unsupported() is None
    graph = StepGraph(planned, capture=False, warmup=1, forbid_host_reads=True)
    for i, batch in enumerate([images(10 + i) for i in range(5)] + [images(20, n=1)]):
        torch.manual_seed(i)  # dropout's draws, alike for both
        expected = ordinary.train_step(batch)
        torch.manual_seed(i)
        got = graph.step(batch)
        assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected), i
    for (name, x), (_, y) in zip(ordinary.state_dict().items(), planned.state_dict().items()):
        assert torch.equal(x, y), name
