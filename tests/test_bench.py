"""``cyclegan bench``: the sweep, its JSON and table, and compile failures reported per row; plus
the Translator speed options the translate rows exercise. Tiny models (ResNet-6, ngf/ndf 4, 32 px)
on the CPU, one or two iterations: these check the machinery, not the figures."""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import pytest
import torch

from cyclegan.cli.bench import add_bench_args
from cyclegan.bench.table import markdown_table
from cyclegan.bench.runner import run_bench
from cyclegan.inference.loading import GeneratorSpec, LoadedGenerator
from cyclegan.inference.translator import Translator
from tiny_models import one_thread, tiny_generators  # noqa: F401

# fp32 unless a test asks for more: the default "fp32 auto" is one row on most CPUs but two (fp32,
# bf16) on CPUs with native bf16, and these tests count rows
TINY = ["--size", "32", "--netG", "resnet_6blocks", "--ngf", "4", "--ndf", "4", "--device", "cpu",
        "--warmup", "1", "--iters", "1", "--repeats", "2", "--threads", "1", "--precision", "fp32"]


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="cyclegan bench")
    add_bench_args(p)
    return p.parse_args([*TINY, *argv])


def test_sweep_writes_one_row_per_combination(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = _args("--mode", "train", "translate", "--channels-last", "on", "off", "--batch-size", "1", "2",
                 "--json", str(out), "--markdown")
    assert run_bench(args) == 0
    doc = json.loads(out.read_text())
    rows = doc["rows"]
    want = set(itertools.product(("train", "translate"), (1, 2), (False, True)))
    assert len(rows) == len(want) == 8
    assert {(r["mode"], r["batch_size"], r["channels_last"]) for r in rows} == want
    for r in rows:
        assert r["error"] is None, r["error"]
        assert r["iters_per_sec"] > 0 and r["images_per_sec"] == pytest.approx(r["iters_per_sec"] * r["batch_size"])
        assert r["iters_per_sec_min"] <= r["iters_per_sec"] <= r["iters_per_sec_max"]
        assert len(r["sec_per_iter_runs"]) == 2
        assert r["flops_per_iter"] > 0 and r["achieved_flops_per_sec"] > 0
        assert r["peak_memory_bytes"] > 0
        assert r["speedup_vs_baseline"] > 0
        assert r["fraction_of_peak"] is None  # no peak known for a CPU unless --peak-tflops
    # the baseline (contiguous) comes first in every (mode, size, batch) group, whatever the flag order
    for group in (rows[i: i + 2] for i in range(0, 8, 2)):
        base, other = group
        assert base["baseline"] and not base["channels_last"] and base["speedup_vs_baseline"] == 1.0
        assert not other["baseline"] and other["channels_last"]
        assert other["speedup_vs_baseline"] == pytest.approx(base["sec_per_iter"] / other["sec_per_iter"])
        assert other["flops_per_iter"] == base["flops_per_iter"]
    flops = {(r["mode"], r["batch_size"]): r["flops_per_iter"] for r in rows}
    assert flops["train", 2] == pytest.approx(2 * flops["train", 1], rel=0.01)  # FLOPs scale with the batch
    assert flops["translate", 1] < flops["train", 1]
    assert doc["machine"]["torch"] == torch.__version__ and doc["machine"]["cpu"]
    assert "RSS" in doc["memory_measured"] or "ru_maxrss" in doc["memory_measured"]

    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split()[:3] == ["mode", "size", "batch"]
    assert sum(line.lstrip().startswith(("train", "translate")) for line in printed) == 8
    md = [line for line in printed if line.startswith("|")]
    assert len(md) == 2 + 8 and md[0].startswith("| mode | size | batch |")
    assert md == markdown_table(rows).splitlines()


def test_peak_tflops_gives_the_fraction_of_peak(tmp_path):
    out = tmp_path / "bench.json"
    assert run_bench(_args("--mode", "translate", "--channels-last", "off", "--peak-tflops", "1",
                           "--json", str(out))) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["fraction_of_peak"] == pytest.approx(row["achieved_flops_per_sec"] / 1e12)


def test_a_compile_failure_is_reported_in_its_row_and_the_sweep_goes_on(tmp_path, capsys):
    out = tmp_path / "bench.json"
    # an unknown backend fails in torch.compile itself, as a missing compiler would: a real failure
    args = _args("--mode", "train", "translate", "--channels-last", "off", "--compile", "on", "off",
                 "--compile-backend", "no_such_backend", "--json", str(out))
    assert run_bench(args) == 1
    rows = json.loads(out.read_text())["rows"]
    assert [(r["mode"], r["compile"]) for r in rows] == [("train", False), ("train", True),
                                                         ("translate", False), ("translate", True)]
    for eager, compiled in (rows[:2], rows[2:]):
        assert eager["error"] is None and eager["iters_per_sec"] > 0 and eager["speedup_vs_baseline"] == 1.0
        assert compiled["error"].startswith("torch.compile failed") and "no_such_backend" in compiled["error"]
        assert "iters_per_sec" not in compiled
    table = capsys.readouterr()
    assert table.out.count("error: torch.compile failed") == 2
    assert "2 of 4 rows failed" in table.err


def test_compile_with_a_working_backend_times_the_compiled_translator(tmp_path):
    out = tmp_path / "bench.json"
    # "eager" runs dynamo's graph capture without code generation: a real compile, in seconds
    assert run_bench(_args("--mode", "translate", "--channels-last", "off", "--compile", "on", "off",
                           "--compile-backend", "eager", "--json", str(out))) == 0
    (base, compiled) = json.loads(out.read_text())["rows"]
    assert compiled["compile"] and compiled["error"] is None and compiled["warmup_iters"] == 2
    assert compiled["speedup_vs_baseline"] > 0 and base["speedup_vs_baseline"] == 1.0


# -- the Translator speed options ----------------------------------------------------------------


def _gen() -> LoadedGenerator:
    g = tiny_generators()["G_A"]
    return LoadedGenerator(g.eval().requires_grad_(False), GeneratorSpec("resnet_6blocks", 4), "AtoB", 32,
                           Path("<tiny>"), "tiny")


X = torch.rand(2, 3, 32, 40, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_translator_channels_last_and_compile_give_the_eager_output():
    want = Translator(_gen(), device="cpu", full_res=True).forward(X)
    fast = Translator(_gen(), device="cpu", full_res=True, channels_last=True, compile=True, compile_backend="eager")
    assert fast.compiled and fast.compile_error is None
    got = fast.forward(X)
    assert fast.compiled and got.is_contiguous() and torch.allclose(got, want, atol=1e-4)  # channels_last: other conv kernels
    # tiles run eagerly, channels_last included
    tiled = Translator(_gen(), device="cpu", full_res=True, tile=16, tile_overlap=4, channels_last=True)
    assert tiled.forward(X).shape == want.shape


def test_translator_falls_back_to_eager_when_compilation_fails(caplog):
    want = Translator(_gen(), device="cpu", full_res=True).forward(X)
    # an unknown backend: torch.compile itself raises
    t = Translator(_gen(), device="cpu", full_res=True, compile=True, compile_backend="no_such_backend")
    assert not t.compiled and "no_such_backend" in t.compile_error
    assert torch.equal(t.forward(X), want)

    def broken_backend(gm, example_inputs):  # like a missing C compiler: fails on the first call
        raise RuntimeError("no compiler here")

    t = Translator(_gen(), device="cpu", full_res=True, compile=True, compile_backend=broken_backend)
    assert t.compiled
    with caplog.at_level("WARNING", logger="cyclegan.translate"):
        got = t.forward(X)
    assert not t.compiled and "no compiler here" in t.compile_error and torch.equal(got, want)
    assert "translating in eager mode" in caplog.text


def test_channels_last_translator_leaves_the_shared_generator_alone():
    gen = _gen()
    plain = Translator(gen, device="cpu", full_res=True, winograd=False)
    want = plain.forward(X)
    fast = Translator(gen, device="cpu", full_res=True, channels_last=True, winograd=False)
    assert all(p.is_contiguous() for p in gen.net.parameters())  # the loaded generator: unchanged
    assert fast.net is not plain.net and torch.allclose(fast.forward(X), want, atol=1e-4)
    assert torch.equal(plain.forward(X), want)
    assert fast.net is not Translator(gen, device="cpu", full_res=True, channels_last=True).net


def test_loop_mode_times_the_real_train_loop_on_image_files(tmp_path, capsys):
    from tiny_models import write_image

    for domain in ("trainA", "trainB"):
        for i in range(3):
            write_image(tmp_path / "data" / domain / f"{i}.png", 40, 36, seed=i)  # real files, resized by the loop
    out = tmp_path / "bench.json"
    args = _args("--mode", "loop", "loop-dev", "train", "--channels-last", "off", "--precision", "auto", "fp32",
                 "--dataroot", str(tmp_path / "data"), "--loop-workers", "0", "--repeats", "1", "--iters", "2",
                 "--json", str(out))
    assert run_bench(args) == 0
    rows = json.loads(out.read_text())["rows"]
    loop = [r for r in rows if r["mode"] == "loop"]
    assert loop and all(r["error"] is None and r["sec_per_iter"] > 0 and r["iters_per_sec"] > 0 for r in loop)
    assert loop[0]["baseline"] and loop[0]["flops_per_iter"] == next(r for r in rows if r["mode"] == "train")["flops_per_iter"]
    assert all(r["data_path"].startswith("data: DataLoader, 0 workers") for r in loop)
    # loop-dev: the same loop with the images held and cropped on the device (train's --data-on-device on)
    dev = [r for r in rows if r["mode"] == "loop-dev"]
    assert dev and all(r["error"] is None and r["sec_per_iter"] > 0 for r in dev)
    assert all(r["data_path"].startswith("data: on the device (cpu; A 3x3x36x36") for r in dev)
    # auto resolves through core.fastpath (fp32 on this CPU unless it has native bf16) and says so
    from cyclegan.core.fastpath import choose

    auto = choose("cpu", "train", "auto", compile=False).precision
    table = capsys.readouterr().out
    assert (f"auto:{auto}" in table) == (auto != "fp32")  # an auto equal to a given fp32 is one row, not two
    assert {r["precision"] for r in rows} == {auto, "fp32"}


def test_loop_mode_without_dataroot_writes_synthetic_pngs(tmp_path):
    from cyclegan.bench.loop import images_for, synthetic_folder

    # enough images that no epoch end (and its checkpoint) falls inside a timed run
    assert images_for(300, 2) == 600 and images_for(2, 1) == 8
    root = synthetic_folder(tmp_path, 20, count=2)
    from PIL import Image

    with Image.open(root / "trainB" / "001.png") as im:
        assert im.size == (20, 20) and im.mode == "RGB"
    out = tmp_path / "bench.json"
    args = _args("--mode", "loop-dev", "--channels-last", "off", "--repeats", "1", "--iters", "1", "--loop-workers", "0",
                 "--loop-channels", "1", "--json", str(out))
    assert run_bench(args) == 0
    row, = json.loads(out.read_text())["rows"]  # 8 grayscale images per domain, resized to 36 for 32 px crops
    assert row["error"] is None and row["data_path"].startswith("data: on the device (cpu; A 8x1x36x36")


def test_every_model_kind_is_timed_by_the_one_harness(tmp_path):
    # --model picks the kind through the training registry: the same model (and Adam) that
    # `cyclegan train --model KIND` builds, on a random batch of its shape
    out = tmp_path / "bench.json"
    for model in ("cut", "mnist"):
        args = _args("--model", model, "--mode", "train", "--channels-last", "off", "--precision", "fp32",
                     "--repeats", "1", "--iters", "1", "--json", str(out))
        assert run_bench(args) == 0
        row, = json.loads(out.read_text())["rows"]
        assert row["error"] is None and row["model"] == model and row["flops_per_iter"] > 0
    with pytest.raises(ValueError, match="--model mnist: only --mode train"):
        run_bench(_args("--model", "mnist", "--mode", "train", "translate"))


def test_compile_auto_is_what_train_would_pick_for_the_row(cpu_with):
    from cyclegan.bench.runner import _Compile, _resolved_compiles
    from cyclegan.bench.table import row_cells

    cpu_with("avx512_bf16 amx_bf16 amx_tile")
    cpu = torch.device("cpu")
    # the default "off auto": a compiled row only where train would compile (AMX, bf16, >= 128 px)
    assert _resolved_compiles(["off", "auto"], "train", cpu, "bf16", 128, None) == \
        [_Compile(False, None, False), _Compile(True, None, True)]
    assert _resolved_compiles(["off", "auto"], "train", cpu, "bf16", 64, None) == [_Compile(False, None, False)]
    assert _resolved_compiles(["off", "auto"], "train", cpu, "fp32", 256, None) == [_Compile(False, None, False)]
    assert _resolved_compiles(["off", "auto"], "translate", cpu, "bf16", 256, None) == [_Compile(False, None, False)]
    # an explicit "on" with the same mode makes auto's row a repeat; a given mode is kept
    assert _resolved_compiles(["on", "auto"], "train", cpu, "bf16", 128, None) == [_Compile(True, None, False)]
    assert _resolved_compiles(["auto"], "train", cpu, "bf16", 128, "max-autotune") == \
        [_Compile(True, "max-autotune", True)]
    cells = row_cells({"mode": "train", "size": 128, "batch_size": 1, "precision": "bf16", "precision_auto": True,
                       "channels_last": False, "compile": True, "compile_auto": True, "error": "x"})
    assert cells[3:6] == ["auto:bf16", "off", "auto:on"]
