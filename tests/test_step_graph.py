"""--step-graph: the whole training step as one CUDA graph (cyclegan.training.step_graph).

The capture itself needs CUDA (the gpu-marked tests at the end). On any machine the tests check
what makes the capture possible and correct: the planned step (image pools deciding on the host
ahead of the step, the EMA weight in a tensor, fused Adam skipping non-finite updates on the
device) gives bit-identical results to the ordinary step in the same process, and reads no tensor
value on the host; a dry run of the whole training loop resumes bit-identically."""

from __future__ import annotations

import json

import yaml

import pytest
import torch

from cyclegan.core.checkpoint import load_checkpoint
from cyclegan.core.fastpath import FastPath
from cyclegan.models.cyclegan import CycleGAN, CycleGANConfig
from cyclegan.models.gan import Precision
from cyclegan.models.cut import CUT, CUTConfig, MODES
from cyclegan.models.image_pool import ImagePool
from cyclegan.models.mnist import MnistGAN, MnistGANConfig
from cyclegan.training import step_graph
from cyclegan.training.config import with_optimizers
from cyclegan.training.run import run as run_training
from cyclegan.training.step_graph import CaptureViolation, StepGraph, strict_capture

from test_train import _poison_generator_loss, cli, dataroot, tiny_run  # noqa: F401  (fixture)

TINY = dict(netG="resnet_6blocks", ngf=4, ndf=4, pool_size=3, ema_decay=0.99)


def _batches(n: int, batch_size: int = 2, device: str = "cpu"):
    g = torch.Generator().manual_seed(1)
    return [{k: (torch.rand(batch_size, 3, 32, 32, generator=g) * 2 - 1).to(device) for k in "AB"} for _ in range(n)]


def _model(device: str = "cpu", precision: str = "fp32", **cfg) -> CycleGAN:
    torch.manual_seed(0)
    model = with_optimizers(CycleGAN(CycleGANConfig(**{**TINY, **cfg}), seed=0)).to(device)
    model.precision = Precision(torch.device(device).type, precision)
    model.use_fused_optimizers(force=True)  # the planned step's Adam, here for both sides
    return model


def _assert_same_state(a: CycleGAN, b: CycleGAN, exact: bool = True) -> None:
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        if exact:
            assert torch.equal(x, y), name
        else:
            torch.testing.assert_close(x, y, rtol=1e-3, atol=2e-3, msg=name)
    sa, sb = a.extra_state(), b.extra_state()
    assert (sa["step_count"], sa["ema_updates"]) == (sb["step_count"], sb["ema_updates"])
    for k in "AB":
        assert torch.equal(sa["pools"][k]["rng"], sb["pools"][k]["rng"])
        if exact:
            assert torch.equal(sa["pools"][k]["images"], sb["pools"][k]["images"]), k
        else:
            torch.testing.assert_close(sa["pools"][k]["images"], sb["pools"][k]["images"], rtol=1e-3, atol=2e-3)


# -- the image pool's buffer mode ---------------------------------------------------------------


def test_the_pool_in_a_buffer_draws_and_returns_what_the_list_pool_does():
    listed, buffered = ImagePool(3, seed=5), ImagePool(3, seed=5)
    g = torch.Generator().manual_seed(0)
    for i in range(12):  # the fill, then swaps; batches of 2 can hit one slot twice
        images = torch.rand(2, 1, 4, 4, generator=g)
        expected = listed.query(images)
        if i == 1:  # switched mid-way, as the step graph does after its warm-up steps
            buffered.to_buffer(images, 2)
        if buffered.buffer is not None:
            buffered.plan.copy_(torch.tensor(buffered.draw_plan(2)))
        assert torch.equal(buffered.query(images), expected), i
    a, b = listed.state_dict(), buffered.state_dict()
    assert torch.equal(a["images"], b["images"]) and torch.equal(a["rng"], b["rng"]) and len(buffered) == 3
    buffered.to_list()
    assert buffered.buffer is None and torch.equal(buffered.state_dict()["images"], a["images"])


