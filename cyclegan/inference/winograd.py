"""Winograd F(4x4, 3x3) convolution for CPU inference.

A 3x3 convolution computes each 4x4 block of outputs from a 6x6 block of inputs. Winograd's
minimal filtering algorithm (Lavin & Gray 2016) does that with 36 multiplications per channel
pair instead of 144, by moving input tiles, filters and outputs through fixed linear transforms:

    Y = A^T [ (G g G^T) * (B^T d B) ] A

The ResNet generator spends about 90% of its arithmetic in the residual blocks' 3x3, stride-1
convolutions, and on a CPU without bf16 hardware the direct convolution already runs near the
core's FMA peak (docs/benchmarks.md), so cutting multiplications is what is left. Here the
element-wise product becomes one batched matrix product per tile position (36 of them), the
transforms become small matrix products, and the output is computed in bands of tile rows so
the intermediates stay in cache. Measured on this project's 2-core AVX2 CPU: 1.2-1.9x per
convolution for 128-256 channels on 32x32 to 128x128 maps (``python docs/winograd_probe.py``),
1.47x (one thread) and 1.24x (two) for translating with a whole ResNet-9 at 256 px
(``cyclegan bench --mode translate --winograd off on``; docs/benchmarks.md).

Only where it pays and stays exact enough: fp32 (the transforms lose about 3 bits; in fp32 the
result differs from the direct convolution by ~2e-6 relative, about 1 in 2,000 uint8 pixels
of a translated image by one level), CPU tensors, no autograd (the backward through these
transforms was measured at only 1.1x for a 128 px training step), not while exporting, and
layers with at least :data:`MIN_CHANNELS` input channels and 32x32 outputs (below that the
transforms cost about what they save). Everything else calls the ordinary convolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: below this many input channels the transforms cost more than the multiplications they save
MIN_CHANNELS = 128
#: outputs per layer (H x W) below which the direct convolution wins (the filters' transform,
#: done on every call, is then too large a share)
MIN_OUTPUTS = 32 * 32
#: output elements per band: keeps a band's tiles (2.25x that) within a core's L2 cache
BAND_ELEMENTS = 1 << 18

_BT = ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
       (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1))
_G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
      (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))
_AT = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))


_CACHE: dict[tuple[torch.dtype, torch.device], tuple[Tensor, Tensor, Tensor]] = {}


def _build_transforms(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    def kron(m: tuple) -> Tensor:
        t = torch.tensor(m, dtype=torch.float64)
        return torch.kron(t, t).to(dtype=dtype, device=device)

    return kron(_BT), kron(_G), kron(_AT)


def _transforms(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """The 2-D transforms as Kronecker products: (B^T x B^T) [36, 36], (G x G) [36, 9] and
    (A^T x A^T) [16, 36], built in float64 and rounded once."""
    if torch.compiler.is_compiling():  # constants in the graph (a dict lookup would be guarded)
        return _build_transforms(dtype, device)
    key = (dtype, device)
    if key not in _CACHE:
        _CACHE[key] = _build_transforms(dtype, device)
    return _CACHE[key]


def transform_weight(weight: Tensor) -> Tensor:
    """(C_out, C_in, 3, 3) filters -> (36, C_in, C_out): G g G^T for every channel pair, laid out
    as the right-hand side of the batched product."""
    c_out, c_in = weight.shape[:2]
    kg = _transforms(weight.dtype, weight.device)[1]
    return torch.matmul(kg, weight.reshape(c_out * c_in, 9).t()).view(36, c_out, c_in).transpose(1, 2)


def _band(x: Tensor, u: Tensor, nhwc: bool) -> Tensor:
    """Valid 3x3 convolution of ``x`` (N, C, 4*th + 2, 4*tw + 2) with transformed filters ``u``;
    the result channels-last in memory when ``nhwc``."""
    n, c, h, w = x.shape
    th, tw = (h - 2) // 4, (w - 2) // 4
    c_out = u.shape[2]
    kb, _, ka = _transforms(x.dtype, x.device)
    # (N, C, H, W) -> overlapping 6x6 tiles with stride 4 -> (36, N*th*tw*C), channels fastest
    d = x.permute(0, 2, 3, 1).unfold(1, 6, 4).unfold(2, 6, 4).permute(4, 5, 0, 1, 2, 3).reshape(36, -1)
    v = torch.matmul(kb, d).view(36, n * th * tw, c)
    m = torch.bmm(v, u)  # 36 products (tiles x C_in) @ (C_in x C_out)
    y = torch.matmul(ka, m.view(36, -1)).view(4, 4, n, th, tw, c_out)  # 4x4 outputs per tile
    if nhwc:  # channels fastest, as the products leave them: no transpose
        return y.permute(2, 3, 0, 4, 1, 5).reshape(n, 4 * th, 4 * tw, c_out).permute(0, 3, 1, 2)
    return y.permute(2, 5, 3, 0, 4, 1).reshape(n, c_out, 4 * th, 4 * tw)


def conv3x3(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.conv2d(x, weight, bias)`` (3x3, stride 1, no padding) by Winograd F(4x4, 3x3).

    Any H, W >= 3: the input is zero-padded on the bottom and right to whole tiles and the extra
    outputs are cropped.
    """
    if weight.shape[2:] != (3, 3):
        raise ValueError(f"Winograd F(4x4, 3x3) needs 3x3 filters, got {tuple(weight.shape[2:])}")
    n, c, h, w = x.shape
    nhwc = c > 1 and x.is_contiguous(memory_format=torch.channels_last)  # then the output is too
    ho, wo = h - 2, w - 2
    th, tw = -(-ho // 4), -(-wo // 4)
    extra_h, extra_w = 4 * th + 2 - h, 4 * tw + 2 - w
    if extra_h or extra_w:
        x = F.pad(x, (0, extra_w, 0, extra_h))
    u = transform_weight(weight)
    rows = max(1, BAND_ELEMENTS // (n * tw * 16 * u.shape[2]))
    if rows >= th:
        y = _band(x, u, nhwc)
    else:  # output tiles depend only on their own 6x6 inputs, so bands of tile rows are exact
        y = torch.cat([_band(x[:, :, 4 * i: 4 * min(i + rows, th) + 2], u, nhwc) for i in range(0, th, rows)], dim=2)
    if extra_h or extra_w:
        y = y[:, :, :ho, :wo]
    return y + bias.view(1, -1, 1, 1) if bias is not None else y


class WinogradConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (same parameters, same state dict) whose inference forward pass on the
    CPU uses :func:`conv3x3` where it pays; see the module docstring for when."""

    def _use_winograd(self, x: Tensor) -> bool:
        if (x.device.type != "cpu" or x.dtype != torch.float32 or self.weight.dtype != torch.float32
                or x.dim() != 4 or torch.is_autocast_enabled("cpu")):
            return False
        if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
            return False
        if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export():
            return False
        ph, pw = self.padding if isinstance(self.padding, tuple) else (None, None)
        if ph is None or (self.padding_mode != "zeros" and (ph or pw)):
            return False
        return (x.shape[-2] + 2 * ph - 2) * (x.shape[-1] + 2 * pw - 2) >= MIN_OUTPUTS

    def forward(self, x: Tensor) -> Tensor:
        if not self._use_winograd(x):
            return super().forward(x)
        ph, pw = self.padding
        if ph or pw:
            x = F.pad(x, (pw, pw, ph, ph))
        # The filters are transformed on every call (~3% of the time) rather than kept: kept, they
        # would be 4x the layer's weights (170 MB for a ResNet-9 at ngf 64). Under torch.compile
        # with freezing, inductor folds them into constants anyway.
        return conv3x3(x, self.weight, self.bias)


def eligible(conv: nn.Module) -> bool:
    """A plain 3x3, stride-1, undilated, ungrouped convolution with enough input channels."""
    return (type(conv) in (nn.Conv2d, WinogradConv2d) and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.in_channels >= MIN_CHANNELS
            and isinstance(conv.padding, tuple))


def use_winograd(net: nn.Module, enabled: bool = True) -> int:
    """Switch every eligible convolution of ``net`` to (or back from) :class:`WinogradConv2d`, in
    place: parameters, buffers and state dict stay the same objects. Returns how many."""
    count = 0
    for module in net.modules():
        if eligible(module):
            module.__class__ = WinogradConv2d if enabled else nn.Conv2d
            count += 1
    return count
