"""Inference: load one CycleGAN generator from any file we or the original release write, and
translate an image, a batch, or a whole folder.

Where a generator can come from (:func:`load_generator`; no architecture flags are needed for
our files, which carry their config):

* a run folder ``RUNS/NAME``: its ``generators.safetensors`` export, or ``checkpoints/latest.pt``
  when that is newer (a run still training);
* a training checkpoint (``.pt``, ``format == "cyclegan-checkpoint"``) or our safetensors export;
* an original-release state dict (``.pth``): the published generators (one direction each;
  architecture from :data:`PUBLISHED_GENERATORS`, inferred from the weights, or flags), or an
  original training run's folder with ``latest_net_G_A.pth``/``latest_net_G_B.pth``;
* a bare name: ``RUNS/NAME``, else ``CHECKPOINTS/NAME_pretrained/latest_net_G.pth`` (where
  ``cyclegan download weights NAME`` puts published weights).

Files are read with safetensors or ``torch.load(weights_only=True)``: never arbitrary unpickling.

This module must not import training code (train.py, the albumentations datasets): the Gradio
app builds on :class:`Translator` and :func:`load_generator`.
"""

from __future__ import annotations

import argparse
import html
import io
import logging
import math
import os
import sys
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from .argtypes import nonneg_int as _nonneg
from .argtypes import positive_int as _positive
from . import networks
from .checkpoint import CHECKPOINT_FORMAT, CheckpointError, atomic_write, load_export
from .cyclegan import CycleGANConfig
from .gan import pick_device
from .images import DataError, UnreadableImageError, find_images, load_image
from .winograd import use_winograd

__all__ = [
    "DIRECTIONS",
    "PUBLISHED_GENERATORS",
    "GeneratorSpec",
    "LoadedGenerator",
    "Translator",
    "TranslateJob",
    "TranslateSummary",
    "add_translate_commands",
    "load_generator",
    "plan_jobs",
    "resolve_device",
    "size_multiple",
    "translate_jobs",
    "write_index_html",
]

log = logging.getLogger("cyclegan.translate")

