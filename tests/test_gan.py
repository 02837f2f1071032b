"""The shared GAN base: loss values on known inputs, pool semantics, schedules, init, the
alternating update."""

import math

import pytest
import torch
from torch import nn

from cyclegan.models import gan, image_pool, init, losses
from cyclegan.training.config import OptimConfig, with_optimizers


def _sig(x):
    return 1 / (1 + math.exp(-x))


# -- losses on known inputs ------------------------------------------------------------------

REAL = torch.tensor([2.0, -1.0])
FAKE = torch.tensor([0.5, -3.0])


def test_minimax_values():
    loss = losses.make_loss("minimax")
    d = -(math.log(_sig(2)) + math.log(_sig(-1))) / 2 - (math.log(1 - _sig(0.5)) + math.log(1 - _sig(-3))) / 2
    g = (math.log(1 - _sig(0.5)) + math.log(1 - _sig(-3))) / 2
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx(d, rel=1e-5)
    assert loss.g_loss(FAKE).item() == pytest.approx(g, rel=1e-5)


def test_nonsaturating_and_vanilla_alias():
    g = -(math.log(_sig(0.5)) + math.log(_sig(-3))) / 2
    for name in ("nonsaturating", "vanilla"):
        loss = losses.make_loss(name)
        assert loss.g_loss(FAKE).item() == pytest.approx(g, rel=1e-5)
        assert loss.d_loss(REAL, FAKE).item() == pytest.approx(losses.make_loss("minimax").d_loss(REAL, FAKE).item())


def test_lsgan_values():
    loss = losses.make_loss("lsgan")
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx(((1 + 4) / 2) + (0.25 + 9) / 2)
    assert loss.g_loss(FAKE).item() == pytest.approx((0.25 + 16) / 2)


def test_wgan_and_hinge_values():
    w = losses.make_loss("wgangp")
    assert w.needs_gradient_penalty
    assert w.d_loss(REAL, FAKE).item() == pytest.approx(-1.25 - 0.5)
    assert w.g_loss(FAKE).item() == pytest.approx(1.25)
    h = losses.make_loss("hinge")
    # relu(1-2)=0, relu(1+1)=2 -> 1 ; relu(1.5)=1.5, relu(-2)=0 -> 0.75
    assert h.d_loss(REAL, FAKE).item() == pytest.approx(1.75)
    assert h.g_loss(FAKE).item() == pytest.approx(1.25)


def test_losses_are_float32_under_half_inputs():
    for name in losses.LOSSES:
        loss = losses.make_loss(name)
        assert loss.d_loss(REAL.bfloat16(), FAKE.bfloat16()).dtype == torch.float32
        assert loss.g_loss(FAKE.half()).dtype == torch.float32


def test_unknown_loss_lists_choices():
    with pytest.raises(ValueError, match="lsgan"):
        losses.make_loss("nope")


def test_gradient_penalty_zero_for_unit_gradient_and_positive_otherwise():
    real, fake = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    # D(x) = sum(x * w) / ||w|| has gradient norm exactly 1 everywhere.
    w = torch.randn(3, 2, 2)
    unit = lambda x: (x * w / w.norm()).flatten(1).sum(1)  # noqa: E731
    assert losses.gradient_penalty(unit, real, fake).item() == pytest.approx(0.0, abs=1e-10)
    double = lambda x: 2 * unit(x)  # noqa: E731  gradient norm 2 -> penalty (2-1)^2 = 1
    assert losses.gradient_penalty(double, real, fake).item() == pytest.approx(1.0, rel=1e-5)


# -- image pool --------------------------------------------------------------------------------


def test_pool_disabled_returns_input():
    pool = image_pool.ImagePool(0)
    x = torch.randn(3, 1, 2, 2)
    assert pool.query(x) is x


def test_pool_fills_then_mixes_history():
    pool = image_pool.ImagePool(4, seed=0)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling: returned as is
    assert len(pool) == 4
    returned_old = 0
    for step in range(50):
        new = torch.full((1, 1, 1, 1), 100.0 + step)
        out = pool.query(new)
        assert out.shape == new.shape
        stored = {float(t) for t in torch.cat(pool.images).flatten()}
        assert len(pool) == 4
        if out.item() != new.item():
            returned_old += 1
            assert new.item() in stored  # swapped in
            assert out.item() not in stored
    assert 10 < returned_old < 40  # about half the time


def test_pool_state_round_trip_reproduces_draws():
    a = image_pool.ImagePool(3, seed=7)
    for i in range(5):
        a.query(torch.full((2, 1, 1, 1), float(i)))
    b = image_pool.ImagePool(3, seed=99)
    b.load_state_dict(a.state_dict())
    for i in range(10):
        x = torch.full((2, 1, 1, 1), 10.0 + i)
        assert torch.equal(a.query(x), b.query(x))


# -- requires_grad, init, schedules --------------------------------------------------------------


def test_set_requires_grad():
    nets = [nn.Linear(2, 2), nn.Conv2d(1, 1, 1)]
    init.set_requires_grad(nets, False)
    assert not any(p.requires_grad for n in nets for p in n.parameters())
    init.set_requires_grad(nets[0], True)
    assert all(p.requires_grad for p in nets[0].parameters())


