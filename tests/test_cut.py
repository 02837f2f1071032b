"""CUT and FastCUT: the PatchNCE loss against its formula written out, shared patch locations,
gradients into the generator and the heads, a tiny overfit, bit-identical resume, and a tiny run
through the real commands (train, resume, export, translate, eval domains) and the app."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

from cyclegan.core.checkpoint import load_checkpoint, load_export
from cyclegan.cli.main import build_parser
from cyclegan.cli.train import train_config
from cyclegan.models.cut import CUT, MODES, RESNET_NCE_LAYERS, CUTConfig, encode, patch_nce_loss, sample_patch_ids
from cyclegan.training.config import with_optimizers
from cyclegan.training.kinds import resolve
from cyclegan.training.run import run as run_training
from test_train import cli, dataroot, make_domain  # noqa: F401 (dataroot: the fixture)
from tiny_models import one_thread  # noqa: F401

TINY = dict(netG="resnet_6blocks", ngf=4, ndf=4, num_patches=16, netF_nc=8)


def tiny_cut(mode: str = "cut", seed: int = 0, **kw) -> CUT:
    torch.manual_seed(seed)
    return with_optimizers(CUT(CUTConfig(model=mode, **MODES[mode], **{**TINY, **kw}), seed=seed))


def tiny_run(mode: str, dataroot, runs, **settings):
    """A CUT / FastCUT run of tiny networks on 32 px crops, 1 + 1 epochs."""
    return resolve(mode, {**TINY, "n_epochs": 1, "n_epochs_decay": 1, "name": "t", "runs_dir": str(runs),
                          "dataroot": str(dataroot), "size": 32, "num_workers": 0, "preview_every": 0,
                          "log_every": 1, **settings})


def images(seed: int, n: int = 1, size: int = 32) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.rand(n, 3, size, size, generator=g) * 2 - 1 for k in "AB"}


# -- the loss --------------------------------------------------------------------------------------


def test_patch_nce_is_the_written_out_formula():
    g = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(2, 3, 4, generator=g), dim=-1)
    k = torch.nn.functional.normalize(torch.randn(2, 3, 4, generator=g), dim=-1)
    tau = 0.07
    total = 0.0
    for b in range(2):
        for i in range(3):
            dots = [sum(float(q[b, i, c]) * float(k[b, j, c]) for c in range(4)) / tau for j in range(3)]
            total += -math.log(math.exp(dots[i]) / sum(math.exp(d) for d in dots))
    assert patch_nce_loss(q, k, tau).item() == pytest.approx(total / 6, rel=1e-5)


def test_patch_nce_keys_get_no_gradient_and_matching_patches_score_low():
    q = torch.nn.functional.normalize(torch.randn(1, 8, 5), dim=-1).requires_grad_()
    k = q.detach().clone().requires_grad_()
    same = patch_nce_loss(q, k)
    shuffled = patch_nce_loss(q, k[:, torch.roll(torch.arange(8), 1)])
    assert same < shuffled
    same.backward()
    assert k.grad is None and q.grad.abs().sum() > 0


def test_nce_layers_are_the_reference_points_of_our_resnet():
    model = tiny_cut()
    G = model.generators["G_A"].model
    assert model.nce_layers == RESNET_NCE_LAYERS == (0, 4, 7, 10, 14)
    assert isinstance(G[0], torch.nn.ReflectionPad2d)                 # the (padded) input image
    assert G[4].stride == (2, 2) and G[7].stride == (2, 2)           # the two downsampling convs
    assert type(G[10]).__name__ == type(G[14]).__name__ == "ResnetBlock"
    assert G[9] is not None and type(G[9]).__name__ == "ReLU"        # 10 is the first residual block
    assert [m[0].in_features for m in model.heads.mlps] == [3, 8, 16, 16, 16]


def test_heads_take_the_same_locations_in_input_and_output_features():
    model = tiny_cut()
    x = images(1)["A"]
    feats = encode(model.generators["G_A"], x, model.nce_layers)
    ids = sample_patch_ids(feats, 16, torch.Generator().manual_seed(3))
    out = model.heads(feats, ids)
    for f, i, o, mlp in zip(feats, ids, out, model.heads.mlps):
        w = f.shape[3]
        j = int(i[5])
        expected = torch.nn.functional.normalize(mlp(f[0, :, j // w, j % w]), dim=-1)
        torch.testing.assert_close(o[0, 5], expected)
    # The model draws one set of locations per term and uses it for queries and keys: with the
    # output equal to the input every query meets its own key.
    state = model.rng.get_state()
    loss = model.nce_loss(x, x, flipped=False)
    model.rng.set_state(state)
    keys = model.heads(feats, sample_patch_ids(feats, 16, model.rng))
    expected = torch.stack([patch_nce_loss(k, k, 0.07) for k in keys]).mean()
    torch.testing.assert_close(loss, expected)


def test_gradients_reach_the_generator_and_every_head():
    model = tiny_cut()
    batch = images(2)
    loss, logs = model.generator_loss(batch, model.generate(batch))
    assert set(logs) == {"G_GAN", "NCE", "NCE_idt"}
    loss.backward()
    g = model.generators["G_A"]
    assert g.model[1].weight.grad.abs().sum() > 0 and g.model[-2].weight.grad.abs().sum() > 0
    for mlp in model.heads.mlps:
        assert mlp[0].weight.grad.abs().sum() > 0 and mlp[2].weight.grad.abs().sum() > 0


def test_nce_decreases_on_a_tiny_overfit():
    model = tiny_cut()
    x = images(4)["A"]
    params = [*model.generators.parameters(), *model.heads.parameters()]
    opt = torch.optim.Adam(params, lr=2e-3)
    losses = []
    for _ in range(40):
        loss = model.nce_loss(x, model.generators["G_A"](x), flipped=False)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def test_one_optimizer_steps_generator_and_heads_and_the_d_step_comes_first():
    model = tiny_cut("fastcut")
    assert not model.g_first and model.cfg.lambda_NCE == 10 and not model.cfg.nce_idt
    groups = model.optimizers["G"].param_groups
    assert [len(g["params"]) for g in groups] == [len(list(model.generators.parameters())),
                                                   len(list(model.heads.parameters()))]
    heads_before = [p.clone() for p in model.heads.parameters()]
    logs = model.train_step(images(5))
    assert set(logs) == {"D", "G_GAN", "NCE"}
    assert all(not torch.equal(a, b) for a, b in zip(heads_before, model.heads.parameters()))


def test_btoa_model_holds_g_b_and_learns_from_b():
    model = tiny_cut(direction="BtoA")
    assert list(model.generators) == ["G_B"] and list(model.discriminators) == ["D_B"]
    assert (model.src, model.dst) == ("B", "A")
    grid = model.preview(images(6, n=2))
    assert grid.shape == (2, 3, 32, 64)


# -- the command line's view of the models -----------------------------------------------------


def parse(*argv):
    return train_config(build_parser().parse_args(["train", "--dataroot", "d", *argv]))


def test_model_flag_presets_and_foreign_flags():
    assert type(parse().model).__name__ == "CycleGANConfig"
    m = parse("--model", "cut").model
    assert (m.model, m.lambda_NCE, m.nce_idt, m.flip_equivariance, m.gan_mode, m.ema_decay) == \
        ("cut", 1.0, True, False, "hinge", 0.999)
    r = parse("--model", "cut", "--preset", "paper")
    m, o, s = r.model, r.optim, r.schedule
    # the reference code's recipe, written out: lsgan, Adam 2e-4 (0.5, 0.999), xavier, 200 + 200 epochs
    assert (m.gan_mode, o.lr, o.beta1, o.beta2, m.init_type, m.ema_decay, s.n_epochs, s.n_epochs_decay) == \
        ("lsgan", 2e-4, 0.5, 0.999, "xavier", 0.0, 200, 200)
    assert (m.num_patches, m.nce_T, m.netF_nc, m.lambda_NCE, r.loop.batch_size, r.data.size) == \
        (256, 0.07, 256, 1.0, 1, 256)
    r = parse("--model", "fastcut", "--preset", "paper")
    assert (r.model.lambda_NCE, r.model.nce_idt, r.model.flip_equivariance, r.schedule.n_epochs,
            r.schedule.n_epochs_decay) == (10.0, False, True, 150, 50)
    m = parse("--model", "fastcut", "--lambda-NCE", "3", "--nce-idt", "--direction", "BtoA").model
    assert (m.lambda_NCE, m.nce_idt, m.direction) == (3.0, True, "BtoA")
    with pytest.raises(ValueError, match=r"--lambda-A, --pool-size: not a setting of --model cut"):
        parse("--model", "cut", "--lambda-A", "5", "--pool-size", "0")
    with pytest.raises(ValueError, match=r"--lambda-NCE: not a setting of --model cyclegan"):
        parse("--lambda-NCE", "5")


# -- training ------------------------------------------------------------------------------------


def _weights(ckpt):
    return load_checkpoint(ckpt)["model"]


@pytest.mark.parametrize("mode", ["cut", "fastcut"])
def test_resume_is_bit_identical(dataroot, tmp_path, mode):
    def run(folder, iters, resume=False):
        return run_training(tiny_run(mode, dataroot, tmp_path / folder, max_iters=iters, save_every=0), resume=resume)

    straight = run("straight", 4)
    run("resumed", 2)
    resumed = run("resumed", 4, resume=True)
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys() and any(k.startswith("heads.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    sa, sb = load_checkpoint(straight), load_checkpoint(resumed)
    assert torch.equal(sa["extra"]["patch_rng"], sb["extra"]["patch_rng"])


def _tiny_state(dataroot, runs, mode="cut", **loop):
    return load_checkpoint(run_training(tiny_run(mode, dataroot, runs, max_iters=2, **loop)))


def test_bf16_channels_last(dataroot, tmp_path):
    state = _tiny_state(dataroot, tmp_path, "fastcut", precision="bf16", channels_last=True)
    assert state["run_config"]["loop"]["precision"] == "bf16" and state["counters"]["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


@pytest.mark.slow
def test_compile_trains(dataroot, tmp_path):
    state = _tiny_state(dataroot, tmp_path, compile=True)
    assert state["counters"]["iteration"] == 2
    assert not any("_orig_mod" in k for k in state["model"])


def test_cut_through_the_commands(tmp_path):
    make_domain(tmp_path / "data" / "trainA", 4, 2, size=(40, 40))
    make_domain(tmp_path / "data" / "trainB", 3, 3, size=(40, 40))
    common = ["--dataroot", "data", "--name", "c", "--size", "32", "--save-every", "2", "--preview-every", "2",
              "--num-workers", "0", "--ngf", "4", "--ndf", "4", "--num-patches", "16", "--netF-nc", "8"]
    r = cli("train", "--model", "cut", "--max-iters", "2", *common, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "cut, 1 generator AtoB" in r.stderr
    r = cli("train", "--model", "cut", "--max-iters", "4", "--resume", *common, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "runs" / "c"
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["counters"]["iteration"] == 4
    with Image.open(run / "previews" / "iter_00000004.png") as im:  # source | translation, 3 rows
        assert im.size[0] == 2 + 2 * 32 + 2
    states, config, meta = load_export(run / "generators.safetensors")
    assert list(states) == ["G_A"] and config["model"] == "cut" and meta["weights"] == "ema"

    for fmt, suffix in (("onnx", ".onnx"), ("torchscript", ".ts")):
        r = cli("export", str(run), "--format", fmt, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == [str(run / f"generator_AtoB{suffix}")]
    r = cli("export", str(run), "-o", "again.safetensors", cwd=tmp_path)
    assert r.returncode == 0 and list(load_export(tmp_path / "again.safetensors")[0]) == ["G_A"]

    make_domain(tmp_path / "in", 2, 4, size=(20, 24))
    r = cli("translate", "--model", str(run), "--input", "in", "--output", "out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "out").glob("*.png"))) == 2
    r = cli("translate", "--model", str(run), "--direction", "BtoA", "--input", "in", "--output", "out2",
            cwd=tmp_path)
    assert r.returncode == 2 and not (tmp_path / "out2").exists()
    assert r.stderr.strip().splitlines()[-1] == (
        f"cyclegan translate: error: {run / 'generators.safetensors'} is a cut model, which translates AtoB only "
        "(cut learns one direction); for BtoA train another with `cyclegan train --model cut --direction BtoA`")


def test_app_lists_a_cut_run_with_its_one_direction(dataroot, tmp_path):
    from cyclegan.app.actions import AppBackend
    from cyclegan.app.settings import AppSettings

    for name, direction in (("ab", "AtoB"), ("ba", "BtoA")):
        run_training(tiny_run("cut", dataroot, tmp_path / "runs", name=name, direction=direction, max_iters=1))
    (tmp_path / "runs" / "ba" / "generators.safetensors").unlink()  # a run with a checkpoint only
    app = AppBackend(AppSettings(runs_dir=tmp_path / "runs", checkpoints_dir=tmp_path / "ck", bundled=False,
                                 device="cpu", output_dir=tmp_path / "out"))
    ids = sorted(c.id for c in app.catalog().translate)
    assert ids == ["runs/ab|AtoB", "runs/ba|BtoA"]
    make_domain(tmp_path / "up", 1, 5, size=(16, 16))
    r = app.translate(tmp_path / "up" / "000.png", "runs/ab|AtoB", cycle=True)
    assert r.output.size == (32, 32) and r.reconstruction is None
    assert any("translates AtoB only" in n for n in r.notes)


def test_fastcut_under_torchrun_two_ranks(dataroot, tmp_path):
    from test_distributed import torchrun

    r = torchrun("train", "--model", "fastcut", "--dataroot", str(dataroot), "--name", "d", "--max-iters", "2",
                 "--size", "32", "--ngf", "4", "--ndf", "4", "--num-patches", "16", "--netF-nc", "8",
                 "--num-workers", "0", "--preview-every", "0", "--log-every", "1", cwd=tmp_path, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    state = load_checkpoint(tmp_path / "runs" / "d" / "checkpoints" / "latest.pt")
    ranks = state["per_rank"]
    assert len(ranks) == 2 and state["counters"]["epoch_samples"] == 2
    # each rank draws its own patch locations and flips
    assert not torch.equal(ranks[0]["extra"]["patch_rng"], ranks[1]["extra"]["patch_rng"])


def test_eval_domains_judges_the_one_direction(tmp_path, monkeypatch, capsys):
    from cyclegan.core.checkpoint import export_generators
    from cyclegan.cli.main import main
    from test_eval_domains import write_bars

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    data = write_bars(tmp_path / "bars", n_train=12, n_test=4)
    model = tiny_cut(direction="BtoA")
    export_generators(dict(model.inference_generators().items()), model.config_dict(),
                      tmp_path / "run" / "generators.safetensors", {"size": 32, "name": "run"})
    assert main(["eval", "domains", "--model", str(tmp_path / "run"), "--dataroot", str(data),
                 "--classifier-size", "16", "--epochs", "1", "--json", str(tmp_path / "r.json")]) == 0
    table = capsys.readouterr().out
    rows = [line.split() for line in table.splitlines() if line.startswith(("AtoB", "BtoA"))]
    assert [r[0] for r in rows] == ["BtoA"] * 3
    assert rows[0][1] == "translated" and rows[0][-1] == "-"   # no generator back: no cycle L1
    result = json.loads((tmp_path / "r.json").read_text())
    assert "AtoB" not in result and result["BtoA"]["translated"]["cycle_l1"] is None
