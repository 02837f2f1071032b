"""Winograd F(4x4, 3x3) convolution (cyclegan/winograd.py): the same numbers as the direct
convolution, used exactly where it should be (CPU fp32 inference on wide layers) and nowhere else
(training, autocast, export, narrow or small layers), and the Translator/CLI/bench switches."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cyclegan.inference import winograd
from cyclegan.cli.bench import add_bench_args
from cyclegan.bench.runner import run_bench
from cyclegan.models.networks import ResnetBlock
from cyclegan.inference.loading import GeneratorSpec, LoadedGenerator
from cyclegan.inference.translator import Translator
from cyclegan.inference.winograd import WinogradConv2d, conv3x3, use_winograd
from tiny_models import one_thread  # noqa: F401


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@settings(max_examples=25, deadline=None, derandomize=True)
@given(n=st.integers(1, 2), c=st.integers(1, 12), c_out=st.integers(1, 12), h=st.integers(3, 21),
       w=st.integers(3, 21), bias=st.booleans(), seed=st.integers(0, 2**16))
def test_conv3x3_equals_the_direct_convolution(n, c, c_out, h, w, bias, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g)
    weight = torch.randn(c_out, c, 3, 3, generator=g)
    b = torch.randn(c_out, generator=g) if bias else None
    want = F.conv2d(x.double(), weight.double(), b.double() if bias else None)
    got = conv3x3(x, weight, b)
    assert got.shape == want.shape and got.dtype == torch.float32
    # fp32 rounding is relative to the size of the terms summed, not of their sum: a small output
    # (a few terms cancelling, e.g. a 1x1 output of one channel) has a large error relative to itself.
    # Measured over 3,000 random cases: at most 1.0e-6 of the terms' scale (2.4e-6 of the output).
    scale = F.conv2d(x.double().abs(), weight.double().abs(), b.double().abs() if bias else None)
    assert ((got.double() - want).norm() / scale.norm()).item() < 1e-5


def test_wide_layers_are_as_accurate_as_the_direct_fp32_convolution():
    g = torch.Generator().manual_seed(0)
    x, weight = torch.randn(1, 256, 34, 34, generator=g), torch.randn(256, 256, 3, 3, generator=g) * 0.02
    want = F.conv2d(x.double(), weight.double())
    direct = _rel(F.conv2d(x, weight), want)
    assert _rel(conv3x3(x, weight), want) < max(20 * direct, 5e-6)  # ~2e-6: fp32 rounding, a few bits


def test_bands_of_tile_rows_give_the_one_pass_result(monkeypatch):
    g = torch.Generator().manual_seed(1)
    x, weight = torch.randn(2, 8, 43, 30, generator=g), torch.randn(5, 8, 3, 3, generator=g)
    whole = conv3x3(x, weight)
    monkeypatch.setattr(winograd, "BAND_ELEMENTS", 2 * 7 * 16 * 5)  # two tile rows per band: 6 bands
    banded = conv3x3(x, weight)
    assert torch.allclose(banded, whole, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="3x3"):
        conv3x3(x, torch.randn(5, 8, 5, 5))


def _resnet(ngf: int = 32) -> nn.Module:
    torch.manual_seed(0)
    return GeneratorSpec("resnet_6blocks", ngf).build().eval()


def test_use_winograd_switches_the_residual_convolutions_in_place():
    net = _resnet(32)  # residual blocks at 4 x 32 = 128 channels: eligible
    before = {k: v for k, v in net.state_dict().items()}
    assert use_winograd(net) == 12  # 6 blocks x 2 convolutions, nothing else
    swapped = [m for m in net.modules() if isinstance(m, WinogradConv2d)]
    inside = {id(m) for b in net.modules() if isinstance(b, ResnetBlock) for m in b.modules()}
    assert all(id(m) in inside for m in swapped)
    after = net.state_dict()
    assert after.keys() == before.keys() and all(after[k] is before[k] or torch.equal(after[k], before[k])
                                                  for k in after)
    x = torch.rand(1, 3, 128, 128) * 2 - 1  # residual blocks at 32x32
    with torch.inference_mode():
        fast = net(x)
        assert use_winograd(net, False) == 12 and not any(isinstance(m, WinogradConv2d) for m in net.modules())
        direct = net(x)
    assert (fast - direct).abs().max() < 1e-4 and not torch.equal(fast, direct)
    assert use_winograd(_resnet(16)) == 0  # 64-channel blocks: the transforms would cost more


def _conv(c: int = 128, padding: int = 0) -> WinogradConv2d:
    torch.manual_seed(0)
    conv = nn.Conv2d(c, 64, 3, padding=padding)
    use_winograd(conv)
    assert type(conv) is WinogradConv2d
    return conv


def _direct(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return nn.Conv2d.forward(conv, x)


def test_inference_uses_winograd_and_everything_else_the_direct_convolution():
    conv = _conv(padding=1)
    x = torch.randn(1, 128, 34, 34)
    with torch.no_grad():
        fast = conv(x)
    assert fast.shape == (1, 64, 34, 34) and not torch.equal(fast, _direct(conv, x).detach())
    assert torch.allclose(fast, _direct(conv, x), atol=1e-4)
    # training: autograd through the direct convolution, bit for bit
    xg = x.clone().requires_grad_()
    y = conv(xg)
    assert torch.equal(y, _direct(conv, x))
    y.sum().backward()
    assert xg.grad is not None and conv.weight.grad is not None
    with torch.no_grad():
        # too small an output (30 x 30 < 32 x 32), bf16 autocast, float64: direct
        small = torch.randn(1, 128, 30, 30)
        assert torch.equal(conv(small), _direct(conv, small))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(conv(x), _direct(conv, x))
        conv64 = _conv().double()
        assert torch.equal(conv64(x.double()), _direct(conv64, x.double()))


def test_export_traces_the_direct_convolution():
    conv = _conv()
    with torch.no_grad():
        traced = torch.jit.trace(conv, torch.randn(1, 128, 34, 34), check_trace=False)
    graph = str(traced.inlined_graph)
    assert "aten::_convolution" in graph and "aten::bmm" not in graph


def test_the_output_follows_the_weights():
    conv = _conv()
    x = torch.randn(1, 128, 34, 34)
    with torch.inference_mode():
        first = conv(x)
        conv.weight.mul_(2)  # in place, as load_state_dict does
        assert torch.allclose(conv(x), 2 * first - conv.bias.view(1, -1, 1, 1), atol=1e-4)
    conv.load_state_dict({"weight": torch.zeros_like(conv.weight), "bias": torch.ones(64)})
    with torch.inference_mode():
        assert torch.equal(conv(x), torch.ones(1, 64, 32, 32))
    conv.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert torch.equal(conv(x.contiguous(memory_format=torch.channels_last)), torch.ones(1, 64, 32, 32))


def _loaded(ngf: int = 32) -> LoadedGenerator:
    return LoadedGenerator(_resnet(ngf).requires_grad_(False), GeneratorSpec("resnet_6blocks", ngf), "AtoB", 64,
                           Path("<test>"), "test")


def test_translator_uses_winograd_on_the_cpu_in_fp32_by_default():
    x = torch.rand(2, 3, 128, 136, generator=torch.Generator().manual_seed(0)) * 2 - 1  # blocks at 32x34
    gen = _loaded()
    auto = Translator(gen, device="cpu", precision="fp32", full_res=True)  # auto may be bf16 (AMX CPUs)
    assert auto.winograd
    fast = auto.forward(x)
    assert not any(isinstance(m, WinogradConv2d) for m in gen.net.modules())  # the translator's own modules
    off = Translator(gen, device="cpu", precision="fp32", full_res=True, winograd=False)
    assert not off.winograd and not any(isinstance(m, WinogradConv2d) for m in off.net.modules())
    direct = off.forward(x)
    assert fast.shape == direct.shape and (fast - direct).abs().max() < 1e-4
    # the second translator changed nothing of the first: its outputs are bit for bit the same
    assert any(isinstance(m, WinogradConv2d) for m in auto.net.modules())
    assert torch.equal(auto.forward(x), fast) and not torch.equal(fast, direct)
    # weights are shared, not copied, on the generator's own device
    assert next(auto.net.parameters()) is next(gen.net.parameters())
    assert not Translator(gen, device="cpu", precision="bf16", full_res=True).winograd  # autocast: not used
    assert not Translator(_loaded(16), device="cpu", full_res=True).winograd  # no eligible layer


def test_translate_cli_flag():
    from cyclegan.cli.translate import add_runtime_args

    p = argparse.ArgumentParser()
    add_runtime_args(p)
    assert p.parse_args([]).winograd is None
    assert p.parse_args(["--no-winograd"]).winograd is False
    assert p.parse_args(["--winograd"]).winograd is True


def test_bench_sweeps_winograd_for_translation_only(tmp_path, capsys):
    out = tmp_path / "bench.json"
    p = argparse.ArgumentParser()
    add_bench_args(p)
    args = p.parse_args(["--mode", "train", "translate", "--size", "128", "--netG", "resnet_6blocks", "--ngf", "32",
                         "--ndf", "4", "--device", "cpu", "--warmup", "1", "--iters", "1", "--repeats", "1",
                         "--threads", "1", "--channels-last", "off", "--winograd", "on", "off", "--precision", "fp32",
                         "--json", str(out)])
    assert run_bench(args) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["mode"], r["winograd"]) for r in rows] == [("train", False), ("translate", False),
                                                          ("translate", True)]
    base, wino = rows[1:]
    assert base["baseline"] and not wino["baseline"] and wino["error"] is None
    assert wino["speedup_vs_baseline"] == pytest.approx(base["sec_per_iter"] / wino["sec_per_iter"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:7] == ["mode", "size", "batch", "precision", "ch-last", "compile", "wino"]
    assert [line.split()[6] for line in lines[1:]] == ["-", "off", "on"]


@pytest.mark.parametrize("h,w", [(34, 34), (23, 17)])
def test_channels_last_in_channels_last_out(monkeypatch, h, w):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 16, h, w, generator=g).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(8, 16, 3, 3, generator=g), torch.randn(8, generator=g)
    want = F.conv2d(x.double(), weight.double(), bias.double())
    for band in (winograd.BAND_ELEMENTS, 2 * 16 * 8):  # one pass, and bands of tile rows
        monkeypatch.setattr(winograd, "BAND_ELEMENTS", band)
        got = conv3x3(x, weight, bias)
        assert got.is_contiguous(memory_format=torch.channels_last) and _rel(got, want) < 2e-5
