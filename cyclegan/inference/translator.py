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

This module must not import training code (cyclegan.training, the albumentations pipelines): the Gradio
app builds on :class:`Translator` and :func:`load_generator`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any
import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from cyclegan.inference.winograd import use_winograd
from cyclegan.core import fastpath
from cyclegan.core.devices import pick_device
from cyclegan.core.fastpath import AUTOCAST_DTYPES
import os
from collections.abc import Mapping
from pathlib import Path

from cyclegan.inference.hub import HUB_PREFIX, parse_hub
from cyclegan.inference.loading import PUBLISHED_SIZE, LoadedGenerator, load_generator, module_copy, set_test_mode
from cyclegan.inference.tiling import (StopForward, TileContext, WholeImageInstanceNorm, crop_padding, feather_ramp,
                                       pad_to_multiple, plan_axis, whole_image_norm_copy)

__all__ = ["Translator"]

log = logging.getLogger("cyclegan.translate")


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
    carries on in eager mode; :attr:`compile_error` then says why. ``precision="auto"`` and
    ``compile=None`` take :func:`cyclegan.core.fastpath.choose`'s choice for this machine. Tiled forward passes always run
    eagerly. ``winograd`` computes the wide 3x3 convolutions (the residual blocks') by Winograd
    F(4x4, 3x3) (:mod:`cyclegan.inference.winograd`: CPU fp32 only, 1.2-1.5x for a ResNet-9 at 256 px here, a
    ~1e-6 relative difference); ``None`` turns it on exactly there. Each translator owns its
    modules (:func:`~cyclegan.inference.loading.module_copy`) over weights shared with the other
    translators of the generator (moved to the device, or made channels-last, once:
    :meth:`LoadedGenerator.net_for`), so one translator's options never change another's outputs;
    the compiled wrapper is this translator's own too.
    """

    def __init__(self, generator: LoadedGenerator, *, device: str | torch.device = "auto",
                 precision: str = "auto", full_res: bool = False, size: int | None = None,
                 tile: int = 1024, tile_overlap: int = 64, channels_last: bool = False,
                 compile: bool | None = None, compile_backend: str | Callable[..., Any] = "inductor",
                 compile_mode: str | None = None, winograd: bool | None = None,
                 test_mode: str | None = None) -> None:
        self.generator = generator
        #: eval or reference (cyclegan.inference.sources.TEST_MODES); None: the generator's default
        self.test_mode = test_mode or generator.test_mode
        self.device = pick_device(device)
        #: precision and compilation as resolved for this machine (core.fastpath; None/"auto": its choice)
        self.fast_path = fastpath.choose(self.device, "translate", precision, compile, compile_mode,
                                         static_shapes=not full_res)
        self.dtype = AUTOCAST_DTYPES[self.fast_path.precision]
        # Our own modules over weights shared with the other translators of this generator: what
        # this translator switches (Winograd, eval mode) changes no other.
        self.net = set_test_mode(module_copy(generator.net_for(self.device, channels_last)), self.test_mode)
        self.multiple = generator.multiple
        self.full_res = full_res
        self.size = size or generator.size or PUBLISHED_SIZE
        if not full_res and self.size < self.multiple:
            raise ValueError(f"--size {self.size} is smaller than the generator's minimum of {self.multiple}")
        if self.test_mode == "reference":
            tile = 0  # batch statistics are the whole image's, as the reference computed them
        m = self.multiple
        self.tile_overlap = -(-tile_overlap // m) * m if tile_overlap > 0 else 0
        self.tile = tile // m * m if tile > 0 else 0
        if self.tile and self.tile < 2 * self.tile_overlap + m:
            raise ValueError(f"--tile {tile} must be at least 2 x --tile-overlap + {m} "
                             f"(= {2 * self.tile_overlap + m}) so every tile keeps a core")
        self._ctx = TileContext()
        self._tiled: tuple[nn.Module, list[WholeImageInstanceNorm]] | None = None
        self.channels_last = channels_last
        if winograd is None:
            winograd = self.device.type == "cpu" and self.dtype is None
        #: whether any convolution runs by Winograd (False where none qualifies, or on a GPU)
        self.winograd = use_winograd(self.net, winograd) > 0 and winograd and self.device.type == "cpu"
        self.compile_error: str | None = None
        self._compiled: Callable[[Tensor], Tensor] | None = None
        if self.fast_path.compile:
            try:
                # Inference weights never change: let inductor fold them into the graph
                # ("freezing"; on CPUs it also prepacks oneDNN convolution weights, 1.2x here).
                options = {"freezing": True} if compile_backend == "inductor" and compile_mode is None else None
                self._compiled = torch.compile(self.net, backend=compile_backend, mode=compile_mode,
                                               options=options)
            except Exception as e:  # an unknown backend, a platform torch.compile does not support
                self._compile_failed(e)

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, direction: str | None = None, *,
                        device: str | torch.device = "auto", arch: Mapping[str, Any] | None = None,
                        runs_dir: str | os.PathLike = "runs", checkpoints_dir: str | os.PathLike = "checkpoints",
                        **options: Any) -> "Translator":
        """A ready translator for what ``cyclegan translate --model`` takes: a run folder, a training
        checkpoint, a generators.safetensors export, an original-release .pth, a published name or
        ``hf:USER/REPO[@REVISION]``; here a bare ``"USER/REPO[@REVISION]"`` is a Hub model too when
        no such local path exists (a local path always wins).
        ``direction``: AtoB (default) or BtoA; ``options``: the keyword arguments of the constructor."""
        if (not str(source).startswith(HUB_PREFIX) and not Path(source).expanduser().exists()
                and parse_hub(str(source), bare=True) is not None):
            source = HUB_PREFIX + str(source)
        generator = load_generator(source, direction, arch=arch, runs_dir=runs_dir, checkpoints_dir=checkpoints_dir)
        return cls(generator, device=device, **options)

    def __call__(self, image: Image.Image | np.ndarray | Tensor) -> Image.Image | np.ndarray | Tensor:
        """Translate one image, answering in the form it came in: a PIL image, a uint8 HxWxC (or HxW)
        array, or a float tensor in [-1, 1] shaped CxHxW or NxCxHxW (kept at its own size)."""
        if isinstance(image, Image.Image):
            mode = "L" if self.input_channels == 1 else "RGB"
            out = self.translate(np.asarray(image.convert(mode)))
            return Image.fromarray(out[:, :, 0] if out.shape[2] == 1 else out)
        if isinstance(image, Tensor):
            if image.ndim not in (3, 4):
                raise ValueError(f"expected a CxHxW or NxCxHxW tensor, got shape {tuple(image.shape)}")
            channels = image.shape[-3]
            if channels != self.input_channels:
                kind = "grayscale (1 channel)" if self.input_channels == 1 else f"{self.input_channels}-channel (RGB)"
                fix = ("x.mean(dim=-3, keepdim=True)" if self.input_channels == 1 and channels == 3 else
                       "x.expand(..., 3, -1, -1)" if self.input_channels == 3 and channels == 1 else None)
                raise ValueError(f"this model takes {kind} images, got a tensor with {channels} channel(s), shape "
                                 f"{tuple(image.shape)}" + (f"; convert it first, e.g. {fix}, or pass a PIL image "
                                                            "(converted for you)" if fix else ""))
            with torch.inference_mode():
                out = self.forward(image[None] if image.ndim == 3 else image)
            return out[0] if image.ndim == 3 else out
        return self.translate(np.asarray(image))

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
        self.compile_error = fastpath.describe_error(err)
        self._compiled = None
        log.warning("torch.compile failed (%s); translating in eager mode", self.compile_error)

    def _to_input(self, x: Tensor) -> Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _run(self, x: Tensor) -> Tensor:
        """The generator on one device batch: compiled when it can be, else eager."""
        if self._compiled is not None:
            # each pass its own generation of inductor's CUDA graph trees (with reduce-overhead): a
            # training step in this process may have marked steps, after which trees start a new
            # generation only at a mark (cyclegan.models.gan.GANModel.train_step)
            torch.compiler.cudagraph_mark_step_begin()
            try:
                return self._compiled(x)
            except Exception as e:
                if not fastpath.is_compile_error(e):
                    raise
                self._compile_failed(e)
        return self.net(x)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype) if self.dtype is not None else nullcontext()

    @torch.inference_mode()
    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) in [-1, 1], any H and W -> translated (N, C', H, W) float32 on the CPU.
        Images over the tile size go through :meth:`_forward_tiled` one at a time."""
        x, pad = pad_to_multiple(x, self.multiple, self.generator.min_side)
        h, w = x.shape[-2:]
        if self.tile and h * w > self.tile * self.tile:
            out = torch.cat([self._forward_tiled(x[i: i + 1]) for i in range(x.shape[0])])
        else:
            # the memory cap holds for the whole batch: at most tile*tile pixels per forward pass
            per_pass = max(1, self.tile * self.tile // (h * w)) if self.tile else x.shape[0]
            if self.test_mode == "reference":
                per_pass = 1  # batch statistics of each image alone, as the reference's batch of 1
            outs = []
            for chunk in x.split(per_pass):
                with self._autocast():
                    outs.append(self._run(self._to_input(chunk)).float().cpu())
            out = torch.cat(outs)
            if self.channels_last:
                out = out.contiguous()
        return crop_padding(out, pad)

    def _forward_tiled(self, x: Tensor) -> Tensor:
        """One padded image (1, C, H, W) in overlapping tiles of at most about tile x tile pixels.

        Pass k runs every tile up to the k-th InstanceNorm (earlier ones already frozen at the
        whole image's statistics), which accumulates its statistics over the tiles' cores; the
        last pass runs every tile through and blends the outputs with linear ramps across the
        overlaps. The result equals the untiled output wherever a tile's overlap covers the
        generator's receptive field, and differs only slightly (without seams) elsewhere.
        """
        if self._tiled is None:
            self._tiled = whole_image_norm_copy(self.net, self._ctx)
        net, norms = self._tiled
        for norm in norms:
            norm.reset()
        h, w = x.shape[-2:]
        m, overlap = self.multiple, self.tile_overlap
        tiles = [(ty, tx) for ty in plan_axis(h, self.tile, overlap, m) for tx in plan_axis(w, self.tile, overlap, m)]
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
                except StopForward:
                    continue
                if out is None:
                    out = torch.zeros(1, y.shape[1], h, w)
                wgt = (feather_ramp(ty, h, feather)[:, None] * feather_ramp(tx, w, feather)[None, :])[None, None]
                out[..., y0:y1, x0:x1] += y * wgt
                weight_sum[..., y0:y1, x0:x1] += wgt
            collecting = [n for n in norms if not n.frozen and n.collected]
            if not collecting:
                assert out is not None
                return out / weight_sum.clamp(min=1e-8)
            for norm in collecting:
                norm.freeze()