# -- the planned step -------------------------------------------------------------------------


#: objectives the step graph runs: the default, the paper's, and the options it supports
OBJECTIVES = {"default": ("fp32", {}), "paper": ("fp32", dict(gan_mode="lsgan", ema_decay=0.0)),
              "bf16": ("bf16", {}), "sn+r1": ("fp32", dict(spectral_norm=True, r1_gamma=0.2)),
              "wgangp": ("fp32", dict(gan_mode="wgangp")),
              "diffaug": ("fp32", dict(diffaug="color,translation,cutout")),
              "d-steps": ("fp32", dict(d_steps=2))}


@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_the_planned_step_equals_the_ordinary_step_and_reads_nothing_on_the_host(objective):
    precision, cfg = OBJECTIVES[objective]
    ordinary, planned = _model(precision=precision, **cfg), _model(precision=precision, **cfg)
    # The one difference the planned step makes on purpose: autocast's weight-cast cache is off (a
    # capture needs it so), and a weight used several times in a step then accumulates its gradient
    # in fp32 rather than in bf16. Off on both sides here, the rest is bit for bit.
    ordinary.precision.cache_enabled = False
    graph = StepGraph(planned, capture=False, warmup=2, forbid_host_reads=True)
    # past the pools' fill (3 images, 2 per step), then the smaller last batch of an epoch
    for i, batch in enumerate([*_batches(6), *_batches(1, batch_size=1)]):
        torch.manual_seed(i)  # the gradient penalty's draws, alike for both
        expected = ordinary.train_step(batch)
        torch.manual_seed(i)
        got = graph.step(batch)
        assert expected.keys() == got.keys()
        assert all(torch.equal(expected[k], got[k]) for k in expected), i
        if i == 4:  # a new learning rate mid-way (the schedule at an epoch end)
            for model in (ordinary, planned):
                for opt in model.optimizers.values():
                    opt.param_groups[0]["lr"] *= 0.5
    _assert_same_state(ordinary, planned)
    assert planned.pools["A"].buffer is not None  # it did run planned


def _mnist(device: str = "cpu", **cfg) -> MnistGAN:
    torch.manual_seed(0)
    model = with_optimizers(MnistGAN(MnistGANConfig(netG="dcgan", netD="dcgan", ngf=4, ndf=4, **cfg), seed=0,
                                     preview_count=4)).to(device)
    model.use_fused_optimizers(force=True)
    return model


def _mnist_batches(n: int, device: str = "cpu", batch_size: int = 4):
    g = torch.Generator().manual_seed(2)
    return [{"image": (torch.rand(batch_size, 1, 28, 28, generator=g) * 2 - 1).to(device)} for _ in range(n)]


#: the MNIST GAN's objectives: DCGAN (BatchNorm in D), and WGAN-GP with 5 D steps per G step
MNIST_OBJECTIVES = {"dcgan": {}, "wgangp": dict(gan_mode="wgangp", d_steps=5)}


@pytest.mark.parametrize("objective", list(MNIST_OBJECTIVES))
def test_the_mnist_gans_planned_step_equals_its_ordinary_step(objective):
    """z and the gradient penalty's eps drawn ahead from the model's own generator; with
    d_steps 5, steps of two kinds (D only, D and G)."""
    ordinary, planned = _mnist(**MNIST_OBJECTIVES[objective]), _mnist(**MNIST_OBJECTIVES[objective])
    _assert_planned_steps_equal(ordinary, planned, [*_mnist_batches(11), *_mnist_batches(1, batch_size=3)])


def _assert_planned_steps_equal(ordinary, planned, batches: list[dict]) -> None:
    """Ordinary and planned steps (host reads forbidden) on the same batches: equal losses,
    weights and random streams, bit for bit."""
    graph = StepGraph(planned, capture=False, warmup=1, forbid_host_reads=True)
    for i, batch in enumerate(batches):
        expected, got = ordinary.train_step(batch), graph.step(batch)
        assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected), i
    for (name, x), (_, y) in zip(ordinary.state_dict().items(), planned.state_dict().items()):
        assert torch.equal(x, y), name
    assert torch.equal(ordinary.rng.get_state(), planned.rng.get_state())


