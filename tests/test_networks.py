"""Tests for cyclegan.networks: compatibility with the original release and shapes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from cyclegan.models.networks import DISCRIMINATORS, GENERATORS, NLayerDiscriminator, PixelDiscriminator, ResnetBlock, ResnetGenerator, UnetGenerator, build_discriminator, build_generator, get_norm_layer, strip_running_stats

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def golden() -> dict:
    return torch.load(DATA / "golden_forward.pt", weights_only=True)


@pytest.fixture(scope="module")
def layouts() -> dict[str, dict[str, list[int]]]:
    return json.loads((DATA / "state_dict_layouts.json").read_text())


# --------------------------------------------------------------------------- #
# Compatibility with the original release
# --------------------------------------------------------------------------- #

GOLDEN_BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "G_resnet_9blocks": lambda: build_generator("resnet_9blocks", 3, 3, ngf=8),
    "G_resnet_6blocks": lambda: build_generator("resnet_6blocks", 3, 3, ngf=8),
    "G_unet_256": lambda: build_generator("unet_256", 3, 3, ngf=4),
    "D_basic": lambda: build_discriminator("basic", 3, ndf=8),
}


@pytest.mark.parametrize("key", sorted(GOLDEN_BUILDERS))
def test_golden_forward(golden: dict, key: str) -> None:
    case = golden[key]
    net = GOLDEN_BUILDERS[key]()
    net.load_state_dict(case["state_dict"], strict=True)
    net.eval()
    with torch.no_grad():
        out = net(case["input"])
    assert out.shape == case["output"].shape
    assert (out - case["output"]).abs().max().item() < 1e-5


LAYOUT_BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "G_resnet_9blocks_ngf64_rgb": lambda: build_generator("resnet_9blocks", 3, 3),
    "G_resnet_6blocks_ngf64_rgb": lambda: build_generator("resnet_6blocks", 3, 3),
    "G_unet_256_ngf64_rgb": lambda: build_generator("unet_256", 3, 3),
    "G_unet_128_ngf64_rgb": lambda: build_generator("unet_128", 3, 3),
    "D_basic_ndf64_rgb": lambda: build_discriminator("basic", 3),
    "D_pixel_ndf64_rgb": lambda: build_discriminator("pixel", 3),
}


def test_layout_keys_are_covered(layouts: dict) -> None:
    assert set(layouts) == set(LAYOUT_BUILDERS)


@pytest.mark.parametrize("key", sorted(LAYOUT_BUILDERS))
def test_state_dict_layout(layouts: dict, key: str) -> None:
    # Build on the meta device: only names and shapes matter, no memory or init cost.
    with torch.device("meta"):
        net = LAYOUT_BUILDERS[key]()
    ours = {name: list(t.shape) for name, t in net.state_dict().items()}
    assert ours == layouts[key]
    # Same order as the original, too (strict loading does not need it, but it is free).
    assert list(ours) == list(layouts[key])

    zeros = {name: torch.zeros(shape) for name, shape in layouts[key].items()}
    result = net.load_state_dict(zeros, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert all(not p.is_meta for p in net.parameters())


# --------------------------------------------------------------------------- #
# strip_running_stats
# --------------------------------------------------------------------------- #


def _with_stale_instance_stats(net: nn.Module) -> dict[str, torch.Tensor]:
    """State dict as saved by PyTorch < 0.4: InstanceNorm layers carry running stats."""
    sd = dict(net.state_dict())
    for name, module in net.named_modules():
        if isinstance(module, nn.InstanceNorm2d):
            sd[f"{name}.running_mean"] = torch.zeros(module.num_features)
            sd[f"{name}.running_var"] = torch.ones(module.num_features)
            sd[f"{name}.num_batches_tracked"] = torch.tensor(0)
    return sd


def test_strip_running_stats_instance_norm() -> None:
    net = build_generator("resnet_6blocks", 3, 3, ngf=4)
    stale = _with_stale_instance_stats(net)
    assert len(stale) > len(net.state_dict())
    with pytest.raises(RuntimeError):
        net.load_state_dict(stale, strict=True)

    stripped = strip_running_stats(stale, net)
    assert set(stripped) == set(net.state_dict())
    net.load_state_dict(stripped, strict=True)
    assert len(stale) > len(stripped)  # the input is not modified


def test_strip_running_stats_keeps_batch_norm() -> None:
    net = build_discriminator("basic", 3, ndf=4, norm="batch")
    sd = net.state_dict()
    assert any(k.endswith("running_mean") for k in sd)
    stripped = strip_running_stats(sd, net)
    assert list(stripped) == list(sd)
    net.load_state_dict(stripped, strict=True)


def test_strip_running_stats_mixed_model() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.InstanceNorm2d(4),
        nn.BatchNorm2d(4),
        nn.InstanceNorm2d(4, track_running_stats=True),
    )
    stale = _with_stale_instance_stats(net)
    stripped = strip_running_stats(stale, net)
    assert "1.running_mean" not in stripped and "1.running_var" not in stripped
    assert "1.num_batches_tracked" not in stripped
    for kept in ("2.running_mean", "2.running_var", "2.num_batches_tracked", "3.running_mean"):
        assert kept in stripped
    net.load_state_dict(stripped, strict=True)


def test_strip_running_stats_keeps_metadata() -> None:
    net = build_discriminator("pixel", 3, ndf=4)
    sd = net.state_dict()
    stripped = strip_running_stats(sd, net)
    assert getattr(stripped, "_metadata", None) == sd._metadata


# --------------------------------------------------------------------------- #
# Shapes and options
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("size", [(32, 48), (36, 36), (64, 100)])
@pytest.mark.parametrize("name", ["resnet_9blocks", "resnet_6blocks"])
def test_resnet_generator_keeps_size(name: str, size: tuple[int, int]) -> None:
    net = build_generator(name, 3, 3, ngf=4).eval()
    x = torch.rand(2, 3, *size) * 2 - 1
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape
    assert y.abs().max() <= 1  # Tanh output


@pytest.mark.parametrize(("input_nc", "output_nc"), [(1, 1), (1, 3), (3, 1)])
def test_resnet_generator_channels(input_nc: int, output_nc: int) -> None:
    net = build_generator("resnet_6blocks", input_nc, output_nc, ngf=4).eval()
    with torch.no_grad():
        y = net(torch.randn(1, input_nc, 32, 32))
    assert y.shape == (1, output_nc, 32, 32)


@pytest.mark.parametrize(("name", "size"), [("unet_128", 128), ("unet_256", 256)])
@pytest.mark.parametrize(("input_nc", "output_nc"), [(3, 3), (1, 3)])
def test_unet_generator_shape(name: str, size: int, input_nc: int, output_nc: int) -> None:
    net = build_generator(name, input_nc, output_nc, ngf=4).eval()
    with torch.no_grad():
        y = net(torch.randn(1, input_nc, size, size))
    assert y.shape == (1, output_nc, size, size)


def test_unet_generator_takes_non_square_multiples() -> None:
    net = UnetGenerator(3, 3, num_downs=5, ngf=4).eval()
    with torch.no_grad():
        y = net(torch.randn(2, 3, 32, 64))
    assert y.shape == (2, 3, 32, 64)


@pytest.mark.parametrize("n_layers", [1, 2, 3, 4])
def test_n_layers_discriminator(n_layers: int) -> None:
    net = build_discriminator("n_layers", 3, ndf=4, n_layers=n_layers).eval()
    size = 70
    with torch.no_grad():
        y = net(torch.randn(2, 3, size, size))
    # Stride-2 convs (k4 p1) halve, the two stride-1 convs (k4 p1) each remove one.
    expected = size
    for _ in range(n_layers):
        expected //= 2
    expected -= 2
    assert y.shape == (2, 1, expected, expected)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == n_layers + 2


def test_basic_discriminator_is_70x70_patchgan() -> None:
    net = build_discriminator("basic", 3, ndf=4, n_layers=5).eval()  # n_layers ignored
    assert sum(isinstance(m, nn.Conv2d) for m in net.modules()) == 5
    with torch.no_grad():
        assert net(torch.randn(1, 3, 70, 70)).shape == (1, 1, 6, 6)
        assert net(torch.randn(1, 3, 256, 256)).shape == (1, 1, 30, 30)


@pytest.mark.parametrize("input_nc", [1, 3, 6])
def test_pixel_discriminator(input_nc: int) -> None:
    net = build_discriminator("pixel", input_nc, ndf=4).eval()
    assert isinstance(net, PixelDiscriminator)
    with torch.no_grad():
        y = net(torch.randn(2, input_nc, 20, 28))
    assert y.shape == (2, 1, 20, 28)
    assert all(m.kernel_size == (1, 1) for m in net.modules() if isinstance(m, nn.Conv2d))


def test_resnet_dropout_inserts_dropout() -> None:
    plain = build_generator("resnet_6blocks", 3, 3, ngf=4)
    dropped = build_generator("resnet_6blocks", 3, 3, ngf=4, use_dropout=True)
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())
    dropouts = [m for m in dropped.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 6 and all(m.p == 0.5 for m in dropouts)
    block = dropped.model[10]
    assert isinstance(block, ResnetBlock)
    # Original layout: pad, conv, norm, relu, dropout, pad, conv, norm.
    assert isinstance(block.conv_block[4], nn.Dropout)
    assert isinstance(block.conv_block[6], nn.Conv2d)
    assert "model.10.conv_block.6.weight" in dropped.state_dict()
    assert "model.10.conv_block.5.weight" in plain.state_dict()
    dropped.train()
    x = torch.randn(1, 3, 32, 32)
    assert dropped(x).shape == x.shape


def test_unet_dropout_inserts_dropout() -> None:
    net = build_generator("unet_256", 3, 3, ngf=4, use_dropout=True)
    dropouts = [m for m in net.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 3  # num_downs - 5 middle ngf*8 blocks
    assert not any(
        isinstance(m, nn.Dropout) for m in build_generator("unet_256", 3, 3, ngf=4).modules()
    )


@pytest.mark.parametrize("padding_type", ["reflect", "replicate", "zero"])
def test_resnet_padding_types(padding_type: str) -> None:
    net = ResnetGenerator(3, 3, ngf=4, n_blocks=2, padding_type=padding_type).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    pads = (nn.ReflectionPad2d, nn.ReplicationPad2d)
    n_pads = sum(isinstance(m, pads) for m in net.model[10].modules())
    assert n_pads == (0 if padding_type == "zero" else 2)


@pytest.mark.parametrize("norm", ["batch", "none"])
@pytest.mark.parametrize(
    "build",
    [
        lambda norm: build_generator("resnet_6blocks", 3, 3, ngf=4, norm=norm),
        lambda norm: build_generator("unet_128", 3, 3, ngf=4, norm=norm),
        lambda norm: build_discriminator("basic", 3, ndf=4, norm=norm),
        lambda norm: build_discriminator("pixel", 3, ndf=4, norm=norm),
    ],
    ids=["resnet", "unet", "basic", "pixel"],
)
def test_other_norms_build_and_run(norm: str, build: Callable[[str], nn.Module]) -> None:
    net = build(norm)
    size = 128
    x = torch.randn(2, 3, size, size)
    y = net.train()(x)
    y.mean().backward()
    with torch.no_grad():
        net.eval()(x)
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert has_bn == (norm == "batch")
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in net.modules())
    if norm == "none":
        # Identity placeholders keep the indices; every conv then has a bias.
        assert any(isinstance(m, nn.Identity) for m in net.modules())
        convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        assert all(c.bias is not None for c in convs)


def test_norm_none_keeps_indices() -> None:
    inst = build_discriminator("basic", 3, ndf=4, norm="instance")
    none = build_discriminator("basic", 3, ndf=4, norm="none")
    weights = lambda net: [k for k in net.state_dict() if k.endswith("weight")]  # noqa: E731
    assert weights(inst) == weights(none)


def test_get_norm_layer() -> None:
    inst = get_norm_layer("instance")(8)
    assert isinstance(inst, nn.InstanceNorm2d)
    assert not inst.affine and not inst.track_running_stats
    bn = get_norm_layer("batch")(8)
    assert isinstance(bn, nn.BatchNorm2d) and bn.affine and bn.track_running_stats
    assert isinstance(get_norm_layer("none")(8), nn.Identity)


def test_registries() -> None:
    assert set(GENERATORS) == {"resnet_9blocks", "resnet_6blocks", "unet_32", "unet_64", "unet_128", "unet_256"}
    assert set(DISCRIMINATORS) == {"basic", "n_layers", "pixel"}
    assert isinstance(build_generator("unet_128", 3, 3, ngf=2), UnetGenerator)
    assert isinstance(build_discriminator("n_layers", 3, ndf=2, n_layers=2), NLayerDiscriminator)


@pytest.mark.parametrize(
    ("call", "choices"),
    [
        (lambda: get_norm_layer("group"), ["instance", "batch", "none"]),
        (lambda: build_generator("resnet_12blocks", 3, 3), list(GENERATORS)),
        (lambda: build_discriminator("huge", 3), list(DISCRIMINATORS)),
        (lambda: build_generator("unet_128", 3, 3, norm="layer"), ["instance", "batch", "none"]),
        (lambda: ResnetGenerator(3, 3, padding_type="circular"), ["reflect", "replicate", "zero"]),
    ],
    ids=["norm", "generator", "discriminator", "norm-via-builder", "padding"],
)
def test_unknown_names_raise(call: Callable[[], object], choices: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        call()
    for choice in choices:
        assert choice in str(info.value)


def test_invalid_sizes_raise() -> None:
    with pytest.raises(ValueError):
        UnetGenerator(3, 3, num_downs=4)
    with pytest.raises(ValueError):
        NLayerDiscriminator(3, n_layers=0)
    with pytest.raises(ValueError):
        ResnetGenerator(3, 3, n_blocks=-1)
