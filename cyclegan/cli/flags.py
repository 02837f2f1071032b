"""Flag tables shared by the ``cyclegan train`` and ``cyclegan mnist train`` commands: each row maps
a flag onto a field of the run config tree (cyclegan.training.config), whose default for the
model kind (cyclegan.training.kinds) is the flag's default."""

from __future__ import annotations

import argparse
from cyclegan.core.argtypes import nonneg_float, nonneg_int, positive_int, shrink_factor
from cyclegan.core.fastpath import COMPILE_MODES, PRECISION_CHOICES
from cyclegan.models.gan import LR_POLICIES
from cyclegan.models.init import INIT_TYPES
from cyclegan.models.losses import LOSSES


# (flag, dataclass field, argparse kwargs). Defaults are None so we know what the user gave.
#: the training loop's flags (LoopConfig), shared by `train` and `mnist train`
LOOP_FLAGS = [
    ("--name", "name", dict(help="run name; the run lives in RUNS_DIR/NAME")),
    ("--runs-dir", "runs_dir", dict(help="where runs are kept")),
    ("--batch-size", "batch_size", dict(type=positive_int, help="images per step per process; under torchrun "
                                                                 "the global batch is this x world size")),
    ("--num-workers", "num_workers", dict(type=int, help="DataLoader workers; -1 = one per spare core, max 4")),
    ("--device", "device", dict(help="auto, cpu, cuda, cuda:N or mps")),
    ("--precision", "precision", dict(choices=PRECISION_CHOICES, help="auto: bf16 on CUDA, on CPUs with AMX and on "
                                      "AMD CPUs with avx512_bf16 (where it measured faster), else fp32 (the run "
                                      "header says which); fp32 is the reference "
                                      "arithmetic; bf16/fp16 autocast (fp16 with grad scaling)")),
    ("--seed", "seed", dict(type=int, help="seed for init, data order, augmentation, pools")),
    ("--max-iters", "max_iters", dict(type=positive_int, help="stop after this many iterations")),
    ("--save-every", "save_every", dict(type=nonneg_int, help="iterations between checkpoints (0: off)")),
    ("--save-every-epochs", "save_every_epochs", dict(type=nonneg_int, help="also a checkpoint at every N-th epoch "
                                                                          "end (0: never; the run's end always saves)")),
    ("--keep", "keep", dict(type=nonneg_int, help="numbered checkpoints to keep besides latest.pt")),
    ("--preview-every", "preview_every", dict(type=nonneg_int, help="iterations between preview grids (0: off)")),
    ("--log-every", "log_every", dict(type=positive_int, help="iterations between loss logs")),
    ("--compile-mode", "compile_mode", dict(choices=COMPILE_MODES, help="with --compile: inductor mode; "
                                             "reduce-overhead replays CUDA graphs (fewer launches at batch 1)")),
    ("--preview-count", "preview_count", dict(type=positive_int, help="image pairs in each preview grid")),
    ("--nan-retries", "nan_retries", dict(type=nonneg_int, help="on a NaN/inf loss, roll back to the last "
                                                                 "checkpoint and go on this many times (0: stop)")),
    ("--nan-lr-factor", "nan_lr_factor", dict(type=shrink_factor, help="learning rates x this at each roll-back")),
]
LOOP_SWITCHES = [
    ("--channels-last", "channels_last", True, "channels_last memory format"),
    ("--compile", "compile", True, "torch.compile the networks (a failure in the first steps goes on eagerly "
                                   "from the same state); default: auto, on CPUs with AMX for crops of 128 px "
                                   "and up; on CUDA not yet (unproven on a GPU with today's code: docs/gpu.md)"),
    ("--no-compile", "compile", False, "eager, even where auto would compile"),
    ("--step-graph", "step_graph", True, "capture the whole training step (both updates, EMA, image pools, noise) "
                                         "as a CUDA graph and replay it: no per-step launch overhead; CUDA only, "
                                         "not yet measured, so off by default (the run header says if it ran)"),
    ("--scale-lr", "scale_lr", True, "under torchrun: multiply learning rates by the world size "
                                     "(linear scaling rule; see docs/distributed.md)"),
]


#: the shared GAN base's flags (init, loss, D steps) and the run's optimisation and schedule, for both models
GAN_FLAGS = [
    ("--init-type", "init_type", dict(choices=INIT_TYPES, help="weight initialisation")),
    ("--init-gain", "init_gain", dict(type=nonneg_float, help="scale of the initialisation")),
    ("--gan-mode", "gan_mode", dict(choices=tuple(LOSSES), help="adversarial loss")),
    ("--gp-weight", "gp_weight", dict(type=nonneg_float, help="gradient penalty weight for wgangp")),
    ("--d-steps", "d_steps", dict(type=positive_int, help="discriminator steps per generator step")),
    ("--lr", "lr", dict(type=nonneg_float, help="Adam learning rate")),
    ("--lr-d", "lr_d", dict(type=nonneg_float, help="discriminator learning rate (two time-scale rule); "
                                                   "None: --lr")),
    ("--beta1", "beta1", dict(type=nonneg_float, help="Adam beta1")),
    ("--beta2", "beta2", dict(type=nonneg_float, help="Adam beta2")),
    ("--lr-policy", "lr_policy", dict(choices=LR_POLICIES, help="learning-rate schedule (per epoch)")),
    ("--n-epochs", "n_epochs", dict(type=nonneg_int, help="epochs at the initial learning rate")),
    ("--n-epochs-decay", "n_epochs_decay", dict(type=nonneg_int, help="epochs of linear decay to zero")),
    ("--lr-decay-iters", "lr_decay_iters", dict(type=positive_int, help="step policy: epochs per x0.1")),
]


def with_help(table: list, **helps: str) -> list:
    """A flag table with some help texts replaced (field=text)."""
    return [(flag, field, {**kw, "help": helps.get(field, kw["help"])}) for flag, field, kw in table]


def given_values(args: argparse.Namespace, prefix: str = "run") -> dict:
    """The settings given on the command line: flags whose ``dest`` is ``PREFIX.field`` and whose
    value is not None (every flag defaults to None, so what was not given stays out)."""
    return {k.split(".", 1)[1]: v for k, v in vars(args).items() if k.startswith(prefix + ".") and v is not None}


def add_flags(group, table: list, defaults: dict, prefix: str = "run") -> None:
    """``table``'s flags in ``group``, each with its default for the model kind shown once, in brackets."""
    for flag, field, kw in table:
        default = defaults.get(field)
        group.add_argument(flag, dest=f"{prefix}.{field}", default=None,
                           **{**kw, "help": kw["help"] + (f" [{default}]" if default is not None else "")})


def add_switches(group, table: list, prefix: str = "run") -> None:
    for flag, field, value, text in table:
        group.add_argument(flag, dest=f"{prefix}.{field}", action="store_const", const=value, default=None, help=text)