def _cut(mode: str, device: str = "cpu", **cfg) -> CUT:
    torch.manual_seed(0)
    config = CUTConfig(model=mode, **{**MODES[mode], "netG": "resnet_6blocks", "ngf": 4, "ndf": 4, "num_patches": 16,
                                      "netF_nc": 8, **cfg})
    model = with_optimizers(CUT(config, seed=0)).to(device)
    model.use_fused_optimizers(force=True)
    return model


#: CUT (PatchNCE on the source and, as identity term, the target images) and FastCUT (random flips)
CUT_OBJECTIVES = {"cut": {}, "fastcut": {}, "cut-d-steps": dict(d_steps=2)}


@pytest.mark.parametrize("objective", list(CUT_OBJECTIVES))
def test_cuts_planned_step_equals_its_ordinary_step(objective):
    """The flip and the patch locations drawn ahead from the model's own generator."""
    mode = "fastcut" if objective == "fastcut" else "cut"
    ordinary, planned = _cut(mode, **CUT_OBJECTIVES[objective]), _cut(mode, **CUT_OBJECTIVES[objective])
    _assert_planned_steps_equal(ordinary, planned, [*_batches(8), *_batches(1, batch_size=1)])


def test_the_strict_capture_catches_the_ordinary_cpu_step():
    model = _model(pool_size=0)  # no pool draws: the first thing refused is Adam's host read
    for opt in model.optimizers.values():  # torch's default Adam (not fused): the step reads `finite` on the host
        for group in (opt.defaults, *opt.param_groups):
            group.update(fused=None, foreach=None)
    batch = _batches(1)[0]
    with pytest.raises(CaptureViolation, match="host read"), strict_capture(model, batch):
        model.train_step(batch)
    model = _model()
    for b in _batches(2):  # the pools full: from now on each image is a coin toss on the host
        model.train_step(b)
    with pytest.raises(CaptureViolation, match="host RNG draw"), strict_capture(model, batch):
        model.train_step(batch)  # the pools draw from their CPU generators inside


def test_the_strict_capture_refuses_what_a_capture_cannot_hold_and_allows_device_work():
    inside = torch.rand(2)  # made before the region: a host tensor, as far as the step knows
    device_tensor = torch.zeros(2)
    refused = {
        "host read": lambda: device_tensor.sum().item(),
        "host RNG draw": lambda: torch.randint(0, 3, (1,), generator=torch.Generator()),
        "new tensor from host data": lambda: torch.tensor([1.0]),
        "without a device": lambda: torch.zeros(3),
        "host-to-device copy": lambda: device_tensor.copy_(inside),
    }
    for what, call in refused.items():
        with pytest.raises(CaptureViolation, match=what), strict_capture(batch={"x": device_tensor}):
            call()
    with strict_capture(batch={"x": device_tensor}):  # device work: all allowed
        y = torch.rand_like(device_tensor) + torch.arange(2, device=device_tensor.device)
        y = y.to(torch.float64).to(device_tensor)  # a dtype change, then a tensor made inside
        device_tensor.copy_(y.float())
        torch.nn.functional.dropout(y, 0.5)


def test_each_kind_of_step_is_warmed_up_before_its_capture_also_resumed_mid_cycle():
    """--d-steps 3 resumed at step 1 meets two D-only steps first: the G kind must still get its
    own warm-up (cuDNN benchmarks, CUT's patch draws) before it is captured."""
    model = _model(d_steps=3)
    model.step_count = 1
    graph = StepGraph(model, capture=False, warmup=1, forbid_host_reads=True)
    for batch in _batches(7):
        graph.step(batch)
    for kind in (True, False):
        seen = [event for event, g in graph.events if g is kind]
        assert seen[:2] == ["warmup", "capture"], (kind, graph.events)
    assert graph.captures == 2


