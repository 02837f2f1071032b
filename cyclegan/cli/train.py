"""``cyclegan train``, ``cyclegan export`` and ``cyclegan bench``: argparse only."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from cyclegan.cli.flags import GAN_FLAGS, LOOP_FLAGS, LOOP_SWITCHES, add_flags, add_switches, given_values
from cyclegan.core.argtypes import ema_decay, image_size, nonneg_float, nonneg_int, positive_float, positive_int
from cyclegan.data.augment_config import PREPROCESS_MODES
from cyclegan.data.resident import DATA_ON_DEVICE
from cyclegan.models.cut import MODES, build_model
from cyclegan.models.cyclegan import PRESETS
from cyclegan.models.pix2pix import PRESETS as PIX2PIX_PRESETS
from cyclegan.models.networks import DISCRIMINATORS, GENERATORS, NORM_LAYERS
from cyclegan.training.config import ConfigError, RunConfig
from cyclegan.training.kinds import KINDS, resolve


_TRAIN_FLAGS = [
    ("--dataroot", "dataroot", dict(help="folder with trainA/ and trainB/ (the original release's layout); "
                                         "pix2pix: train/ of aligned A|B files, or trainA/ + trainB/ paired by "
                                         "file name")),
    ("--domain-a", "domain_a", dict(help="folder of domain A images (instead of DATAROOT/trainA)")),
    ("--domain-b", "domain_b", dict(help="folder of domain B images (instead of DATAROOT/trainB)")),
    ("--size", "size", dict(type=image_size, help="crop size the networks train on (multiple of 4); "
                                              "<= 128 picks resnet_6blocks unless --netG is given")),
    ("--load-size", "load_size", dict(type=positive_int, help="resize before cropping (default size*286/256)")),
    ("--preprocess", "preprocess", dict(choices=PREPROCESS_MODES, help="how images become crops")),
    ("--data-on-device", "data_on_device", dict(choices=DATA_ON_DEVICE, help="decode the images once into "
                                                 "device memory and crop/flip them there (no per-step host work); "
                                                 "auto: on CUDA when they fit; preprocess modes that crop only")),
    *LOOP_FLAGS,
]
_TRAIN_SWITCHES = [
    ("--no-flip", "flip", False, "no random horizontal flips"),
    ("--serial-batches", "serial_batches", True, "pair A[i] with B[i] instead of a random B"),
    *LOOP_SWITCHES,
]
_MODEL_FLAGS = [
    ("--channels", "input_nc", dict(type=int, choices=(1, 3), help="1 for grayscale, 3 for RGB (both domains)")),
    ("--netG", "netG", dict(choices=tuple(GENERATORS), help="generator architecture")),
    ("--netD", "netD", dict(choices=tuple(DISCRIMINATORS), help="discriminator: basic = 70x70 PatchGAN")),
    ("--n-layers-D", "n_layers_D", dict(type=positive_int, help="layers of the n_layers discriminator")),
    ("--ngf", "ngf", dict(type=positive_int, help="generator filters in the first conv")),
    ("--ndf", "ndf", dict(type=positive_int, help="discriminator filters in the first conv")),
    ("--norm", "norm", dict(choices=NORM_LAYERS, help="normalisation layers")),
    ("--lambda-A", "lambda_A", dict(type=nonneg_float, help="cycle loss weight A->B->A")),
    ("--lambda-B", "lambda_B", dict(type=nonneg_float, help="cycle loss weight B->A->B")),
    ("--lambda-identity", "lambda_identity", dict(type=nonneg_float, help="identity loss weight (x lambda); 0 disables")),
    ("--pool-size", "pool_size", dict(type=nonneg_int, help="image history pool size; 0 disables")),
    *GAN_FLAGS,
    ("--ema", "ema_decay", dict(type=ema_decay, help="decay of the generators' weight average used for "
                                                     "inference and export, e.g. 0.999; 0 = off")),
    ("--diffaug", "diffaug", dict(help='DiffAugment of every discriminator input: comma-separated subset '
                                       'of color,translation,cutout; "" = off')),
    ("--r1-gamma", "r1_gamma", dict(type=nonneg_float, help="R1 penalty weight on real images; 0 = off")),
]

#: CUT / FastCUT / pix2pix only (cyclegan.models.cut.CUTConfig, cyclegan.models.pix2pix.Pix2PixConfig)
_CUT_FLAGS = [
    ("--direction", "direction", dict(choices=("AtoB", "BtoA"), help="cut/fastcut/pix2pix: the one direction the "
                                                                      "model learns (one model per direction) [AtoB]")),
    ("--lambda-GAN", "lambda_GAN", dict(type=nonneg_float, help="cut/fastcut/pix2pix: adversarial loss weight [1]")),
    ("--lambda-L1", "lambda_L1", dict(type=nonneg_float, help="pix2pix: weight of the L1 loss against the "
                                                                "ground truth [100]")),
    ("--output-channels", "output_nc", dict(type=int, choices=(1, 3), help="pix2pix: channels of B when they "
                                                                           "differ from --channels (A's)")),
    ("--lambda-NCE", "lambda_NCE", dict(type=nonneg_float, help="cut/fastcut: PatchNCE weight [cut 1, fastcut 10]")),
    ("--num-patches", "num_patches", dict(type=positive_int, help="cut/fastcut: patches per PatchNCE layer [256]")),
    ("--nce-T", "nce_T", dict(type=positive_float, help="cut/fastcut: PatchNCE temperature [0.07]")),
    ("--netF-nc", "netF_nc", dict(type=positive_int, help="cut/fastcut: width of the MLP projection heads [256]")),
]
_CUT_SWITCHES = [
    ("--nce-idt", "nce_idt", "cut/fastcut: identity PatchNCE on target images [cut on, fastcut off]"),
    ("--flip-equivariance", "flip_equivariance", "cut/fastcut: flip-equivariance augmentation [cut off, fastcut on]"),
]


def add_train_parser(sub) -> None:
    p = sub.add_parser("train",  # its one-line help: cyclegan.cli.main.COMMANDS
                       description="Train a CycleGAN on unpaired folders. Defaults are the paper's (ResNet-9 at "
                                   "256 px, 70x70 PatchGAN, batch 1, Adam 2e-4, 100 + 100 epochs, cycle 10, "
                                   "identity 0.5, pool 50) with two changes that measured better "
                                   "(docs/quality.md): the hinge loss instead of LSGAN and an EMA of the "
                                   "generators for inference. --preset paper is the original recipe exactly. "
                                   "--model cut/fastcut train one direction on the same folders; --model pix2pix "
                                   "trains on paired images (aligned A|B files or trainA/trainB by file name) "
                                   "with the pix2pix paper's recipe as its defaults.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    defaults = KINDS["cyclegan"].defaults_flat()
    data = p.add_argument_group("data and run")
    add_flags(data, _TRAIN_FLAGS, defaults)
    add_switches(data, _TRAIN_SWITCHES)
    data.add_argument("--resume", action="store_true",
                      help="continue RUNS_DIR/NAME from its latest checkpoint (its stored settings win, "
                           "except max-iters, save/log/preview intervals, device and workers)")
    model = p.add_argument_group("model and objective")
    model.add_argument("--model", dest="kind", choices=("cyclegan", *MODES, "pix2pix"), default=None,
                       help="cyclegan: two generators and the cycle loss; cut / fastcut: contrastive unpaired "
                            "translation (Park et al. 2020), one generator, one direction (docs/quality.md); "
                            "pix2pix: paired translation (Isola et al. 2017), U-Net + conditional PatchGAN + "
                            "L1, defaults the paper's (README: Paired translation) [cyclegan]")
    add_flags(model, _MODEL_FLAGS, defaults)
    model.add_argument("--dropout", dest="run.dropout", action=argparse.BooleanOptionalAction, default=None,
                       help="dropout 0.5 in the generators [cyclegan/cut off, pix2pix on]")
    model.add_argument("--spectral-norm", dest="run.spectral_norm", action=argparse.BooleanOptionalAction,
                       default=None, help=f"spectral normalisation in the discriminators [{defaults['spectral_norm']}]")
    add_flags(model, _CUT_FLAGS, {})
    for flag, field, text in _CUT_SWITCHES:
        model.add_argument(flag, dest=f"run.{field}", action=argparse.BooleanOptionalAction, default=None, help=text)
    model.add_argument("--preset", choices=tuple({**PRESETS, **PIX2PIX_PRESETS}),
                       help="start from a named recipe (paper: the original release's, exactly; see "
                            "docs/quality.md); flags given explicitly still win [our defaults]")
    p.set_defaults(func=_cmd_train)


def _flag_names() -> dict[str, str]:
    """Config field -> its flag, for messages."""
    names = {field: flag for flag, field, _ in (*_TRAIN_FLAGS, *_MODEL_FLAGS, *_CUT_FLAGS)}
    names.update({field: flag for flag, field, _ in _CUT_SWITCHES})
    return {**names, "dropout": "--dropout", "spectral_norm": "--spectral-norm"}


def train_config(args: argparse.Namespace) -> RunConfig:
    """The run a ``train`` command line resolves to: the model kind, preset, then the flags given."""
    kind = getattr(args, "kind", None) or "cyclegan"
    try:
        config = resolve(kind, given_values(args), args.preset)
        # --model given explicitly: a resume of a run of another kind is refused, not silently switched
        return dataclasses.replace(config, given=config.given | {"kind"}) if getattr(args, "kind", None) else config
    except ConfigError as e:
        if not e.unknown:
            raise
        raise ValueError(f"{', '.join(_flag_names().get(k, k) for k in e.unknown)}: not a setting of --model {kind}") from None


def _cmd_train(args: argparse.Namespace) -> int:
    from cyclegan.training.run import run

    run(train_config(args), resume=args.resume)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if args.format != "safetensors":  # onnx / torchscript: any generator source, see cyclegan.export
        from cyclegan.cli.export import run_export

        return run_export(args)
    import torch

    from cyclegan.core.checkpoint import CheckpointError, load_checkpoint, load_newest_intact
    from cyclegan.inference.loading import probe_generator
    from cyclegan.training.cyclegan import export_cyclegan
    from cyclegan.training.kinds import from_state

    run = Path(args.run)
    if run.is_dir():  # a damaged latest.pt falls back to the newest intact iter_*.pt, as --resume does
        state, ckpt = load_newest_intact(run / "checkpoints")
    else:
        ckpt = run
        state = load_checkpoint(ckpt)
    try:
        config = from_state(state)
        model = build_model(config.model)
        model.load_state_dict(state["model"])
    except (TypeError, ValueError, KeyError, AttributeError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise CheckpointError(f"{ckpt}: the stored model cannot be rebuilt ({type(e).__name__}: {first}); the "
                              "checkpoint is damaged or was not written by cyclegan train") from None
    for name, net in model.inference_generators().items():  # finite weights may still give NaN outputs
        conv = next((m for m in net.modules() if isinstance(m, torch.nn.Conv2d)), None)
        if conv is not None and getattr(config.model, "netG", None):
            probe_generator(net, conv.in_channels, f"{ckpt} ({name})")
    out = Path(args.output) if args.output else (run if run.is_dir() else run.parent.parent) / "generators.safetensors"
    export_cyclegan(model, config, out)
    print(out)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from cyclegan.bench.runner import run_bench

    return run_bench(args)
