"""The run config tree (cyclegan/training/config.py, kinds.py, run.py): one resolution for the
command line and Python, optimizers built by the trainer from the ``optim`` and ``schedule``
sections, every kind trained by one ``run()``, and checkpoints of the flat format written before
the tree still resuming."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml

import cyclegan
from cyclegan.cli.main import build_parser
from cyclegan.cli.train import train_config
from cyclegan.core.checkpoint import load_checkpoint
from cyclegan.models.cyclegan import CycleGAN, CycleGANConfig
from cyclegan.training.config import ConfigError, OptimConfig, ScheduleConfig, with_optimizers
from cyclegan.training.kinds import KINDS, from_state, resolve

from test_train import cli, make_domain
from tiny_models import one_thread  # noqa: F401

COMPAT_RUN = Path(__file__).parent / "data" / "compat" / "run_train"


def _cli_config(*argv):
    return train_config(build_parser().parse_args(["train", "--dataroot", "d", *argv]))


def test_sections_hold_what_they_name():
    run = resolve("cyclegan", {"dataroot": "d", "lr": 1e-4, "n_epochs": 3, "size": 64, "batch_size": 2,
                               "lambda_A": 5.0})
    assert (run.optim.lr, run.schedule.n_epochs, run.data.size, run.loop.batch_size, run.model.lambda_A) == \
        (1e-4, 3, 64, 2, 5.0)
    assert not hasattr(run.model, "lr") and not hasattr(run.model, "n_epochs")  # the model is networks + objective
    assert run.schedule.total_epochs == 3 + 100
    with pytest.raises(ConfigError, match="not a setting of a cyclegan run: lambda_NCE") as e:
        resolve("cyclegan", {"lambda_NCE": 1.0})
    assert e.value.unknown == ["lambda_NCE"]
    with pytest.raises(ConfigError, match="beta1 must be in"):
        resolve("cyclegan", {"beta1": 1.5})


def test_the_command_line_and_python_resolve_alike():
    flags = _cli_config("--size", "64", "--lr", "1e-4", "--preset", "paper", "--ema", "0.99")
    python = resolve("cyclegan", {"dataroot": "d", "size": 64, "lr": 1e-4, "ema_decay": 0.99}, "paper")
    assert flags.to_dict() == python.to_dict()
    assert flags.model.netG == "resnet_6blocks"  # the <= 128 px rule lives in resolution, not in the CLI
    # WGAN-GP's published optimiser settings were a CLI-only default; now every caller gets them
    mnist = resolve("mnist", {"gan_mode": "wgangp"})
    assert (mnist.optim.lr, mnist.optim.beta1, mnist.optim.beta2, mnist.model.d_steps) == (1e-4, 0.0, 0.9, 5)
    assert resolve("mnist", {"gan_mode": "wgangp", "lr": 3e-4}).optim.lr == 3e-4
    assert (mnist.loop.name, mnist.loop.batch_size, mnist.schedule.n_epochs) == ("mnist", 64, 20)
    with pytest.raises(TypeError, match=r"unknown options \['learning_rate'\]"):
        cyclegan.train("d", learning_rate=1.0)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")  # no training step here
def test_the_trainer_builds_adam_and_schedules_from_the_sections():
    torch.manual_seed(0)
    model = CycleGAN(CycleGANConfig(netG="resnet_6blocks", ngf=4, ndf=4))
    assert model.optimizers == {}  # a model alone has no optimizers: the run's settings make them
    with_optimizers(model, OptimConfig(lr=1e-3, lr_d=3e-3, beta1=0.1), ScheduleConfig(n_epochs=1, n_epochs_decay=3))
    g, d = model.optimizers["G"], model.optimizers["D"]
    assert (g.param_groups[0]["lr"], d.param_groups[0]["lr"], g.param_groups[0]["betas"]) == (1e-3, 3e-3, (0.1, 0.999))
    model.step_schedulers()
    model.step_schedulers()  # epoch 2 of 1 + 3: (1 + 3 - 2) / (3 + 1) of the base rate
    assert g.param_groups[0]["lr"] == pytest.approx(1e-3 * 2 / 4)


def test_stored_config_reads_back(tmp_path):
    run = resolve("fastcut", {"dataroot": "d", "lr": 5e-4, "n_epochs": 2, "direction": "BtoA", "size": 64})
    stored = {"model_config": run.to_dict()["model"],
              "run_config": {k: v for k, v in run.to_dict().items() if k != "model"}}
    assert from_state(stored).to_dict() == run.to_dict()
    for kind in KINDS:  # every kind's defaults read back the same
        run = resolve(kind, {})
        state = {"model_config": run.to_dict()["model"], "run_config": {k: v for k, v in run.to_dict().items() if k != "model"}}
        assert from_state(state).to_dict() == run.to_dict(), kind


def test_a_checkpoint_of_the_flat_format_resumes(tmp_path):
    """tests/data/compat/run_train: 2 iterations written by commit d88e006, whose checkpoints kept
    learning rates and epochs inside a flat model config and the rest in a flat train config:
    ``cyclegan train --dataroot data --name run_train --size 16 --netG resnet_6blocks --ngf 2 --ndf 2
    --netD pixel --pool-size 2 --lr 3e-4 --lr-d 5e-4 --n-epochs 1 --n-epochs-decay 2 --max-iters 2
    --num-workers 0 --preview-every 0 --save-every 0 --keep 0 --precision fp32 --no-compile``."""
    old = from_state(load_checkpoint(COMPAT_RUN / "checkpoints" / "latest.pt"))
    assert old.kind == "cyclegan" and (old.optim.lr, old.optim.lr_d) == (3e-4, 5e-4)
    assert (old.schedule.n_epochs, old.schedule.n_epochs_decay, old.data.size, old.loop.name) == (1, 2, 16, "run_train")
    assert (old.model.ngf, old.model.pool_size, old.model.netD) == (2, 2, "pixel")

    shutil.copytree(COMPAT_RUN, tmp_path / "runs" / "run_train")
    make_domain(tmp_path / "data" / "trainA", 3, 0, size=(20, 20))
    make_domain(tmp_path / "data" / "trainB", 3, 1, size=(20, 20))
    # --lr is not a runtime setting: the run keeps its own, and says so
    r = cli("train", "--dataroot", "data", "--name", "run_train", "--resume", "--max-iters", "4", "--lr", "1e-2",
            "--num-workers", "0", "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "ignored on resume, the run keeps its stored settings: lr 0.01 (the run's: 0.0003)" in r.stderr and "stop at iteration 4" in r.stderr
    state = load_checkpoint(tmp_path / "runs" / "run_train" / "checkpoints" / "latest.pt")
    assert state["counters"]["iteration"] == 4
    assert state["run_config"]["optim"] == {"lr": 3e-4, "lr_d": 5e-4, "beta1": 0.5, "beta2": 0.999}
    # 3 images per epoch: iteration 4 is in the second epoch, at 2/3 of the rates (linear decay)
    assert state["optimizers"]["D"]["param_groups"][0]["lr"] == pytest.approx(5e-4 * 2 / 3)
    saved = yaml.safe_load((tmp_path / "runs" / "run_train" / "config.yaml").read_text())
    assert list(saved) == ["kind", "model", "optim", "schedule", "data", "loop", "fast_path"]
    assert saved["loop"]["max_iters"] == 4 and saved["data"]["size"] == 16


def test_one_run_trains_every_kind(tmp_path):
    """cyclegan.train(model=...) reaches each kind through the same run(): a CUT and an MNIST GAN."""
    make_domain(tmp_path / "data" / "trainA", 2, 0)
    make_domain(tmp_path / "data" / "trainB", 2, 1)
    common = dict(runs_dir=str(tmp_path / "runs"), max_iters=1, num_workers=0, preview_every=0, device="cpu",
                  precision="fp32", compile=False)
    ckpt = cyclegan.train(tmp_path / "data", model="cut", name="cut", size=32, ngf=4, ndf=4, num_patches=8,
                          netF_nc=4, **common)
    state = load_checkpoint(ckpt)
    assert state["run_config"]["kind"] == "cut" and any(k.startswith("heads.") for k in state["model"])
    assert len(state["optimizers"]["G"]["param_groups"]) == 2  # G's Adam also steps the PatchNCE heads

    from test_mnist import write_mnist_files

    idx = write_mnist_files(tmp_path / "idx", n_train=8, n_test=4)
    ckpt = cyclegan.train(model="mnist", idx_dir=str(idx), name="m", batch_size=4, ngf=4, ndf=4, z_dim=8,
                          eval_samples=0, **common)
    state = load_checkpoint(ckpt)
    assert state["run_config"]["kind"] == "mnist" and state["run_config"]["evaluate"]["eval_samples"] == 0
    assert (tmp_path / "runs" / "m" / "generators.safetensors").is_file()