def test_diffaugment_draws_its_plan_before_the_region_a_capture_records():
    """The dry run follows the capture's path: warm-up, then the plan drawn, then the region a
    capture records run under the strict stand-in. DiffAugment drawing inside (its plan drawn
    after the capture) would be a host RNG draw there; and the draws are the ordinary step's."""
    cfg = dict(diffaug="color,translation,cutout")
    ordinary, planned = _model(**cfg), _model(**cfg)
    ordinary.precision.cache_enabled = False
    graph = StepGraph(planned, capture=False, warmup=1, forbid_host_reads=True)
    for batch in _batches(4):
        expected, got = ordinary.train_step(batch), graph.step(batch)
        assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert graph.captures == 1
    assert torch.equal(ordinary.diffaug.rng.get_state(), planned.diffaug.rng.get_state())
    _assert_same_state(ordinary, planned)


def test_reset_returns_the_pools_to_lists_and_warms_up_again():
    model = _model()
    graph = StepGraph(model, capture=False, warmup=1)
    for batch in _batches(3):
        graph.step(batch)
    assert model.pools["A"].buffer is not None and model.ema_weight is not None
    # planned steps, the capture's warm-up included, run without autocast's weight-cast cache, as a
    # capture must (torch.compile guards on it: a change would recompile inside the capture)
    assert model.precision.cache_enabled is False
    graph.reset()
    assert model.pools["A"].buffer is None and len(model.pools["A"]) == 3 and model.ema_weight is None
    assert model.precision.cache_enabled is True


def test_a_smaller_batch_before_the_first_full_one_is_planned_for_full_ones():
    """A run resumed (or rolled back) just before an epoch's smaller last batch: the pools' plans
    (and on CUDA the graphs' inputs) are sized for the full batches that follow."""
    ordinary, planned = _model(), _model()
    ordinary.precision.cache_enabled = False
    graph = StepGraph(planned, capture=False, forbid_host_reads=True)
    graph.batch_size = 2
    for i, batch in enumerate([*_batches(1, batch_size=1), *_batches(4)]):
        expected, got = ordinary.train_step(batch), graph.step(batch)
        assert all(torch.equal(expected[k], got[k]) for k in expected), i
        assert planned.pools["A"].buffer is not None
    assert len(planned.pools["A"].plan) == 2
    _assert_same_state(ordinary, planned)


def test_where_the_step_graph_cannot_run_it_says_why():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    model = _model()
    assert "CUDA" in step_graph.unsupported(model, cpu, "fp32", 1, True)
    assert "fp16" in step_graph.unsupported(model, cuda, "fp16", 1, True)
    assert "torchrun" in step_graph.unsupported(model, cuda, "bf16", 2, True)
    assert "varying size" in step_graph.unsupported(model, cuda, "bf16", 1, False)
    assert step_graph.unsupported(model, cuda, "bf16", 1, True) is None
    assert step_graph.unsupported(_model(diffaug="color", spectral_norm=True, r1_gamma=0.1), cuda, "bf16", 1,
                                  True) is None
    assert step_graph.unsupported(_model(d_steps=2), cuda, "bf16", 1, True) is None
    assert step_graph.unsupported(MnistGAN(MnistGANConfig()), cuda, "bf16", 1, True) is None
    assert step_graph.unsupported(_cut("fastcut"), cuda, "bf16", 1, True) is None


