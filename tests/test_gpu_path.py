"""The CUDA path made right where it cannot run (issue 27), checked on the CPU: what a GPU run
would hit, reproduced with the same code on the CPU wherever torch allows it.

- Compiled code has no double backward (aot_autograd): a gradient penalty through a compiled
  discriminator fails, so the discriminators of such objectives stay eager.
- Any failure inside a compiled or captured step in the first steps goes on eagerly from the
  same state: one line, no traceback, no lost iteration, the same weights as an eager run.
- ``--precision/--compile auto`` on CUDA choose only what a GPU run has shown (bf16 eager), and
  bf16 only where it is native.
- Resuming with fewer GPUs, ``scale_width`` shapes, fp16's scaler without a host sync.
"""

from __future__ import annotations

import logging

import pytest
import torch
import yaml

from cyclegan.core import fastpath
from cyclegan.core.checkpoint import load_checkpoint
from cyclegan.data.augment_config import AugmentConfig
from cyclegan.data.unpaired import UnpairedImageDataset
from cyclegan.models.cyclegan import CycleGAN, CycleGANConfig
from cyclegan.models.gan import GANModel, Precision
from cyclegan.models.losses import gradient_penalty
from cyclegan.models.mnist import MnistGAN, MnistGANConfig
from cyclegan.training.config import with_optimizers
from cyclegan.training.run import run as run_training
from cyclegan.training.runtime import restore_cuda_rng

from test_mnist import _tiny_run as mnist_run, write_mnist_files
from test_train import dataroot, tiny_run  # noqa: F401  (fixture)