DIRECTIONS = ("AtoB", "BtoA")
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
OUTPUT_FORMATS = ("png", "jpg", "webp")
_PIL_FORMAT = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}


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

    def build(self) -> nn.Module:
        return networks.build_generator(self.netG, self.input_nc, self.output_nc, self.ngf, self.norm,
                                        self.dropout)

    def describe(self) -> str:
        channels = {1: "grayscale", 3: "RGB"}.get(self.input_nc, f"{self.input_nc}-channel")
        return (f"{self.netG}, ngf {self.ngf}, {self.norm} norm{', dropout' if self.dropout else ''}, "
                f"{channels}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], direction: str) -> "GeneratorSpec":
        """The spec of G_A (``AtoB``) or G_B (``BtoA``) of a stored CycleGAN config."""
        cfg = CycleGANConfig.from_dict(dict(config))
        a, b = cfg.input_nc, cfg.output_nc
        return cls(cfg.netG, cfg.ngf, cfg.norm, cfg.dropout, *((a, b) if direction == "AtoB" else (b, a)))


#: The original release's published CycleGAN generators (its scripts/download_cyclegan_model.sh),
#: each mapped to the published model of the opposite direction, if any. All are ResNet-9, ngf 64,
#: instance norm, no dropout, RGB, trained at 256 px: ``GeneratorSpec()`` and :data:`PUBLISHED_SIZE`.
PUBLISHED_GENERATORS: dict[str, str | None] = {
    "apple2orange": "orange2apple",
    "orange2apple": "apple2orange",
    "summer2winter_yosemite": "winter2summer_yosemite",
    "winter2summer_yosemite": "summer2winter_yosemite",
    "horse2zebra": "zebra2horse",
    "zebra2horse": "horse2zebra",
    "monet2photo": "style_monet",
    "style_monet": "monet2photo",
    "style_cezanne": None,
    "style_ukiyoe": None,
    "style_vangogh": None,
    "sat2map": "map2sat",
    "map2sat": "sat2map",
    "cityscapes_photo2label": "cityscapes_label2photo",
    "cityscapes_label2photo": "cityscapes_photo2label",
    "facades_photo2label": "facades_label2photo",
    "facades_label2photo": "facades_photo2label",
    "iphone2dslr_flower": None,
}
PUBLISHED_SIZE = 256


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

    @property
    def multiple(self) -> int:
        return size_multiple(self.net)

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
    path = _resolve(model, direction, Path(runs_dir), Path(checkpoints_dir))
    if path.suffix == ".safetensors":
        _ignore_arch(arch, path)
        return _from_export(path, direction or "AtoB")
    obj = _torch_load(path)
    if isinstance(obj, Mapping) and obj.get("format") == CHECKPOINT_FORMAT:
        _ignore_arch(arch, path)
        return _from_checkpoint(obj, path, direction or "AtoB")
    # An original-release state dict: one generator, one direction.
    pair = _original_pair_direction(path)
    if pair is not None and direction is not None and pair != direction:
        # latest_net_G_A.pth given but BtoA asked for: its sibling from the same training run
        path = path.with_name(f"latest_net_G_{_direction_key(direction)[-1]}.pth")
        if not path.is_file():
            raise CheckpointError(f"--direction {direction}: {path} not found")
        obj, pair = _torch_load(path), direction
    if direction == "BtoA" and pair is None:  # AtoB is taken as "the way this file translates"
        reverse = PUBLISHED_GENERATORS.get(_published_name(path))
        hint = f" (the reverse model is published as {reverse!r})" if reverse else ""
        raise ValueError(f"--direction BtoA: {path} holds a single generator, which translates one way only; "
                         f"leave --direction out, or load the reverse model's file instead{hint}")
    return _from_state_dict(obj, path, arch or {}, pair)


def _ignore_arch(arch: Mapping[str, Any] | None, path: Path) -> None:
    if arch:
        log.warning("%s carries its own model config; ignoring %s", path,
                    ", ".join(f"--{k}" for k in arch))


def _resolve(model: str | os.PathLike, direction: str | None, runs_dir: Path, checkpoints_dir: Path) -> Path:
    """The file to read for ``model`` (see :func:`load_generator`)."""
    p = Path(model).expanduser()
    if not p.exists():
        name = str(model)
        candidates = [runs_dir / name, checkpoints_dir / f"{name}_pretrained" / "latest_net_G.pth"]
        found = next((c for c in candidates if c.exists()), None) if p.name == name else None
        if found is None:
            hint = (f"; `cyclegan download weights {name}` fetches the published model"
                    if name in PUBLISHED_GENERATORS else "")
            looked = f" (also looked for {candidates[0]} and {candidates[1]})" if p.name == name else ""
            raise CheckpointError(f"--model {model}: no such file or folder{looked}{hint}")
        p = found
    if p.is_file():
        return p
    export, latest = p / "generators.safetensors", p / "checkpoints" / "latest.pt"
    if export.is_file() and latest.is_file():
        # A resumed run writes the export only when it finishes: use whichever is newer.
        return latest if latest.stat().st_mtime > export.stat().st_mtime else export
    for candidate in (export, latest, p / "latest_net_G.pth"):
        if candidate.is_file():
            return candidate
    original = p / f"latest_net_G_{'B' if direction == 'BtoA' else 'A'}.pth"
    if original.is_file():  # an original-release training run: one file per direction
        return original
    raise CheckpointError(
        f"--model {p}: the folder holds no generators.safetensors, checkpoints/latest.pt or "
        "latest_net_G*.pth; pass a run folder, a checkpoint, an export or a .pth file")


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated file, a pickle with code in it, not a torch file at all
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(f"cannot load {path} as PyTorch weights (read with weights_only=True, "
                              f"which refuses pickled code): {type(e).__name__}: {first}") from e


def _direction_key(direction: str) -> str:
    return "G_A" if direction == "AtoB" else "G_B"


def _from_export(path: Path, direction: str) -> LoadedGenerator:
    states, config, extra = load_export(path)
    key = _direction_key(direction)
    if key not in states:
        raise CheckpointError(f"{path} holds no {key} weights (has {', '.join(sorted(states))})")
    spec = GeneratorSpec.from_config(config, direction)
    name = str(extra.get("name") or path.parent.name)
    return _build(spec, states[key], path, direction, extra.get("size"), name)


def _from_checkpoint(state: Mapping[str, Any], path: Path, direction: str) -> LoadedGenerator:
    config = state.get("model_config") or {}
    model = state.get("model", {})
    # The generators' moving average when the run kept one: what inference should use.
    key = _direction_key(direction)
    prefix = next((p for p in (f"ema_generators.{key}.", f"generators.{key}.") if any(k.startswith(p) for k in model)),
                  f"generators.{key}.")
    weights = {k[len(prefix):]: v for k, v in model.items() if k.startswith(prefix)}
    if "netG" not in config or not weights:
        raise CheckpointError(f"{path} is a training checkpoint but not of a CycleGAN (no {prefix}* weights)")
    spec = GeneratorSpec.from_config(config, direction)
    train = state.get("train_config") or {}
    run = path.parent.parent.name if path.parent.name == "checkpoints" else path.stem
    return _build(spec, weights, path, direction, train.get("size"), str(train.get("name") or run))


def _published_name(path: Path) -> str:
    """``horse2zebra.pth`` -> horse2zebra; ``checkpoints/horse2zebra_pretrained/latest_net_G.pth``
    (the original layout) -> horse2zebra."""
    if path.stem.startswith("latest_net_G"):
        parent = path.parent.name
        return parent[: -len("_pretrained")] if parent.endswith("_pretrained") else parent
    return path.stem


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
    convs = sorted((int(k.split(".")[1]), v) for k, v in state_dict.items()
                   if k.count(".") == 2 and k.endswith(".weight") and v.dim() == 4)
    norms = {k.rsplit(".", 1)[0] for k in state_dict if k.endswith("running_var")}
    batch = any(f"{prefix}.weight" in state_dict for prefix in norms)
    spec = {"netG": f"resnet_{len(blocks)}blocks", "ngf": int(first.shape[0]), "input_nc": int(first.shape[1]),
            "output_nc": int(convs[-1][1].shape[0]), "norm": "batch" if batch else "instance",
            # Dropout shifts a block's second conv from index 5 to 6 (a BatchNorm can also sit at 6)
            "dropout": any(k.endswith(".conv_block.6.weight") and v.dim() == 4 for k, v in state_dict.items())}
    return spec if spec["netG"] in networks.GENERATORS else {}


def _from_state_dict(obj: Any, path: Path, arch: Mapping[str, Any], pair_direction: str | None) -> LoadedGenerator:
    weights = _unwrap_state_dict(obj, path)
    name = _published_name(path)
    size: int | None = None
    if name in PUBLISHED_GENERATORS:
        base: dict[str, Any] = {}  # GeneratorSpec's defaults are the published architecture
        size = PUBLISHED_SIZE
    else:
        base = infer_spec(weights)
    given = {k: v for k, v in arch.items() if v is not None}
    if "channels" in given:  # one flag for both ends, as in training
        given["input_nc"] = given["output_nc"] = given.pop("channels")
    unknown = set(given) - set(GeneratorSpec.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown architecture setting(s): {', '.join(sorted(unknown))}")
    return _build(GeneratorSpec(**{**base, **given}), weights, path, pair_direction, size, name)


def _build(spec: GeneratorSpec, weights: Mapping[str, Tensor], path: Path, direction: str | None,
           size: int | None, name: str) -> LoadedGenerator:
    try:
        net = spec.build()
    except ValueError as e:
        raise CheckpointError(f"{path}: cannot build the generator ({e})") from e
    weights = networks.strip_running_stats(weights, net)  # PyTorch < 0.4 InstanceNorm leftovers
    try:
        net.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        detail = " ".join(str(e).split())
        raise CheckpointError(
            f"{path} does not fit a {spec.describe()} generator ({detail[:300]}{'...' if len(detail) > 300 else ''}); "
            "for .pth weights pass the architecture they were trained with: --netG, --ngf, --norm, "
            "--channels, --dropout") from e
    net.eval().requires_grad_(False)
    return LoadedGenerator(net, spec, direction, int(size) if size else None, path, name)


# --------------------------------------------------------------------------------------------
# Running a generator: padding, precision, tiles
# --------------------------------------------------------------------------------------------


#: Device choice is the same rule as training's; it lives in the GAN base, which imports no training code.
resolve_device = pick_device


def _autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"--precision {precision}: choose one of {', '.join(PRECISION_CHOICES)}")
    if precision == "auto":
        if device.type != "cuda":
            return None  # CPU bf16 is slower than fp32 for convolutions on most CPUs
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int, int, int]]:
    """Pad H and W up to a multiple, split over both sides, by reflection (replication where an
    image is too small to reflect). Returns the padded tensor and (left, right, top, bottom)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if not any(pad):
        return x, pad
    mode = "reflect" if max(pad[0], pad[1]) < w and max(pad[2], pad[3]) < h else "replicate"
    return F.pad(x, pad, mode=mode), pad


def _crop(x: Tensor, pad: tuple[int, int, int, int]) -> Tensor:
    left, right, top, bottom = pad
    return x[..., top: x.shape[-2] - bottom, left: x.shape[-1] - right]


class _StopForward(Exception):
    """Raised by a statistics-collecting norm layer: the rest of the forward pass is not needed."""


@dataclass
class _TileContext:
    window: tuple[int, int] = (0, 0)          # this tile's input height and width
    core: tuple[int, int, int, int] = (0, 0, 0, 0)  # y0, y1, x0, x1 of its core, in the tile


class _WholeImageInstanceNorm(nn.Module):
    """InstanceNorm whose statistics come from the whole image, gathered tile by tile.

    InstanceNorm normalises each channel by its mean and variance over the *whole* image, so a
    generator run on tiles, each with its own statistics, changes colour and contrast from tile
    to tile (visible seams). This layer first accumulates sums over each tile's core (the tiles'
    cores partition the image, so each pixel counts once) and raises :class:`_StopForward`;
    once frozen it normalises every tile with the whole image's statistics.
    """

    def __init__(self, norm: nn.InstanceNorm2d, ctx: _TileContext) -> None:
        super().__init__()
        self.eps = norm.eps
        self.weight, self.bias = norm.weight, norm.bias  # affine parameters, if any
        self.ctx = ctx
        self.reset()

    def reset(self) -> None:
        self.mean: Tensor | None = None
        self.inv_std: Tensor | None = None
        self._sum: Tensor | None = None
        self._sumsq: Tensor | None = None
        self._count = 0

    def forward(self, x: Tensor) -> Tensor:
        if self.mean is None:
            (wh, ww), (y0, y1, x0, x1) = self.ctx.window, self.ctx.core
            sy, sx = wh // x.shape[-2], ww // x.shape[-1]
            if sy * x.shape[-2] != wh or sx * x.shape[-1] != ww:
                raise RuntimeError("tile sizes must be multiples of the generator's downsampling")
            core = x[..., y0 // sy: y1 // sy, x0 // sx: x1 // sx].double()
            s, sq = core.sum(dim=(0, 2, 3)), core.square().sum(dim=(0, 2, 3))
            self._sum = s if self._sum is None else self._sum + s
            self._sumsq = sq if self._sumsq is None else self._sumsq + sq
            self._count += core[:, 0].numel()
            raise _StopForward
        y = (x.float() - self.mean) * self.inv_std
        if self.weight is not None:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y

    @property
    def frozen(self) -> bool:
        return self.mean is not None

    @property
    def collected(self) -> bool:
        return self._count > 0

    def freeze(self) -> None:
        assert self._sum is not None and self._sumsq is not None
        mean = self._sum / self._count
        var = (self._sumsq / self._count - mean.square()).clamp(min=0)  # biased, as InstanceNorm
        self.mean = mean.float().view(1, -1, 1, 1)
        self.inv_std = torch.rsqrt(var + self.eps).float().view(1, -1, 1, 1)


def _whole_image_norm_copy(net: nn.Module, ctx: _TileContext) -> tuple[nn.Module, list[_WholeImageInstanceNorm]]:
    """A copy of ``net`` whose per-image InstanceNorms are :class:`_WholeImageInstanceNorm`s."""
    net = deepcopy(net)
    replaced: list[_WholeImageInstanceNorm] = []
    for parent in list(net.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.InstanceNorm2d) and not child.track_running_stats:
                new = _WholeImageInstanceNorm(child, ctx)
                parent.register_module(child_name, new)
                replaced.append(new)
    return net, replaced


def _plan_axis(length: int, tile: int, overlap: int, multiple: int) -> list[tuple[int, int, int, int]]:
    """Split one axis into tiles: (window start, window end, core start, core end), all multiples
    of ``multiple``; the cores partition [0, length) and each window is its core plus up to
    ``overlap`` of context on either side."""
    if length <= tile:
        return [(0, length, 0, length)]
    core = tile - 2 * overlap
    n = math.ceil(length / core)
    bounds = [min(length, round(i * length / n / multiple) * multiple) for i in range(n + 1)]
    bounds[-1] = length
    return [(max(0, a - overlap), min(length, b + overlap), a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def _ramp(window: tuple[int, int, int, int], length: int, feather: int) -> Tensor:
    """Blend weights along one axis for one tile's window: 1 over its core, falling linearly to
    0 across a band of 2*feather pixels centred on each core edge shared with a neighbour. The
    neighbours' ramps are mirror images, so the weights of all tiles sum to exactly 1."""
    w0, w1, c0, c1 = window
    p = torch.arange(w0, w1, dtype=torch.float32) + 0.5
    weight = torch.ones(w1 - w0)
    if feather > 0:
        if c0 > 0:
            weight = weight * ((p - (c0 - feather)) / (2 * feather)).clamp(0, 1)
        if c1 < length:
            weight = weight * (((c1 + feather) - p) / (2 * feather)).clamp(0, 1)
    else:
        weight = ((p >= c0) & (p < c1)).float()
    return weight