def test_the_step_graph_decides_how_the_networks_are_compiled(monkeypatch):
    """Auto compilation is off (the step is one graph already); an explicit --compile keeps
    inductor's kernels without its own CUDA graphs, which cannot run inside a capture."""
    monkeypatch.setenv("CYCLEGAN_STEP_GRAPH_DRY", "1")
    cpu = torch.device("cpu")
    auto = FastPath("fp32", True, "reduce-overhead", "auto")

    def setup(compile_asked, fast_path=auto):
        return step_graph.setup(_model(), True, compile_asked, fast_path, cpu, 1, True)

    graph, path = setup(None)
    assert (path.compile, path.compile_mode, path.step_graph) == (False, None, "dry")
    assert graph.forbid_host_reads  # the dry run checks every planned step
    graph, path = setup(True)
    assert (path.compile, path.compile_mode) == (True, "default")
    # dynamo guards on the torch function mode stack: the check would recompile each network
    assert not graph.forbid_host_reads
    assert setup(True, FastPath("fp32", True, "max-autotune", ""))[1].compile_mode == "max-autotune-no-cudagraphs"
    assert setup(None)[1].why.endswith("--step-graph")
    assert setup(False, FastPath("fp32", False, None, "as given"))[0] is not None


# -- the training loop ------------------------------------------------------------------------


