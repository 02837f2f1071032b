"""The CUDA path: mixed precision, channels_last, fused Adam, compile, NCCL under torchrun, and
checkpoints moving between GPU and CPU. Skipped where there is no GPU (the CI machine); run on a
GPU machine with `python -m pytest -m gpu`."""

from __future__ import annotations

import subprocess

import pytest
import torch
import yaml

from cyclegan.core.checkpoint import load_checkpoint
from cyclegan.models.cyclegan import CycleGAN, CycleGANConfig
from cyclegan.models.gan import Precision
from cyclegan.training.config import with_optimizers
from cyclegan.training.run import run as run_training
from cyclegan.inference.translator import Translator
from cyclegan.inference.loading import load_generator

from test_distributed import TINY as TINY_FLAGS, env, torchrun_cmd
from test_train import dataroot, tiny_run  # noqa: F401  (fixture)

pytestmark = pytest.mark.gpu
SMALL = dict(netG="resnet_6blocks", ngf=8, ndf=8)


def _batch(size=64, device="cuda", memory_format=torch.contiguous_format):
    g = torch.Generator().manual_seed(0)
    return {k: (torch.rand(2, 3, size, size, generator=g) * 2 - 1).to(device).contiguous(memory_format=memory_format)
            for k in "AB"}


@pytest.fixture(autouse=True)
def no_tf32():
    """fp32 on the GPU as fp32: TF32 convolutions and matmuls (cuDNN's default) round to 10
    mantissa bits, and a comparison with the CPU at 1e-3 would test TF32's error, not ours."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _first_step_losses(device, precision="fp32", channels_last=False):
    torch.manual_seed(0)
    model = with_optimizers(CycleGAN(CycleGANConfig(**SMALL))).to(device)
    mf = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=mf)
    model.precision = Precision(torch.device(device).type, precision)
    return {k: float(v) for k, v in model.train_step(_batch(device=device, memory_format=mf)).items()}


@pytest.mark.parametrize("precision,channels_last,tol", [("fp32", False, 2e-3), ("fp32", True, 2e-3),
                                                         ("bf16", True, 5e-2), ("fp16", True, 2e-2)])
def test_cuda_step_follows_cpu_fp32(precision, channels_last, tol):
    cpu = _first_step_losses("cpu")
    gpu = _first_step_losses("cuda", precision, channels_last)
    for k, v in cpu.items():
        assert gpu[k] == pytest.approx(v, rel=tol, abs=tol), k


def test_fused_adam_and_cudnn_benchmark_in_training(dataroot, tmp_path):  # noqa: F811
    seen = []  # cuDNN's benchmark switch while the networks run (restored when fit() returns)
    hook = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda module, args: seen.append(torch.backends.cudnn.benchmark))
    before = torch.backends.cudnn.benchmark
    try:
        cfg = tiny_run(dataroot, tmp_path, max_iters=3, device="cuda", precision="bf16", channels_last=True)
        ckpt = run_training(cfg)
    finally:
        hook.remove()
    assert seen and all(seen)
    assert torch.backends.cudnn.benchmark == before
    state = load_checkpoint(ckpt)
    assert all(g["fused"] for opt in state["optimizers"].values() for g in opt["param_groups"])
    # a GPU run resumes on the CPU, with the CPU's fused Adam
    cfg = tiny_run(dataroot, tmp_path, max_iters=5, device="cpu")
    ckpt = run_training(cfg, resume=True)
    state = load_checkpoint(ckpt)
    assert state["counters"]["iteration"] == 5
    assert all(g["fused"] for opt in state["optimizers"].values() for g in opt["param_groups"])


def _ran(run_dir) -> dict:
    return yaml.safe_load((run_dir / "config.yaml").read_text())


def test_compile_trains_on_cuda(dataroot, tmp_path, caplog):  # noqa: F811
    cfg = tiny_run(dataroot, tmp_path, max_iters=3, device="cuda", compile=True, channels_last=True)
    with caplog.at_level("WARNING", logger="cyclegan.train"):
        state = load_checkpoint(run_training(cfg))
    assert state["counters"]["iteration"] == 3
    config = _ran(tmp_path / "t")  # compiled to the end: no fall-back to eager
    assert config["fast_path"]["compile"] is True and "fell_back" not in config.get("ran", {})
    assert "going on eagerly" not in caplog.text


def test_translation_on_cuda_matches_cpu(dataroot, tmp_path):  # noqa: F811
    cfg = tiny_run(dataroot, tmp_path, max_iters=2)
    run_training(cfg)
    run = tmp_path / "t"
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    cpu = Translator(load_generator(run, "AtoB"), device="cpu", precision="fp32").forward(x)
    for precision, tol in (("fp32", 1e-3), ("bf16", 5e-2)):
        gpu = Translator(load_generator(run, "AtoB"), device="cuda", precision=precision).forward(x.cuda())
        assert (gpu.float().cpu() - cpu).abs().max() < tol, precision


def test_torchrun_one_process_on_cuda(dataroot, tmp_path):  # noqa: F811
    """torchrun with one process: the launcher's environment on CUDA (no collective runs: one
    rank is a plain run; NCCL needs two GPUs, below)."""
    cmd = torchrun_cmd("train", "--dataroot", str(dataroot), "--name", "nccl", "--runs-dir", str(tmp_path),
                       "--max-iters", "3", "--device", "cuda", *TINY_FLAGS, nproc=1)
    r = subprocess.run(cmd, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert load_checkpoint(tmp_path / "nccl" / "checkpoints" / "latest.pt")["counters"]["iteration"] == 3


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL needs two GPUs (one rank per GPU)")
def test_torchrun_nccl_two_gpus(dataroot, tmp_path):  # noqa: F811
    cmd = torchrun_cmd("train", "--dataroot", str(dataroot), "--name", "nccl", "--runs-dir", str(tmp_path),
                       "--max-iters", "3", "--device", "cuda", *TINY_FLAGS, nproc=2)
    r = subprocess.run(cmd, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert load_checkpoint(tmp_path / "nccl" / "checkpoints" / "latest.pt")["counters"]["iteration"] == 3


@pytest.mark.parametrize("model", ["cyclegan", "cut", "mnist"])
def test_eager_and_step_graph_steps_make_no_host_sync(dataroot, tmp_path, model):  # noqa: F811
    """The step itself never waits for the GPU (issue 27, prediction 4): torch's sync debug mode
    raises on any synchronising call (a pageable copy, .item(), a host read) inside it."""
    from test_step_graph import _cut, _batches, _mnist, _mnist_batches, _model
    from cyclegan.training.step_graph import StepGraph

    net = {"cyclegan": lambda: _model("cuda", "bf16"), "cut": lambda: _cut("cut", "cuda"),
           "mnist": lambda: _mnist("cuda")}[model]()
    batches = _mnist_batches(8, device="cuda") if model == "mnist" else _batches(8, device="cuda")
    graph = StepGraph(net, capture=True, warmup=2)
    for i, batch in enumerate(batches):
        if i >= 3:  # after the warm-ups and the capture
            torch.cuda.set_sync_debug_mode("error")
        try:
            graph.step(batch)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert graph.failed is None and graph.replays >= 4


def test_cuda_graphs_through_the_training_loop(dataroot, tmp_path):  # noqa: F811
    """--compile --compile-mode reduce-overhead (CUDA graph replays) with previews, saves and resume."""
    cfg = tiny_run(dataroot, tmp_path, max_iters=4, device="cuda", compile=True,
                              compile_mode="reduce-overhead", precision="bf16", channels_last=True,
                              save_every=2)
    cfg.preview_every = 2
    ckpt = run_training(cfg)
    assert len(list((tmp_path / "t" / "previews").glob("*.png"))) == 3  # iterations 1, 2, 4
    state = load_checkpoint(ckpt)
    assert state["counters"]["iteration"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert "fell_back" not in _ran(tmp_path / "t").get("ran", {})
    cfg = tiny_run(dataroot, tmp_path, max_iters=6, device="cuda")
    ckpt = run_training(cfg, resume=True)
    assert load_checkpoint(ckpt)["counters"]["iteration"] == 6