@pytest.mark.parametrize("kind", init.INIT_TYPES)
def test_init_weights(kind):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(16, 64, 3), nn.BatchNorm2d(64), nn.Linear(64, 64))
    init.init_weights(net, kind, 0.02)
    conv = net[0].weight
    assert torch.count_nonzero(net[0].bias) == 0
    if kind == "normal":
        assert conv.std().item() == pytest.approx(0.02, rel=0.1)
    if kind == "orthogonal":
        w = net[2].weight
        assert torch.allclose(w @ w.T, 0.02**2 * torch.eye(64), atol=1e-6)
    assert net[1].weight.mean().item() == pytest.approx(1.0, abs=0.02)


def test_init_unknown():
    with pytest.raises(ValueError, match="xavier"):
        init.init_weights(nn.Linear(1, 1), "bogus")


def test_linear_schedule_matches_paper():
    f = [gan.lr_factor("linear", e, 100, 100) for e in range(200)]
    assert f[0] == 1.0 and f[99] == 1.0
    assert f[100] == pytest.approx(100 / 101)
    assert f[199] == pytest.approx(1 / 101)
    assert all(a > b for a, b in zip(f[100:], f[101:]))
    # The original release's pitfall: 1 constant epoch and no decay must not train at lr 0.
    assert gan.lr_factor("linear", 0, 1, 0) == 1.0


def test_scheduler_lr_used_at_first_and_last_epoch():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = gan.make_scheduler(opt, "linear", 2, 2)
    used = []
    for _ in range(4):
        used.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert used == pytest.approx([1.0, 1.0, 2 / 3, 1 / 3])


def test_step_and_cosine_schedules():
    assert gan.lr_factor("step", 49, 1, 1, step_every=50) == 1.0
    assert gan.lr_factor("step", 50, 1, 1, step_every=50) == pytest.approx(0.1)
    assert gan.lr_factor("cosine", 0, 5, 5) == 1.0
    assert gan.lr_factor("cosine", 5, 5, 5) == pytest.approx(0.5)
    assert gan.lr_factor("cosine", 10, 5, 5) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="cosine"):
        gan.lr_factor("wiggly", 0, 1, 1)


# -- the alternating update ------------------------------------------------------------------------


class ToyGAN(gan.GANModel):
    """1-D GAN: G shifts noise, D is linear. Counts D and G updates."""

    def __init__(self, loss: str, d_steps: int = 1, g_first: bool = False):
        super().__init__(d_steps=d_steps, g_first=g_first)
        self.generators = nn.ModuleDict({"G": nn.Linear(1, 1)})
        self.discriminators = nn.ModuleDict({"D": nn.Linear(1, 1)})
        self.loss = losses.make_loss(loss)
        with_optimizers(self, OptimConfig(lr=1e-2))
        self.order: list[str] = []
        self.d_grad_during_g = None

    def generate(self, batch):
        return {"fake": self.generators["G"](batch["z"])}

    def generator_loss(self, batch, out):
        self.order.append("G")
        loss = self.loss.g_loss(self.discriminators["D"](out["fake"]))
        self.d_grad_during_g = any(p.requires_grad for p in self.discriminators.parameters())
        return loss, {"G": loss}

    def discriminator_loss(self, batch, out):
        self.order.append("D")
        D = self.discriminators["D"]
        fake = out["fake"].detach()
        loss = self.loss.d_loss(D(batch["x"]), D(fake))
        if self.loss.needs_gradient_penalty:
            # weight 1, not 10: with a linear 1-D critic a strong penalty traps a negative slope
            loss = loss + losses.gradient_penalty(D, batch["x"], fake)
        return loss, {"D": loss}


@pytest.mark.parametrize("loss", sorted(set(losses.LOSSES)))
def test_each_loss_trains_and_d_separates(loss):
    torch.manual_seed(0)
    model = ToyGAN(loss)
    batch = {"x": torch.randn(64, 1) + 3.0, "z": torch.randn(64, 1)}
    D = model.discriminators["D"]
    gap0 = (D(batch["x"]) - D(model.generators["G"](batch["z"]))).mean().item()
    # Train D only: its outputs must move apart (real up, fake down).
    init.set_requires_grad(model.generators, False)
    for _ in range(50):
        with torch.no_grad():
            out = model.generate(batch)
        loss_d, _ = model.discriminator_loss(batch, out)
        model._update("D", loss_d)
    gap1 = (D(batch["x"]) - D(model.generators["G"](batch["z"]))).mean().item()
    assert gap1 > gap0
    # Full alternating steps stay finite.
    init.set_requires_grad(model.generators, True)
    for _ in range(20):
        logs = model.train_step(batch)
        assert all(torch.isfinite(v) for v in logs.values())


def test_k_d_steps_per_g_step_and_d_frozen_during_g():
    model = ToyGAN("nonsaturating", d_steps=3)
    batch = {"x": torch.randn(8, 1), "z": torch.randn(8, 1)}
    for _ in range(6):
        model.train_step(batch)
    assert model.order == ["D", "G", "D", "D", "D", "G", "D", "D"]
    assert model.d_grad_during_g is False
    assert all(p.requires_grad for p in model.discriminators.parameters())


def test_g_first_order():
    model = ToyGAN("lsgan", g_first=True)
    batch = {"x": torch.randn(8, 1), "z": torch.randn(8, 1)}
    model.train_step(batch)
    model.train_step(batch)
    assert model.order == ["G", "D", "G", "D"]


def test_precision_rejects_unknown():
    with pytest.raises(ValueError, match="bf16"):
        gan.Precision("cpu", "fp8")
