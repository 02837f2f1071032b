"""Loading a generator from what the user names: a run folder, a training checkpoint, a
safetensors export, an original-release .pth, a published or a bundled model's name (which file
that is: :mod:`cyclegan.inference.sources`)."""

from __future__ import annotations

import logging
import os
import re
from contextlib import nullcontext
from collections.abc import Mapping
import copy
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
import torch
from torch import Tensor, nn

from cyclegan.core.readers import BadFileError, bounded_int
from cyclegan.models import networks
from cyclegan.core.checkpoint import (CHECKPOINT_FORMAT, CheckpointError, NonFiniteError, check_checkpoint_fields,
                                     check_finite, check_usable, load_export, load_torch_file, run_settings,
                                     state_dict_misfit)
from cyclegan.models.cut import config_directions
from cyclegan.models.cyclegan import CycleGANConfig
from cyclegan.inference.mnist_sampler import EXPORT_KIND
from cyclegan.inference.sources import (BUNDLED_MODELS, EXPORT_NAME, PIX2PIX_ARCH, PIX2PIX_TEST_MODE,
                                        PUBLISHED_GENERATORS, PUBLISHED_PIX2PIX, PUBLISHED_SIZE, TEST_MODES,
                                        published_name, resolve)

__all__ = ["BUNDLED_MODELS", "DIRECTIONS", "TEST_MODES", "set_test_mode", "PUBLISHED_GENERATORS", "PUBLISHED_SIZE", "GeneratorSpec", "LoadedGenerator",
           "OneDirectionError", "load_generator", "size_multiple"]

log = logging.getLogger("cyclegan.translate")

DIRECTIONS = ("AtoB", "BtoA")