class Translator:
    """Runs one generator on images: resizing to the training size or full resolution, padding
    to the generator's multiple, autocast on GPU, and tiles for images over ``tile`` x ``tile``.

    ``translate(uint8 HxWxC array) -> uint8 array`` is the whole API for a single image (the app
    uses it); :meth:`prepare` + :meth:`forward` split it for batched folder translation.

    Speed options (``cyclegan bench --mode translate`` measures them): ``channels_last`` runs the
    network in the channels-last memory format (faster convolutions on tensor-core GPUs and
    oneDNN CPUs); ``compile`` runs it through ``torch.compile`` (``compile_backend``: a backend
    name or callable, inductor by default). A compilation failure, when ``torch.compile`` is
    called or on the first forward pass (no C compiler, no Triton), is logged and the translator
    carries on in eager mode; :attr:`compile_error` then says why. Tiled forward passes always run
    eagerly. ``winograd`` computes the wide 3x3 convolutions (the residual blocks') by Winograd
    F(4x4, 3x3) (:mod:`cyclegan.winograd`: CPU fp32 only, 1.2-1.5x for a ResNet-9 at 256 px here, a
    ~1e-6 relative difference); ``None`` turns it on exactly there. ``channels_last`` and
    ``winograd`` convert the generator in place (as moving it to the device does), so translators
    sharing one generator share them; the compiled wrapper is this translator's own.
    """

    def __init__(self, generator: LoadedGenerator, *, device: str | torch.device = "auto",
                 precision: str = "auto", full_res: bool = False, size: int | None = None,
                 tile: int = 1024, tile_overlap: int = 64, channels_last: bool = False,
                 compile: bool = False, compile_backend: str | Callable[..., Any] = "inductor",
                 compile_mode: str | None = None, winograd: bool | None = None) -> None:
        self.generator = generator
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.dtype = _autocast_dtype(self.device, precision)
        self.net = generator.net.to(self.device).eval()
        self.multiple = generator.multiple
        self.full_res = full_res
        self.size = size or generator.size or PUBLISHED_SIZE
        if not full_res and self.size < self.multiple:
            raise ValueError(f"--size {self.size} is smaller than the generator's minimum of {self.multiple}")
        m = self.multiple
        self.tile_overlap = -(-tile_overlap // m) * m if tile_overlap > 0 else 0
        self.tile = tile // m * m if tile > 0 else 0
        if self.tile and self.tile < 2 * self.tile_overlap + m:
            raise ValueError(f"--tile {tile} must be at least 2 x --tile-overlap + {m} "
                             f"(= {2 * self.tile_overlap + m}) so every tile keeps a core")
        self._ctx = _TileContext()
        self._tiled: tuple[nn.Module, list[_WholeImageInstanceNorm]] | None = None
        self.channels_last = channels_last
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        if winograd is None:
            winograd = self.device.type == "cpu" and self.dtype is None
        #: whether any convolution runs by Winograd (False where none qualifies, or on a GPU)
        self.winograd = use_winograd(self.net, winograd) > 0 and winograd and self.device.type == "cpu"
        self.compile_error: str | None = None
        self._compiled: Callable[[Tensor], Tensor] | None = None
        if compile:
            try:
                # Inference weights never change: let inductor fold them into the graph
                # ("freezing"; on CPUs it also prepacks oneDNN convolution weights, 1.2x here).
                options = {"freezing": True} if compile_backend == "inductor" and compile_mode is None else None
                self._compiled = torch.compile(self.net, backend=compile_backend, mode=compile_mode,
                                               options=options)
            except Exception as e:  # an unknown backend, a platform torch.compile does not support
                self._compile_failed(e)

    @property
    def input_channels(self) -> int:
        return self.generator.spec.input_nc

    # -- images <-> tensors ----------------------------------------------------------------------
    def prepare(self, image: np.ndarray) -> Tensor:
        """uint8 HxWxC (C = input channels) -> float CxHxW in [-1, 1], resized to size x size
        unless translating at full resolution (bicubic, as training)."""
        if not self.full_res and image.shape[:2] != (self.size, self.size):
            pil = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
            image = np.asarray(pil.resize((self.size, self.size), Image.BICUBIC))
            image = image[:, :, None] if image.ndim == 2 else image
        # np.require copies read-only arrays (np.asarray of a PIL image), which torch cannot wrap safely
        return torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1).float().div(127.5).sub(1.0)

    @staticmethod
    def to_uint8(x: Tensor) -> np.ndarray:
        """float CxHxW in [-1, 1] -> uint8 HxWxC."""
        return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()

    def translate(self, image: np.ndarray) -> np.ndarray:
        """Translate one uint8 HxWxC image (C = 1 or 3; converted to what the model takes)."""
        if image.ndim == 2:
            image = image[:, :, None]
        if image.shape[2] != self.input_channels:
            mode = "L" if self.input_channels == 1 else "RGB"
            image = np.asarray(Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image[:, :, :3]).convert(mode))
            image = image[:, :, None] if image.ndim == 2 else image
        return self.to_uint8(self.forward(self.prepare(image)[None])[0])

    # -- the network -----------------------------------------------------------------------------
    @property
    def compiled(self) -> bool:
        """Whether forward passes go through ``torch.compile`` (False after a compile failure)."""
        return self._compiled is not None

    def _compile_failed(self, err: Exception) -> None:
        text = " ".join(str(err).split())  # dynamo's messages span lines: "backend='x' raised:\nTheError: ..."
        self.compile_error = f"{type(err).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}"
        self._compiled = None
        log.warning("torch.compile failed (%s); translating in eager mode", self.compile_error)

    @staticmethod
    def _is_compile_error(err: Exception) -> bool:
        return any(t.__module__.startswith(("torch._dynamo", "torch._inductor")) for t in type(err).__mro__)

    def _to_input(self, x: Tensor) -> Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _run(self, x: Tensor) -> Tensor:
        """The generator on one device batch: compiled when it can be, else eager."""
        if self._compiled is not None:
            try:
                return self._compiled(x)
            except Exception as e:
                if not self._is_compile_error(e):
                    raise
                self._compile_failed(e)
        return self.net(x)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype) if self.dtype is not None else nullcontext()

    @torch.inference_mode()
    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) in [-1, 1], any H and W -> translated (N, C', H, W) float32 on the CPU.
        Images over the tile size go through :meth:`_forward_tiled` one at a time."""
        x, pad = _pad_to_multiple(x, self.multiple)
        h, w = x.shape[-2:]
        if self.tile and h * w > self.tile * self.tile:
            out = torch.cat([self._forward_tiled(x[i: i + 1]) for i in range(x.shape[0])])
        else:
            # the memory cap holds for the whole batch: at most tile*tile pixels per forward pass
            per_pass = max(1, self.tile * self.tile // (h * w)) if self.tile else x.shape[0]
            outs = []
            for chunk in x.split(per_pass):
                with self._autocast():
                    outs.append(self._run(self._to_input(chunk)).float().cpu())
            out = torch.cat(outs)
            if self.channels_last:
                out = out.contiguous()
        return _crop(out, pad)

    def _forward_tiled(self, x: Tensor) -> Tensor:
        """One padded image (1, C, H, W) in overlapping tiles of at most about tile x tile pixels.

        Pass k runs every tile up to the k-th InstanceNorm (earlier ones already frozen at the
        whole image's statistics), which accumulates its statistics over the tiles' cores; the
        last pass runs every tile through and blends the outputs with linear ramps across the
        overlaps. The result equals the untiled output wherever a tile's overlap covers the
        generator's receptive field, and differs only slightly (without seams) elsewhere.
        """
        if self._tiled is None:
            self._tiled = _whole_image_norm_copy(self.net, self._ctx)
        net, norms = self._tiled
        for norm in norms:
            norm.reset()
        h, w = x.shape[-2:]
        m, overlap = self.multiple, self.tile_overlap
        tiles = [(ty, tx) for ty in _plan_axis(h, self.tile, overlap, m) for tx in _plan_axis(w, self.tile, overlap, m)]
        feather = overlap // 2
        while True:
            out: Tensor | None = None
            weight_sum = torch.zeros(1, 1, h, w)
            for ty, tx in tiles:
                (y0, y1, cy0, cy1), (x0, x1, cx0, cx1) = ty, tx
                self._ctx.window = (y1 - y0, x1 - x0)
                self._ctx.core = (cy0 - y0, cy1 - y0, cx0 - x0, cx1 - x0)
                try:
                    with self._autocast():
                        y = net(self._to_input(x[..., y0:y1, x0:x1])).float().cpu().contiguous()
                except _StopForward:
                    continue
                if out is None:
                    out = torch.zeros(1, y.shape[1], h, w)
                wgt = (_ramp(ty, h, feather)[:, None] * _ramp(tx, w, feather)[None, :])[None, None]
                out[..., y0:y1, x0:x1] += y * wgt
                weight_sum[..., y0:y1, x0:x1] += wgt
            collecting = [n for n in norms if not n.frozen and n.collected]
            if not collecting:
                assert out is not None
                return out / weight_sum.clamp(min=1e-8)
            for norm in collecting:
                norm.freeze()


# --------------------------------------------------------------------------------------------
# Folders: jobs, the pipeline, outputs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TranslateJob:
    source: Path
    output: Path
    label: str  # the input's path relative to the input folder (for messages and the HTML page)


@dataclass
class TranslateSummary:
    translated: int = 0
    skipped: int = 0  # outputs that already existed
    failed: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def describe(self) -> str:
        rate = self.translated / self.seconds if self.seconds > 0 else 0.0
        hint = " (outputs exist; --overwrite redoes them)" if self.skipped else ""
        text = (f"{self.translated} translated, {self.skipped} skipped{hint}, {len(self.failed)} failed "
                f"in {self.seconds:.1f} s ({rate:.2f} images/s)")
        for path, reason in self.failed:
            text += f"\n  failed: {path}: {reason}"
        return text


def _output_format(fmt: str | None, output: Path | None = None) -> str:
    if fmt:
        return "jpg" if fmt == "jpeg" else fmt
    if output is not None and output.suffix.lower().lstrip(".") in _PIL_FORMAT:
        return "jpg" if output.suffix.lower() == ".jpeg" else output.suffix.lower().lstrip(".")
    return "png"  # lossless, as the original release's results


def _check_not_inside(input_path: Path, output: Path) -> None:
    src, dst = input_path.resolve(), output.resolve()
    if input_path.is_dir():
        if dst == src or src in dst.parents:
            raise DataError(f"--output {output} is the input folder {input_path} or inside it: outputs would mix "
                            "with the inputs (and be read as inputs next time); choose a folder outside it")
    elif dst == src:
        raise DataError(f"--output {output} is the input file itself; choose another name")


def plan_jobs(input_path: str | os.PathLike, output: str | os.PathLike, fmt: str | None = None) -> list[TranslateJob]:
    """One job per input image. A folder is searched recursively and mirrored under ``output``;
    a single file goes to ``output`` (a file name with an image suffix, or a folder)."""
    src, out = Path(input_path), Path(output)
    if not src.exists():
        raise DataError(f"--input {src}: no such file or folder")
    _check_not_inside(src, out)
    if src.is_file():
        if out.suffix.lower().lstrip(".") in _PIL_FORMAT and not out.is_dir():
            if fmt and _output_format(fmt) != _output_format(None, out):
                raise DataError(f"--output {out} has a .{out.suffix.lstrip('.')} suffix but --format is {fmt}")
            return [TranslateJob(src, out, src.name)]
        return [TranslateJob(src, out / f"{src.stem}.{_output_format(fmt)}", src.name)]
    ext = _output_format(fmt)
    sources = find_images(src)
    if not sources:
        raise DataError(f"--input {src}: no images found (looked for .jpg, .png, .webp, ... in subfolders too)")
    rels = [p.relative_to(src) for p in sources]
    targets = [rel.with_suffix(f".{ext}") for rel in rels]
    counts: dict[Path, int] = {}
    for t in targets:
        counts[t] = counts.get(t, 0) + 1
    # a.jpg and a.png in one folder would both become a.png: keep the input suffix in those names
    targets = [rel.with_name(f"{rel.name}.{ext}") if counts[t] > 1 else t for rel, t in zip(rels, targets)]
    return [TranslateJob(p, out / t, rel.as_posix()) for p, rel, t in zip(sources, rels, targets)]


def _encode(image: np.ndarray, fmt: str, quality: int) -> bytes:
    pil = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
    buf = io.BytesIO()
    kwargs: dict[str, Any] = {"quality": quality} if fmt in ("jpg", "webp") else {}
    if fmt == "jpg":
        kwargs["subsampling"] = 0 if quality >= 90 else 2  # keep colour detail at high quality
    pil.save(buf, format=_PIL_FORMAT[fmt], **kwargs)
    return buf.getvalue()


def _side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    if left.shape[:2] != right.shape[:2]:
        pil = Image.fromarray(left[:, :, 0] if left.shape[2] == 1 else left)
        left = np.asarray(pil.resize((right.shape[1], right.shape[0]), Image.BICUBIC))
        left = left[:, :, None] if left.ndim == 2 else left
    if left.shape[2] != right.shape[2]:  # grayscale next to RGB: show both as RGB
        left, right = (np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in (left, right))
    return np.concatenate([left, right], axis=1)


def _ordered_map(pool: ThreadPoolExecutor, fn: Callable[[Any], Any], items: Iterable[Any], ahead: int) -> Iterator[Any]:
    """``map(fn, items)`` on ``pool``, in order, with at most ``ahead`` results in flight: the
    workers decode the next images while the caller runs the network on the current batch."""
    pending: deque[Future] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _remove_stale_temps(jobs: list[TranslateJob]) -> None:
    """Delete the ``.NAME.*.tmp`` files a killed run left beside the outputs still to do (one
    listing per folder; assumes no other process is writing the same outputs)."""
    by_folder: dict[Path, set[str]] = {}
    for job in jobs:
        by_folder.setdefault(job.output.parent, set()).add(job.output.name)
    for folder, names in by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            n = entry.name
            if n.startswith(".") and n.endswith(".tmp") and n[1:].rsplit(".", 2)[0] in names:
                try:
                    os.unlink(entry.path)
                except OSError:
                    pass


def translate_jobs(translator: Translator, jobs: list[TranslateJob], *, batch_size: int = 4, workers: int = 4,
                   fmt: str | None = None, quality: int = 95, side_by_side: bool = False,
                   overwrite: bool = False, progress: bool = True) -> TranslateSummary:
    """Translate ``jobs``: decode in ``workers`` threads, run batches of up to ``batch_size``
    same-sized images, encode and write each output atomically in the background. Existing
    outputs are skipped unless ``overwrite`` (so a killed run resumes); unreadable inputs are
    reported by name and skipped."""
    from tqdm import tqdm

    summary = TranslateSummary()
    todo = [j for j in jobs if overwrite or not j.output.exists()]
    _remove_stale_temps(todo)
    summary.skipped = len(jobs) - len(todo)
    channels = translator.input_channels
    start = time.perf_counter()

    def decode(job: TranslateJob) -> tuple[TranslateJob, np.ndarray | None, Tensor | str]:
        try:
            image = load_image(job.source, channels)
            return job, image, translator.prepare(image)
        except UnreadableImageError as e:
            return job, None, e.reason
        except Exception as e:  # vanished file, permission denied, ...: report it, keep going
            return job, None, f"{type(e).__name__}: {e}"

    def write(job: TranslateJob, image: np.ndarray, out: np.ndarray) -> None:
        if side_by_side:
            out = _side_by_side(image, out)
        data = _encode(out, _output_format(fmt, job.output), quality)
        atomic_write(job.output, lambda f: f.write(data))

    bar = tqdm(total=len(todo), unit="img", desc="translate", file=sys.stderr, disable=not progress,
               dynamic_ncols=True, mininterval=0.5)
    writes: list[tuple[TranslateJob, Future]] = []

    def fail(job: TranslateJob, reason: str) -> None:
        summary.failed.append((job.source, reason))
        bar.write(f"skipping {job.source}: {reason}", file=sys.stderr)

    def run(batch: list[tuple[TranslateJob, np.ndarray, Tensor]], writer: ThreadPoolExecutor) -> None:
        out = translator.forward(torch.stack([t for _, _, t in batch]))
        for (job, image, tensor), y in zip(batch, out):
            shown = image if translator.full_res else Translator.to_uint8(tensor)
            writes.append((job, writer.submit(write, job, shown, Translator.to_uint8(y))))
        bar.update(len(batch))

    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="decode") as reader, \
            ThreadPoolExecutor(2, thread_name_prefix="encode") as writer:
        batch: list[tuple[TranslateJob, np.ndarray, Tensor]] = []
        for job, image, result in _ordered_map(reader, decode, todo, ahead=batch_size + 2 * max(1, workers)):
            if image is None:
                fail(job, str(result))
                bar.update(1)
                continue
            assert isinstance(result, Tensor)
            if batch and (len(batch) >= batch_size or batch[0][2].shape != result.shape):
                run(batch, writer)
                batch = []
            batch.append((job, image, result))
        if batch:
            run(batch, writer)
        for job, future in writes:
            try:
                future.result()
                summary.translated += 1
            except Exception as e:  # a full disk or a read-only folder: name the file
                fail(job, f"could not write {job.output}: {e}")
    bar.close()
    summary.seconds = time.perf_counter() - start
    return summary


def write_index_html(path: str | os.PathLike, jobs: list[TranslateJob], title: str, subtitle: str = "",
                     width: int = 256) -> Path:
    """An HTML page with one row per image (name, input, output), like the original release's
    results page; links are relative, so the page works wherever the folders are opened."""
    path = Path(path)
    base = path.parent.resolve()

    def link(p: Path) -> str:
        return urllib.parse.quote(Path(os.path.relpath(p.resolve(), base)).as_posix())

    rows = []
    for job in jobs:
        if not job.output.exists():
            continue  # failed inputs have no output to show
        src, out = link(job.source), link(job.output)
        rows.append(f'<tr><td>{html.escape(job.label)}</td>'
                    f'<td><a href="{src}"><img src="{src}" width="{width}" loading="lazy"></a></td>'
                    f'<td><a href="{out}"><img src="{out}" width="{width}" loading="lazy"></a></td></tr>')
    page = "\n".join([
        "<!DOCTYPE html>", '<html><head><meta charset="utf-8">', f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif} td{padding:4px;vertical-align:top} img{display:block}</style>",
        "</head><body>", f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(subtitle)}</p>",
        "<table><tr><th>image</th><th>input</th><th>output</th></tr>", *rows, "</table>", "</body></html>", ""])
    return atomic_write(path, lambda f: f.write(page.encode("utf-8")))


# --------------------------------------------------------------------------------------------
# The `cyclegan translate` command
# --------------------------------------------------------------------------------------------


def _quality(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be between 1 and 100, got {text}")
    return value


def add_architecture_args(p: argparse.ArgumentParser) -> None:
    """Flags for .pth weights, which carry no config (ignored for our own files)."""
    g = p.add_argument_group("architecture of .pth weights (our checkpoints and exports carry theirs)")
    g.add_argument("--netG", choices=tuple(networks.GENERATORS),
                   help="generator architecture [published models: resnet_9blocks; otherwise read off the weights]")
    g.add_argument("--ngf", type=_positive, help="filters in the first conv [64]")
    g.add_argument("--norm", choices=networks.NORM_LAYERS, help="normalisation layers [instance]")
    g.add_argument("--channels", type=int, choices=(1, 3), help="1 for grayscale, 3 for RGB [3]")
    g.add_argument("--dropout", action="store_const", const=True, default=None,
                   help="the generator was built with dropout (changes parameter names)")


def architecture_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in ("netG", "ngf", "norm", "channels", "dropout")
            if getattr(args, k, None) is not None}


def add_model_args(p: argparse.ArgumentParser, direction_help: str) -> None:
    p.add_argument("--model", "-m", required=True,
                   help="run folder (runs/NAME), checkpoint .pt, generators.safetensors, original-release "
                        ".pth, or a name looked up in --runs-dir and --checkpoints-dir")
    p.add_argument("--direction", choices=DIRECTIONS, default=None, help=direction_help)
    p.add_argument("--runs-dir", default="runs", help="where bare --model names are looked up [runs]")
    p.add_argument("--checkpoints-dir", default="checkpoints",
                   help="where downloaded published weights live: DIR/NAME_pretrained/latest_net_G.pth [checkpoints]")


def add_runtime_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("how to run the generator")
    g.add_argument("--full-res", action="store_true",
                   help="translate at the input's own size (padded to the generator's multiple and cropped "
                        "back) instead of resizing to the training size")
    g.add_argument("--size", type=_positive,
                   help="resize inputs to SIZE x SIZE [the size the model was trained at; 256 for .pth]")
    g.add_argument("--tile", type=_nonneg, default=1024,
                   help="memory cap: at most TILE x TILE pixels per forward pass; larger images run in "
                        "overlapping tiles with whole-image normalisation statistics (0: no cap) [1024]")
    g.add_argument("--tile-overlap", type=_nonneg, default=64,
                   help="context each tile sees beyond its share of the image, in pixels [64]")
    g.add_argument("--batch-size", type=_positive, default=4, help="images per forward pass [4]")
    g.add_argument("--workers", type=_nonneg, default=min(4, os.cpu_count() or 1),
                   help="threads decoding images while the network runs [min(4, cores)]")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps [auto]")
    g.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                   help="autocast dtype; auto = bf16 (or fp16) on CUDA, fp32 elsewhere [auto]")
    g.add_argument("--winograd", action=argparse.BooleanOptionalAction, default=None,
                   help="Winograd F(4x4,3x3) for the residual blocks' convolutions: 1.2-1.5x faster on a CPU "
                        "in fp32, results equal to ~1e-6 [on for CPU fp32, off elsewhere]")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def _cmd_translate(args: argparse.Namespace) -> int:
    generator = load_generator(args.model, args.direction, arch=architecture_overrides(args),
                               runs_dir=args.runs_dir, checkpoints_dir=args.checkpoints_dir)
    translator = Translator(generator, device=args.device, precision=args.precision, full_res=args.full_res,
                            size=args.size, tile=args.tile, tile_overlap=args.tile_overlap, winograd=args.winograd)
    jobs = plan_jobs(args.input, args.output, args.format)
    mode = "full resolution" if args.full_res else f"resized to {translator.size}x{translator.size}"
    print(f"{generator.describe()}\non {translator.device}, {mode}: {len(jobs)} image(s) -> {args.output}",
          file=sys.stderr)
    summary = translate_jobs(translator, jobs, batch_size=args.batch_size, workers=args.workers, fmt=args.format,
                             quality=args.quality, side_by_side=args.side_by_side, overwrite=args.overwrite,
                             progress=not args.no_progress)
    if Path(args.input).is_dir() and not args.no_html:
        page = write_index_html(Path(args.output) / "index.html", jobs, f"{generator.name} ({generator.direction or 'translation'})",
                                generator.describe())
        print(f"index: {page}", file=sys.stderr)
    print(summary.describe(), file=sys.stderr)
    return 0 if summary.ok else 1


def add_translate_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``cyclegan translate``."""
    p = sub.add_parser(
        "translate", help="translate an image or a folder of images with a trained or published generator",
        description="Translate one image or a folder (recursively; the folder structure is mirrored in the "
                    "output). Existing outputs are skipped unless --overwrite, so a killed run resumes; "
                    "unreadable inputs are reported and skipped, and make the exit status 1.")
    add_model_args(p, "AtoB uses G_A, BtoA uses G_B [AtoB]; a published .pth is one direction already")
    p.add_argument("--input", "-i", required=True, help="an image file or a folder of images")
    p.add_argument("--output", "-o", required=True,
                   help="output folder (or, for one input file, a file name with an image suffix)")
    out = p.add_argument_group("outputs")
    out.add_argument("--format", choices=OUTPUT_FORMATS, help="output image format [png, or the --output suffix]")
    out.add_argument("--quality", type=_quality, default=95, help="JPEG/WebP quality [95]")
    out.add_argument("--side-by-side", action="store_true", help="write input and output next to each other")
    out.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")
    out.add_argument("--no-html", action="store_true", help="no index.html page in the output folder")
    add_runtime_args(p)
    add_architecture_args(p)
    p.set_defaults(func=_cmd_translate)