def test_on_a_machine_without_cuda_the_run_says_it_goes_on_without(dataroot, tmp_path):  # noqa: F811
    r = cli("train", "--dataroot", str(dataroot), "--runs-dir", str(tmp_path), "--name", "t", "--size", "32",
            "--netG", "resnet_6blocks", "--ngf", "4", "--ndf", "4", "--max-iters", "1", "--num-workers", "0",
            "--device", "cpu", "--step-graph", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "--step-graph not used: it needs CUDA (the device is cpu)" in r.stderr
    assert "whole-step" not in r.stderr


def test_a_dry_run_of_the_loop_resumes_bit_identically(dataroot, tmp_path, monkeypatch):  # noqa: F811
    """CYCLEGAN_STEP_GRAPH_DRY: the planned step in the real loop (pools in buffers across a
    checkpoint, an epoch end's new learning rate), every step checked for host reads."""
    monkeypatch.setenv("CYCLEGAN_STEP_GRAPH_DRY", "1")
    settings = dict(save_every=0, step_graph=True, pool_size=3, ema_decay=0.99)
    straight = run_training(tiny_run(dataroot, tmp_path / "straight", max_iters=7, **settings))
    run_training(tiny_run(dataroot, tmp_path / "resumed", max_iters=3, **settings))
    resumed = run_training(tiny_run(dataroot, tmp_path / "resumed", max_iters=7, **settings), resume=True)
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert torch.equal(a["extra"]["pools"]["B"]["images"], b["extra"]["pools"]["B"]["images"])
    assert a["counters"] == b["counters"] and a["counters"]["epoch"] == 1  # crossed an epoch end
    groups = [g for opt in a["optimizers"].values() for g in opt["param_groups"]]
    assert all(g["fused"] and not g["capturable"] for g in groups)  # an ordinary optimizer state
    config = (tmp_path / "straight" / "t" / "config.yaml").read_text()
    assert "step_graph: dry" in config


@pytest.mark.parametrize("stop", [2, 4])
def test_a_dry_run_of_the_mnist_gan_resumes_bit_identically(stop, tmp_path, monkeypatch):
    """`mnist train --step-graph` as a dry run: WGAN-GP with 2 D steps per G step (two kinds of
    step), 10 images in batches of 4 (a smaller last batch every epoch), stopped and resumed: at
    iteration 2 the resumed run's first batch is the smaller one."""
    from test_mnist import _tiny_run, write_mnist_files

    monkeypatch.setenv("CYCLEGAN_STEP_GRAPH_DRY", "1")
    data = write_mnist_files(tmp_path / "d", n_train=10, n_test=4)
    straight = run_training(_tiny_run(data, tmp_path / "a", max_iters=7, step_graph=True))
    run_training(_tiny_run(data, tmp_path / "b", max_iters=stop, step_graph=True))
    resumed = run_training(_tiny_run(data, tmp_path / "b", max_iters=7, step_graph=True), resume=True)
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert a["counters"] == b["counters"] and a["counters"]["epoch"] == 2
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert torch.equal(a["extra"]["rng"], b["extra"]["rng"])
    assert "step_graph: dry" in (tmp_path / "a" / "r" / "config.yaml").read_text()


def test_the_bench_times_the_step_graph_or_says_why_not(tmp_path, monkeypatch):
    common = ["bench", "--mode", "train", "--size", "32", "--netG", "resnet_6blocks", "--ngf", "4", "--ndf", "4",
              "--precision", "fp32", "--channels-last", "off", "--warmup", "1", "--iters", "2", "--repeats", "1",
              "--device", "cpu", "--step-graph", "--json", str(tmp_path / "b.json")]
    r = cli(*common, cwd=tmp_path)
    assert "error: RuntimeError: --step-graph: it needs CUDA (the device is cpu)" in r.stdout, r.stdout + r.stderr
    monkeypatch.setenv("CYCLEGAN_STEP_GRAPH_DRY", "1")  # the planned step, through the bench's train rows
    r = cli(*common, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    row = json.loads((tmp_path / "b.json").read_text())["rows"][0]
    assert row["error"] is None and row["step_graph"] is True and row["warmup_iters"] >= step_graph.WARMUP_STEPS + 2


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_a_nan_roll_back_starts_the_step_graph_over(device, dataroot, tmp_path, monkeypatch, caplog):  # noqa: F811
    """The roll-back reloads the optimizers' state (new tensors): the step graph resets (pools back
    to lists, warm-up and capture again) and training goes on. On the CPU as a dry run."""
    if device == "cpu":
        monkeypatch.setenv("CYCLEGAN_STEP_GRAPH_DRY", "1")
    _poison_generator_loss(monkeypatch, {3})  # on CUDA, call 3 is the last warm-up step
    cfg = tiny_run(dataroot, tmp_path, max_iters=8, save_every=2, nan_retries=1, step_graph=True, device=device,
                   pool_size=3)
    with caplog.at_level("WARNING", logger="cyclegan.train"):
        state = load_checkpoint(run_training(cfg))
    assert "loss cycle_A became nan at iteration 3: roll-back 1 of 1 to iteration 2" in caplog.text
    assert "--step-graph" not in caplog.text  # neither refused nor failed
    assert state["counters"]["iteration"] == 8
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert len(state["extra"]["pools"]["A"]["images"]) == 3


# -- CUDA -------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_replays_of_the_captured_step_follow_the_planned_step(objective, monkeypatch):
    precision, cfg = OBJECTIVES[objective]
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)  # the same kernels on both sides
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    tol = 2e-2 if precision == "bf16" else 2e-3
    eager, replayed = _model("cuda", precision, **cfg), _model("cuda", precision, **cfg)
    reference = StepGraph(eager, capture=False, warmup=2)
    graph = StepGraph(replayed, capture=True, warmup=2)
    batches = [*_batches(9, device="cuda"), *_batches(1, batch_size=1, device="cuda")]  # and a smaller last one
    for i, batch in enumerate(batches):
        torch.manual_seed(i)  # the gradient penalty's draws (a replay reads the generator's state)
        expected = reference.step(batch)
        torch.manual_seed(i)
        got = graph.step(batch)
        for k in expected:
            torch.testing.assert_close(got[k], expected[k], rtol=tol, atol=tol, msg=f"{k} at step {i}")
        if i == 5:  # an epoch end's new learning rate: captured again
            for model in (eager, replayed):
                for opt in model.optimizers.values():
                    opt.param_groups[0]["lr"] *= 0.5
    kinds = 2 if cfg.get("d_steps", 1) > 1 else 1  # D-only steps and D + G steps
    assert graph.failed is None and graph.captures == 2 * kinds  # and again at the new learning rate
    _assert_same_state(eager, replayed, exact=False)


@pytest.mark.gpu
@pytest.mark.parametrize("objective", list(MNIST_OBJECTIVES))
def test_replays_of_the_mnist_gans_steps_follow_its_planned_steps(objective, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    eager, replayed = _mnist("cuda", **MNIST_OBJECTIVES[objective]), _mnist("cuda", **MNIST_OBJECTIVES[objective])
    reference, graph = StepGraph(eager, capture=False, warmup=2), StepGraph(replayed, capture=True, warmup=2)
    for i, batch in enumerate(_mnist_batches(12, device="cuda")):
        expected, got = reference.step(batch), graph.step(batch)
        for k in expected:
            torch.testing.assert_close(got[k], expected[k], rtol=2e-3, atol=2e-3, msg=f"{k} at step {i}")
    kinds = 2 if objective == "wgangp" else 1  # D-only steps and D + G steps
    assert graph.failed is None and graph.captures == kinds
    for (name, x), (_, y) in zip(eager.state_dict().items(), replayed.state_dict().items()):
        torch.testing.assert_close(x, y, rtol=1e-3, atol=2e-3, msg=name)


@pytest.mark.gpu
@pytest.mark.parametrize("objective", list(CUT_OBJECTIVES))
def test_replays_of_cuts_steps_follow_its_planned_steps(objective, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    mode = "fastcut" if objective == "fastcut" else "cut"
    eager, replayed = _cut(mode, "cuda", **CUT_OBJECTIVES[objective]), _cut(mode, "cuda", **CUT_OBJECTIVES[objective])
    reference, graph = StepGraph(eager, capture=False, warmup=2), StepGraph(replayed, capture=True, warmup=2)
    for i, batch in enumerate(_batches(10, device="cuda")):
        expected, got = reference.step(batch), graph.step(batch)
        for k in expected:
            torch.testing.assert_close(got[k], expected[k], rtol=2e-3, atol=2e-3, msg=f"{k} at step {i}")
    assert graph.failed is None and graph.captures == (2 if objective == "cut-d-steps" else 1)
    for (name, x), (_, y) in zip(eager.state_dict().items(), replayed.state_dict().items()):
        torch.testing.assert_close(x, y, rtol=1e-3, atol=2e-3, msg=name)


@pytest.mark.gpu
def test_a_capture_that_fails_goes_on_with_the_ordinary_step(monkeypatch, caplog):
    """A step that reads a value on the host cannot be captured: one line, then ordinary steps."""
    original = CycleGAN.generator_loss

    def reads_on_the_host(self, batch, out):
        loss, logs = original(self, batch, out)
        if torch.cuda.is_current_stream_capturing():
            loss.item()  # not permitted while capturing
        return loss, logs

    monkeypatch.setattr(CycleGAN, "generator_loss", reads_on_the_host)
    model = _model("cuda")
    graph = StepGraph(model, capture=True, warmup=2)
    with caplog.at_level("WARNING", logger="cyclegan.train"):
        losses = [graph.step(batch) for batch in _batches(6, device="cuda")]
    assert graph.failed and graph.captures == 0
    assert "--step-graph: capturing the step failed" in caplog.text
    assert model.step_count == 6 and model.pools["A"].buffer is None
    # torch.cuda.graph's failure path (2.9-2.14) left the capture stream current: not here
    assert torch.cuda.current_stream() == torch.cuda.default_stream()
    assert all(torch.isfinite(v).all() for step in losses for v in step.values())


@pytest.mark.gpu
def test_a_cuda_run_with_the_step_graph_trains_saves_and_resumes(dataroot, tmp_path):  # noqa: F811
    settings = dict(device="cuda", precision="bf16", step_graph=True, save_every=0)
    run_training(tiny_run(dataroot, tmp_path, max_iters=6, **settings))
    config = yaml.safe_load((tmp_path / "t" / "config.yaml").read_text())
    assert config["fast_path"]["step_graph"] == "capture"
    # written at the end of the run: graphs were captured and replayed, nothing fell back
    ran = config["ran"]
    assert ran["step_graph_captures"] >= 1 and ran["step_graph_replays"] >= 1
    assert ran["step_graph_failed"] is None and "fell_back" not in ran
    ckpt = run_training(tiny_run(dataroot, tmp_path, max_iters=12, **settings), resume=True)
    state = load_checkpoint(ckpt)
    assert state["counters"]["iteration"] == 12
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