# --------------------------------------------------------------------------------------------
# What a generator is
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratorSpec:
    """The architecture of one generator: everything :func:`networks.build_generator` needs.
    The defaults are the original release's published models."""

    netG: str = "resnet_9blocks"
    ngf: int = 64
    norm: str = "instance"
    dropout: bool = False
    input_nc: int = 3
    output_nc: int = 3

    def check(self) -> None:
        """ValueError unless every field has a type and value a generator can be built with: a
        crafted file's config is checked before anything is allocated."""
        if not isinstance(self.netG, str) or self.netG not in networks.GENERATORS:
            raise ValueError(f"netG must be one of {', '.join(networks.GENERATORS)}, got {self.netG!r}")
        if not isinstance(self.norm, str) or self.norm not in networks.NORM_LAYERS:
            raise ValueError(f"norm must be one of {', '.join(networks.NORM_LAYERS)}, got {self.norm!r}")
        for name, high in (("ngf", MAX_NGF), ("input_nc", 4), ("output_nc", 4)):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= high):
                raise ValueError(f"{name} must be an integer 1..{high}, got {value!r}")
        if not isinstance(self.dropout, bool):
            raise ValueError(f"dropout must be true or false, got {self.dropout!r}")

    def build(self, device: str | torch.device | None = None) -> nn.Module:
        """The generator; on the ``meta`` device it has shapes but no memory."""
        self.check()
        with torch.device(device) if device is not None else nullcontext():
            return networks.build_generator(self.netG, self.input_nc, self.output_nc, self.ngf, self.norm,
                                            self.dropout)

    def describe(self) -> str:
        channels = {1: "grayscale", 3: "RGB"}.get(self.input_nc, f"{self.input_nc}-channel")
        return (f"{self.netG}, ngf {self.ngf}, {self.norm} norm{', dropout' if self.dropout else ''}, "
                f"{channels}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], direction: str) -> "GeneratorSpec":
        """The spec of G_A (``AtoB``) or G_B (``BtoA``) of a stored CycleGAN config."""
        if not isinstance(config, Mapping):
            raise ValueError(f"the stored model config is a {type(config).__name__}, not a mapping")
        cfg = CycleGANConfig.from_dict(dict(config))
        a, b = cfg.input_nc, cfg.output_nc
        return cls(cfg.netG, cfg.ngf, cfg.norm, cfg.dropout, *((a, b) if direction == "AtoB" else (b, a)))




def module_copy(net: nn.Module) -> nn.Module:
    """``net``'s module tree copied, its parameters and buffers shared (not copied): changing a
    module of the copy (its class, its mode) leaves ``net`` alone, for the price of a few hundred
    small objects."""
    shared = {id(t): t for t in (*net.parameters(), *net.buffers())}
    return copy.deepcopy(net, memo=shared)


def set_test_mode(net: nn.Module, mode: str) -> nn.Module:
    """``net`` (a :func:`module_copy`: its modules are changed) set up to run as ``mode`` says
    (:data:`~cyclegan.inference.sources.TEST_MODES`): ``eval`` is torch's eval mode; ``reference``
    the original release's test.py without ``--eval``: batch norm from the statistics of the batch
    (its running statistics left alone, not updated) and dropout active."""
    if mode not in TEST_MODES:
        raise ValueError(f"test mode must be one of {', '.join(TEST_MODES)}, got {mode!r}")
    net.eval()
    if mode == "reference":
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train()
                m.running_mean = m.running_var = m.num_batches_tracked = None  # this copy's only
                m.track_running_stats = False
            elif isinstance(m, nn.Dropout):
                m.train()
    return net


#: the widest generator a file may ask for (the paper's is 64; 1024 is already 256x its size)
MAX_NGF = 1024


def size_multiple(net: nn.Module) -> int:
    """Height and width must be multiples of this for ``net`` to return its input's size."""
    if isinstance(net, networks.ResnetGenerator):
        return 2 ** net.n_downsampling
    if isinstance(net, networks.UnetGenerator):
        return 2 ** sum(isinstance(m, networks.UnetSkipConnectionBlock) for m in net.modules())
    return 1


@dataclass
class LoadedGenerator:
    """One generator ready for inference (eval mode, on the CPU until a Translator moves it)."""

    net: nn.Module
    spec: GeneratorSpec
    direction: str | None   # AtoB / BtoA of a CycleGAN; None for a single published generator
    size: int | None        # the side it was trained at, when known
    source: Path            # the file the weights came from
    name: str               # run or model name, for messages and the HTML page
    #: how it runs by default (sources.TEST_MODES): "reference" for the original release's published
    #: pix2pix generators (batch statistics and dropout, as its test.py), else "eval"
    test_mode: str = "eval"
    _copies: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    @property
    def multiple(self) -> int:
        return size_multiple(self.net)

    def net_for(self, device: torch.device, channels_last: bool = False) -> nn.Module:
        """The network with its weights on ``device`` (in the channels-last memory format if
        asked): :attr:`net` itself where it already is that, else a copy made on the first call and
        kept for the next translators. Shared between translators, so never modified: a
        translator that changes modules (Winograd) does it on a copy of its own (:func:`module_copy`)."""
        if not channels_last and all(t.device == device for t in (*self.net.parameters(), *self.net.buffers())):
            return self.net
        key = (str(device), channels_last)
        with self._lock:
            if key not in self._copies:
                net = copy.deepcopy(self.net).to(device)
                self._copies[key] = net.to(memory_format=torch.channels_last) if channels_last else net
            return self._copies[key]

    @property
    def min_side(self) -> int:
        """The smallest side the generator runs on: a ResNet's InstanceNorms and reflection pads
        need at least 2 x 2 pixels after its downsampling. Smaller images are padded up to it."""
        return 2 * self.multiple if isinstance(self.net, networks.ResnetGenerator) else self.multiple

    def describe(self) -> str:
        which = f"{self.direction} generator" if self.direction else "generator"
        trained = f", trained at {self.size} px" if self.size else ""
        return f"{self.name}: {which} from {self.source} ({self.spec.describe()}{trained})"


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_generator(model: str | os.PathLike, direction: str | None = None, *,
                   arch: Mapping[str, Any] | None = None, runs_dir: str | os.PathLike = "runs",
                   checkpoints_dir: str | os.PathLike = "checkpoints") -> LoadedGenerator:
    """Load the generator of ``direction`` (AtoB = G_A, BtoA = G_B; default AtoB) from ``model``:
    a run folder, checkpoint, safetensors export, original-release .pth or a name (see the module
    docstring). ``arch`` (keys of :class:`GeneratorSpec`) overrides the architecture of .pth
    weights; our own files carry their config and ignore it."""
    if direction is not None and direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    source = resolve(model, direction, runs_dir=runs_dir, checkpoints_dir=checkpoints_dir)
    try:
        return _load_file(source.file, direction, arch)
    except (OneDirectionError, ValueError):
        raise
    except CheckpointError as first:
        run = source.location if source.location.is_dir() else (
            source.file.parent.parent if source.file.name == "latest.pt" and source.file.parent.name == "checkpoints"
            else None)  # RUN/checkpoints/latest.pt named: "the newest of the run", as --resume reads it
        if run is None:
            raise
        # A damaged file of a run (bits flipped, cut short, non-finite): the run's other files,
        # as --resume falls back past a damaged latest.pt
        errors = [str(first)]
        for alt in _run_files(run, source.file):
            try:
                gen = _load_file(alt, direction, arch)
            except (OneDirectionError, ValueError):
                raise
            except CheckpointError as e:
                errors.append(str(e))
                continue
            log.warning("%s; using %s instead", "; ".join(errors), alt)
            return gen
        if len(errors) == 1:
            raise
        raise CheckpointError(f"no intact model in {run}: {'; '.join(errors)}") from None


def _run_files(folder: Path, tried: Path) -> list[Path]:
    """The files of a run folder that can stand in for ``tried``: its export, its latest
    checkpoint, then its numbered checkpoints, newest first."""
    ckpts = folder / "checkpoints"
    numbered = sorted(ckpts.glob("iter_*.pt"), key=lambda p: p.name, reverse=True) if ckpts.is_dir() else []
    files = [folder / EXPORT_NAME, ckpts / "latest.pt", *numbered]
    return [p for p in files if p.is_file() and p != tried]


def _load_file(path: Path, direction: str | None, arch: Mapping[str, Any] | None) -> LoadedGenerator:
    if path.suffix == ".safetensors":
        _ignore_arch(arch, path)
        return _from_export(path, direction)
    obj = _torch_load(path)
    if isinstance(obj, Mapping) and obj.get("format") == CHECKPOINT_FORMAT:
        check_checkpoint_fields(obj, path)
        _ignore_arch(arch, path)
        return _from_checkpoint(obj, path, direction)
    # An original-release state dict: one generator, one direction.
    pair = _original_pair_direction(path)
    if pair is not None and direction is not None and pair != direction:
        # latest_net_G_A.pth given but BtoA asked for: its sibling from the same training run
        path = path.with_name(f"latest_net_G_{_direction_key(direction)[-1]}.pth")
        if not path.is_file():
            raise CheckpointError(f"--direction {direction}: {path} not found")
        obj, pair = _torch_load(path), direction
    if direction == "BtoA" and pair is None:  # AtoB is taken as "the way this file translates"
        reverse = {**PUBLISHED_GENERATORS, **PUBLISHED_PIX2PIX}.get(published_name(path))
        hint = f" (the reverse model is published as {reverse!r})" if reverse else ""
        raise ValueError(f"--direction BtoA: {path} holds a single generator, which translates one way only; "
                         f"leave --direction out, or load the reverse model's file instead{hint}")
    return _from_state_dict(obj, path, arch or {}, pair)


def _ignore_arch(arch: Mapping[str, Any] | None, path: Path) -> None:
    if arch:
        log.warning("%s carries its own model config; ignoring %s", path,
                    ", ".join(f"--{k}" for k in arch))


def _torch_load(path: Path) -> Any:
    return load_torch_file(path, "--model takes a run folder, a training checkpoint (.pt), generators.safetensors "
                                 "or an original-release .pth state dict")


def _direction_key(direction: str) -> str:
    return "G_A" if direction == "AtoB" else "G_B"


class OneDirectionError(CheckpointError):
    """The other direction of a model that translates one way only (CUT, FastCUT)."""


def _pick_direction(config: Mapping[str, Any], direction: str | None, path: Path) -> str:
    """The direction to load from our file of ``config``: the one asked for, else AtoB, or the
    only one of a CUT / FastCUT model; asking a one-direction model for the other says why not."""
    if not isinstance(config, Mapping):
        raise CheckpointError(f"{path}: the stored model config is a {type(config).__name__}, not a mapping; the "
                              "file is damaged or was not written by cyclegan")
    try:
        have = config_directions(dict(config))
    except (TypeError, ValueError, AttributeError, KeyError) as e:
        raise CheckpointError(f"{path}: the stored model config is not usable ({type(e).__name__}: {e})") from None
    if direction is None:
        return have[0]
    if direction not in have:
        kind = config.get("model")
        raise OneDirectionError(f"{path} is a {kind} model, which translates {have[0]} only ({kind} learns one "
                                f"direction); for {direction} train another with `cyclegan train --model {kind} "
                                f"--direction {direction}`")
    return direction


def _from_export(path: Path, direction: str | None) -> LoadedGenerator:
    states, config, extra = load_export(path)
    if extra.get("kind") == EXPORT_KIND or "z_dim" in config:
        raise CheckpointError(f"{path} is an MNIST GAN export (noise -> image), which draws new images rather than "
                              f"translating them; sample from it with `cyclegan mnist sample --model {path}`")
    direction = _pick_direction(config, direction, path)
    key = _direction_key(direction)
    if key not in states:
        raise CheckpointError(f"{path} holds no {key} weights (has {', '.join(sorted(states))})")
    spec = _stored_spec(config, direction, path)
    name = str(extra.get("name") or path.parent.name)
    return _build(spec, states[key], path, direction, _stored_size(extra.get("size"), path), name)


def _from_checkpoint(state: Mapping[str, Any], path: Path, direction: str | None) -> LoadedGenerator:
    config = state.get("model_config") or {}
    model = state.get("model") or {}
    if "z_dim" in config:
        raise CheckpointError(f"{path} is an MNIST GAN checkpoint (noise -> image), which draws new images rather "
                              f"than translating them; sample from it with `cyclegan mnist sample --model {path}`")
    direction = _pick_direction(config, direction, path)
    # The generators' moving average when the run kept one: what inference should use.
    key = _direction_key(direction)
    prefix = next((p for p in (f"ema_generators.{key}.", f"generators.{key}.") if any(k.startswith(p) for k in model)),
                  f"generators.{key}.")
    weights = {k[len(prefix):]: v for k, v in model.items() if k.startswith(prefix)}
    if "netG" not in config or not weights:
        raise CheckpointError(f"{path} is a training checkpoint but not of an image translation model (no "
                              f"{prefix}* weights)")
    spec = _stored_spec(config, direction, path)
    train = run_settings(state)
    run = path.parent.parent.name if path.parent.name == "checkpoints" else path.stem
    return _build(spec, weights, path, direction, _stored_size(train.get("size"), path),
                  str(train.get("name") or run))


def _stored_spec(config: Any, direction: str, path: Path) -> GeneratorSpec:
    try:
        spec = GeneratorSpec.from_config(config, direction)
        spec.check()
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: the stored model config is not usable: {e}") from None
    return spec


#: the largest training size a file may state. Images are translated at that size, so it sizes the
#: forward pass: 2048 px (pix2pixHD's largest; CycleGANs train at 256-512) already takes about 4 GB
#: with the paper's generator, where 65536 would take terabytes for a 40x40 input.
MAX_STORED_SIZE = 2048


def _stored_size(size: Any, path: Path) -> int | None:
    if size is None:
        return None
    try:
        return bounded_int(size, 4, MAX_STORED_SIZE, f"{path}: the stored training size")
    except BadFileError as e:
        raise CheckpointError(f"{e}; the file is damaged or crafted") from None


def _original_pair_direction(path: Path) -> str | None:
    return {"latest_net_G_A": "AtoB", "latest_net_G_B": "BtoA"}.get(path.stem)


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, Tensor]:
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} is not a generator state dict (expected a mapping of parameter "
                              "names to tensors, like the original release's latest_net_G.pth)")
    # nn.DataParallel saves every name with a "module." prefix.
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def infer_spec(state_dict: Mapping[str, Tensor]) -> dict[str, Any]:
    """What can be read off a ResNet generator's weights: blocks, ngf, channels, dropout, norm.
    (Instance norm and no norm have no weights to tell them apart; instance is assumed.)"""
    first = state_dict.get("model.1.weight")
    if first is None or first.dim() != 4 or tuple(first.shape[-2:]) != (7, 7):
        return {}
    blocks = {k.split(".")[1] for k in state_dict if ".conv_block." in k}
    # only names of the generator's form (model.<index>.weight): a malformed key reads as no layer
    convs = sorted((int(m.group(1)), v) for k, v in state_dict.items()
                   if (m := re.fullmatch(r"model\.(\d+)\.weight", k)) and v.dim() == 4)
    if not convs:
        return {}
    norms = {k.rsplit(".", 1)[0] for k in state_dict if k.endswith("running_var")}
    batch = any(f"{prefix}.weight" in state_dict for prefix in norms)
    spec = {"netG": f"resnet_{len(blocks)}blocks", "ngf": int(first.shape[0]), "input_nc": int(first.shape[1]),
            "output_nc": int(convs[-1][1].shape[0]), "norm": "batch" if batch else "instance",
            # Dropout shifts a block's second conv from index 5 to 6 (a BatchNorm can also sit at 6)
            "dropout": any(k.endswith(".conv_block.6.weight") and v.dim() == 4 for k, v in state_dict.items())}
    return spec if spec["netG"] in networks.GENERATORS else {}