@pytest.fixture(autouse=True)
def one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture
def aot_eager(monkeypatch):
    """The training loop compiles with aot_eager: aot_autograd's tracing and its limits
    (no double backward), without inductor's minutes of C++ compilation on a CPU."""
    monkeypatch.setenv("CYCLEGAN_COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


# -- double backward --------------------------------------------------------------------------


def test_a_gradient_penalty_through_a_compiled_discriminator_fails_so_it_stays_eager(aot_eager):
    """Prediction 1, confirmed: WGAN-GP (and R1) differentiate D's gradient, which compiled code
    cannot. compile_networks leaves D eager for such objectives, and the step then works."""
    torch.manual_seed(0)
    model = MnistGAN(MnistGANConfig(gan_mode="wgangp", ngf=4, ndf=4, z_dim=8))
    D = model.discriminators["D"]
    compiled = torch.compile(D, backend="aot_eager")
    real, fake = torch.rand(4, 1, 28, 28) * 2 - 1, torch.rand(4, 1, 28, 28) * 2 - 1
    with pytest.raises(Exception, match="double backward|create_graph"):  # torch 2.14 | 2.9
        gradient_penalty(compiled, real, fake).backward()

    model = with_optimizers(MnistGAN(MnistGANConfig(gan_mode="wgangp", ngf=4, ndf=4, z_dim=8)))
    assert model.needs_double_backward()
    assert model.compile_networks(backend="aot_eager") == ["D"]
    losses = model.train_step({"image": real})
    assert torch.isfinite(losses["gp"])
    assert not with_optimizers(CycleGAN(CycleGANConfig(netG="resnet_6blocks", ngf=4, ndf=4))).needs_double_backward()
    assert CycleGAN(CycleGANConfig(netG="resnet_6blocks", ngf=4, ndf=4, r1_gamma=0.1)).needs_double_backward()


def test_the_issue_s_wgangp_run_with_compile_trains(tmp_path, aot_eager, caplog):
    """`cyclegan mnist train --gan-mode wgangp --compile` died at the first step; now G is
    compiled, D stays eager (said once), and the run ends normally."""
    data = write_mnist_files(tmp_path / "d", n_train=8, n_test=4)
    with caplog.at_level(logging.INFO, logger="cyclegan.train"):
        ckpt = run_training(mnist_run(data, tmp_path / "r", max_iters=3, compile=True, device="cpu"))
    assert load_checkpoint(ckpt)["counters"]["iteration"] == 3
    assert "D stay eager" in caplog.text
    assert "going on eagerly" not in caplog.text  # nothing failed


# -- the guard: a failed fast step goes on eagerly from the same state --------------------------


def _weights(ckpt) -> dict:
    return load_checkpoint(ckpt)["model"]


@pytest.mark.parametrize("step_graph", [False, True], ids=["compiled", "step-graph-dry-run"])
def test_a_failure_inside_the_fast_step_goes_on_eagerly_from_the_same_state(dataroot, tmp_path, aot_eager,  # noqa: F811
                                                                             monkeypatch, caplog, step_graph):
    """A real failure inside compiled code (the double backward, put back by compiling the
    discriminators of an R1 objective) in step 1, after G's update already ran: the run says so
    in one line, restores the state from before the step, and runs it again eagerly: its
    weights equal an eager run's, iteration for iteration."""
    if step_graph:
        monkeypatch.setenv("CYCLEGAN_STEP_GRAPH_DRY", "1")
    settings = dict(r1_gamma=0.5, max_iters=3, save_every=0, precision="fp32", step_graph=step_graph)
    eager = run_training(tiny_run(dataroot, tmp_path / "eager", compile=False, **settings))

    monkeypatch.setattr(GANModel, "needs_double_backward", lambda self: False)  # the trap, back in
    with caplog.at_level(logging.WARNING, logger="cyclegan.train"):
        fast = run_training(tiny_run(dataroot, tmp_path / "fast", compile=True, **settings))
    warnings = [r for r in caplog.records if "going on eagerly" in r.getMessage()]
    assert len(warnings) == 1 and "at iteration 1" in warnings[0].getMessage()
    # torch 2.14 says "double backward", 2.9 "donated buffers ... create_graph=False": the guard
    # matches no message, it catches whatever the compiled step raised
    assert "RuntimeError" in warnings[0].getMessage() and warnings[0].exc_info is None
    assert "Traceback" not in caplog.text
    assert load_checkpoint(fast)["counters"]["iteration"] == 3
    for (name, a), (_, b) in zip(_weights(eager).items(), _weights(fast).items()):
        assert torch.equal(a, b), name  # the same process and kernels: eager from the same state
    recorded = yaml.safe_load((tmp_path / "fast" / "t" / "config.yaml").read_text())["fast_path"]
    assert recorded["compile"] is False and recorded["step_graph"] is None
    assert "eager from then on" in recorded["why"]


def test_an_error_of_the_model_itself_still_stops_the_run(dataroot, tmp_path, aot_eager, monkeypatch):  # noqa: F811
    """The guard retries eagerly once: an exception the eager step raises too is the model's."""
    def broken(self, batch, out):
        raise ValueError("the model's own bug")

    monkeypatch.setattr(CycleGAN, "discriminator_loss", broken)
    with pytest.raises(ValueError, match="own bug"):
        run_training(tiny_run(dataroot, tmp_path / "r", compile=True, max_iters=2, precision="fp32"))


# -- what auto chooses on CUDA ------------------------------------------------------------------


def _gpu(monkeypatch, capability):
    """fastpath's view of a CUDA device of ``capability`` (no GPU here: torch's answers stubbed)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.version, "hip", None)


def test_on_cuda_auto_is_bf16_eager_until_a_gpu_run_proves_more(monkeypatch):
    _gpu(monkeypatch, (9, 0))
    path = fastpath.choose("cuda", "train", signature="cyclegan/hinge")
    assert (path.precision, path.compile, path.step_graph) == ("bf16", False, None)
    assert "tests/gpu/accept.sh" in path.why
    monkeypatch.setitem(fastpath.GPU_PROVEN, ("train", "cyclegan/hinge"), ("reduce-overhead", "H100, a test"))
    path = fastpath.choose("cuda", "train", signature="cyclegan/hinge")
    assert (path.compile, path.compile_mode) == (True, "reduce-overhead") and "H100, a test" in path.why
    assert not fastpath.choose("cuda", "train", signature="cut/hinge").compile  # another objective: not proven
    assert not fastpath.choose("cuda", "train", static_shapes=False, signature="cyclegan/hinge").compile
    assert fastpath.choose("cuda", "train", "fp32", compile=True).compile  # explicit flags are kept


def test_a_gpu_that_emulates_bf16_gets_fp32(monkeypatch):
    _gpu(monkeypatch, (7, 5))  # a T4: torch.cuda.is_bf16_supported() says True (emulation)
    path = fastpath.choose("cuda", "train")
    assert path.precision == "fp32" and "without native bf16" in path.why
    _gpu(monkeypatch, (8, 0))
    assert fastpath.choose("cuda", "translate").precision == "bf16"


def test_the_signature_names_what_decides_a_fast_path():
    small = dict(netG="resnet_6blocks", ngf=4, ndf=4)
    assert CycleGAN(CycleGANConfig(**small)).fast_path_signature() == "cyclegan/hinge"
    sig = CycleGAN(CycleGANConfig(**small, d_steps=2, pool_size=0, diffaug="color", r1_gamma=1.0)).fast_path_signature()
    assert sig == "cyclegan/hinge/d_steps=2/r1/diffaug/pool=0"
    assert MnistGAN(MnistGANConfig(gan_mode="wgangp")).fast_path_signature() == "mnistgan/wgangp"


# -- resume, shapes, fp16 ------------------------------------------------------------------------


def test_cuda_random_states_restore_onto_fewer_or_more_gpus():
    """A run saved with 4 visible GPUs resumes on 1 (torch's set_rng_state_all: IndexError)."""
    seen = []
    restore_cuda_rng([torch.tensor([i]) for i in range(4)], 1, lambda state, index: seen.append((int(state), index)))
    assert seen == [(0, 0)]
    seen.clear()
    restore_cuda_rng([torch.tensor([7])], 2, lambda state, index: seen.append((int(state), index)))
    assert seen == [(7, 0)]


@pytest.mark.parametrize("preprocess,static", [("resize_and_crop", True), ("crop", True),
                                               ("scale_width_and_crop", True), ("scale_width", False),
                                               ("none", False)])
def test_only_cropping_preprocessing_counts_as_static_shapes(dataroot, preprocess, static):  # noqa: F811
    cfg = AugmentConfig(preprocess=preprocess, load_size=36, crop_size=32)
    assert UnpairedImageDataset(dataroot / "trainA", dataroot / "trainB", cfg).static_shapes is static


def test_fp16_s_scaler_hands_fused_adam_its_flags_without_a_host_read():
    """Adam made fused after it was built: GradScaler must know (else it reads found_inf on the
    host every step, a sync), and the fused kernel then unscales and skips by itself."""
    torch.manual_seed(0)
    model = with_optimizers(CycleGAN(CycleGANConfig(netG="resnet_6blocks", ngf=4, ndf=4)))
    assert model.use_fused_optimizers()
    assert all(opt._step_supports_amp_scaling for opt in model.optimizers.values())
    model.precision = Precision("cpu", "fp16")
    before = {k: v.clone() for k, v in model.generators.state_dict().items()}
    batch = {k: torch.rand(1, 3, 32, 32) * 2 - 1 for k in "AB"}
    for _ in range(20):  # the scale starts at 2^16: the first steps overflow and are skipped
        losses = model.train_step(batch)
        if any(not torch.equal(before[k], v) for k, v in model.generators.state_dict().items()):
            break
    assert all(torch.isfinite(v) for v in losses.values())
    assert any(not torch.equal(before[k], v) for k, v in model.generators.state_dict().items())
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())