def _from_state_dict(obj: Any, path: Path, arch: Mapping[str, Any], pair_direction: str | None) -> LoadedGenerator:
    weights = _unwrap_state_dict(obj, path)
    name = published_name(path)
    size: int | None = None
    test_mode = "eval"
    if name in PUBLISHED_GENERATORS:
        base: dict[str, Any] = {}  # GeneratorSpec's defaults are the published architecture
        size = PUBLISHED_SIZE
    elif name in PUBLISHED_PIX2PIX:
        base, size, test_mode = dict(PIX2PIX_ARCH), PUBLISHED_SIZE, PIX2PIX_TEST_MODE
    else:
        base = infer_spec(weights)
    given = {k: v for k, v in arch.items() if v is not None}
    if "channels" in given:  # one flag for both ends, as in training
        given["input_nc"] = given["output_nc"] = given.pop("channels")
    unknown = set(given) - set(GeneratorSpec.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown architecture setting(s): {', '.join(sorted(unknown))}")
    loaded = _build(GeneratorSpec(**{**base, **given}), weights, path, pair_direction, size, name)
    loaded.test_mode = test_mode
    return loaded


def checked_generator(spec: GeneratorSpec, weights: Mapping[str, Tensor], path: Path, name: str) -> LoadedGenerator:
    """The generator of ``spec`` with ``weights``, after every check a loaded model gets (shapes
    on the meta device, finite weights, finite outputs on a probe input); CheckpointError naming
    ``path`` otherwise. For checking a download before it is kept."""
    return _build(spec, weights, path, None, None, name)


def _build(spec: GeneratorSpec, weights: Mapping[str, Tensor], path: Path, direction: str | None,
           size: int | None, name: str) -> LoadedGenerator:
    # The config and the tensors are checked against a shape-only (meta) copy first: a small
    # crafted file claiming a huge generator is refused before any memory is allocated.
    try:
        shapes = spec.build("meta")
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: cannot build the generator ({e})") from e
    weights = networks.strip_running_stats(weights, shapes)  # PyTorch < 0.4 InstanceNorm leftovers
    weights = networks.fill_batch_counts(weights, shapes)     # PyTorch < 0.4.1 BatchNorm lacked them
    misfit = state_dict_misfit(weights, shapes.state_dict())
    if misfit:
        raise CheckpointError(
            f"{path} does not fit a {spec.describe()} generator ({misfit}); for .pth weights pass the architecture "
            "they were trained with: --netG, --ngf, --norm, --channels, --dropout")
    try:
        check_finite(dict(weights), f"{path}")
    except NonFiniteError as e:  # a diverged run's weights translate every image to black
        raise NonFiniteError(f"{e}: these weights cannot translate; use an earlier checkpoint of the run "
                             "(checkpoints/iter_*.pt)", e.names) from None
    net = spec.build()
    net.load_state_dict(weights, strict=True)
    net.eval().requires_grad_(False)
    probe_generator(net, spec.input_nc, str(path))
    return LoadedGenerator(net, spec, direction, int(size) if size else None, path, name)


def probe_generator(net: nn.Module, input_nc: int, what: str) -> None:
    """:func:`cyclegan.core.checkpoint.check_usable` on the smallest input ``net`` takes (16 px
    for a ResNet, its multiple for a U-Net): finite weights that give NaN outputs are refused
    with the advice to use an earlier checkpoint."""
    side = max(16, size_multiple(net))
    try:
        check_usable(net, torch.zeros(1, input_nc, side, side).uniform_(-1, 1,
                     generator=torch.Generator().manual_seed(0)), what)
    except NonFiniteError as e:
        raise NonFiniteError(f"{e}: these weights cannot translate; use an earlier checkpoint of the run "
                             "(checkpoints/iter_*.pt)", e.names) from None
