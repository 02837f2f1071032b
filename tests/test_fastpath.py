"""What --precision auto / --compile auto resolve to on each kind of machine (the CPU's flags
are set through CYCLEGAN_CPU_FLAGS, so every row of the table is checked on any machine)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from cyclegan.core import fastpath
from cyclegan.core.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("flags, train, translate", [
    ("fpu sse avx2 fma", "fp32", "fp32"),                              # AVX2 only: bf16 is emulated
    ("avx2 avx512f avx512bw avx512_vnni", "fp32", "fp32"),             # AVX-512 without bf16 (this CI's kind)
    ("AuthenticAMD avx2 avx512f avx512_bf16", "bf16", "fp32"),         # AMD EPYC Zen 4: bf16 1.6-1.7x
    ("GenuineIntel avx2 avx512f avx512_bf16", "fp32", "fp32"),         # Cooper Lake, or AMX hidden: 0.75x
    ("avx2 avx512f avx512_bf16", "fp32", "fp32"),                      # vendor unknown: not measured
    ("GenuineIntel avx2 avx512f avx512_bf16 amx_bf16 amx_tile", "bf16", "bf16"),  # Sapphire Rapids: AMX
    ("avx2 avx512f avx512_bf16 amx_bf16 amx_tile", "bf16", "bf16"),
    ("", "fp32", "fp32"),                                              # flags unknown (not Linux)
])
def test_cpu_defaults_follow_native_bf16(cpu_with, flags, train, translate):
    cpu_with(flags)
    got = fastpath.choose("cpu", "train")
    assert (got.precision, got.compile) == (train, False)
    assert got.describe() == f"{train} + eager" and got.why
    assert fastpath.choose("cpu", "translate").precision == translate


AMX = "avx512_bf16 amx_bf16 amx_tile"


@pytest.mark.parametrize("flags, precision, side, static, compiled", [
    (AMX, "auto", 128, True, True),                  # measured: 1.2-1.3x over eager bf16 at 128 px
    (AMX, "bf16", 256, True, True),
    (AMX, "auto", 64, True, False),                  # small crops: the compile minute hardly pays back
    (AMX, "auto", None, True, False),                # crop size unknown
    (AMX, "auto", 256, False, False),                # --preprocess none: sizes vary
    (AMX, "fp32", 256, True, False),                 # fp32 on purpose: compiling gave 1.02-1.07x
    ("AuthenticAMD avx512_bf16", "auto", 256, True, False),  # bf16 without AMX: compiling not measured there
    ("GenuineIntel avx512_bf16", "bf16", 256, True, False),  # measured 1.05x over eager bf16, which loses to fp32
    ("avx2 fma", "auto", 256, True, False),          # no native bf16: fp32 eager
])
def test_amx_cpus_compile_training_from_128px(cpu_with, flags, precision, side, static, compiled):
    cpu_with(flags)
    got = fastpath.choose("cpu", "train", precision, static_shapes=static, image_side=side)
    assert got.compile is compiled and got.compile_mode is None
    if compiled:
        assert got.describe() == "bf16 + torch.compile" and f"{side} px crops" in got.why
    assert not fastpath.choose("cpu", "translate", image_side=side).compile


def test_the_trainer_weighs_compiling_by_its_crop_size(cpu_with, tmp_path):
    # in process, no step run: the Trainer resolves auto from the data set's first sample
    from cyclegan.training import kinds
    from cyclegan.training.loop import Trainer
    from test_train import make_domain, tiny_run

    cpu_with(AMX)
    make_domain(tmp_path / "data" / "trainA", 1, 0, size=(130, 140))
    make_domain(tmp_path / "data" / "trainB", 1, 1, size=(130, 140))
    for size, compiled in ((64, False), (128, True)):
        cfg = tiny_run(tmp_path / "data", tmp_path / "runs", size=size, load_size=size, name=f"s{size}")
        job = kinds.kind(cfg.kind).training.job(cfg)
        trainer = Trainer(job.model, cfg, job.dataset, export=job.export)
        assert (trainer.fast_path.precision, trainer.fast_path.compile) == ("bf16", compiled), size


def test_explicit_choices_are_kept(cpu_with):
    cpu_with("AuthenticAMD avx512_bf16")
    got = fastpath.choose("cpu", "train", precision="fp32", compile=False)
    assert got == fastpath.FastPath("fp32", False, None, "as given")
    assert fastpath.choose("cpu", "train", precision="bf16").precision == "bf16"
    assert fastpath.choose("cpu", "train", compile=True, compile_mode="max-autotune").describe() == \
        "bf16 + torch.compile (max-autotune)"
    with pytest.raises(ValueError, match="--precision fp8"):
        fastpath.choose("cpu", precision="fp8")


def test_the_flags_are_read_once(cpu_with, monkeypatch):
    cpu_with("avx512_bf16")
    assert fastpath.native_cpu_bf16()
    monkeypatch.setenv("CYCLEGAN_CPU_FLAGS", "avx2")  # not re-read until the cache is cleared
    assert fastpath.native_cpu_bf16()


def test_the_vendor_is_the_word_with_capitals(cpu_with):
    cpu_with("avx2 AuthenticAMD avx512_bf16")
    assert fastpath.cpu_info() == fastpath.CpuInfo("AuthenticAMD", frozenset({"avx2", "avx512_bf16"}))
    cpu_with("avx2,avx512_bf16")
    assert fastpath.cpu_info() == fastpath.CpuInfo("", frozenset({"avx2", "avx512_bf16"}))


@pytest.mark.parametrize("cap, left", [
    ("AVX512_CORE_BF16", {"avx512f", "avx512_bf16"}),   # the kernels of a CPU without AMX
    ("avx512_core_amx", {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}),
    ("AVX512_CORE", {"avx512f"}),
    ("ALL", {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}),
])
def test_a_onednn_isa_cap_takes_away_what_its_kernels_may_not_use(cpu_with, monkeypatch, cap, left):
    # /proc/cpuinfo of an AMX Xeon, read on any machine (its kernels need not run here); cpu_with
    # clears the cached answer afterwards
    monkeypatch.delenv("CYCLEGAN_CPU_FLAGS", raising=False)
    monkeypatch.setattr(fastpath, "_read_cpuinfo",
                        lambda: ("GenuineIntel", frozenset({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})))
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    fastpath.cpu_info.cache_clear()
    assert fastpath.cpu_flags() == left
    expected = "bf16" if "amx_bf16" in left else "fp32"  # Intel without AMX: fp32 (bf16 measured 0.75x)
    assert fastpath.choose("cpu", "train").precision == expected


def test_this_machine_reads_real_flags(monkeypatch):
    for var in ("CYCLEGAN_CPU_FLAGS", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(var, raising=False)
    fastpath.cpu_info.cache_clear()
    try:
        flags = fastpath.cpu_flags()
        if torch.cuda.is_available() or not flags:
            pytest.skip("no /proc/cpuinfo flags here")
        assert "sse2" in flags or "fp" in flags  # x86-64 or arm64
        assert fastpath.native_cpu_bf16() == bool({"avx512_bf16", "amx_bf16"} & flags)
        if "sse2" in flags:  # x86's /proc/cpuinfo names the vendor (arm64's does not)
            assert fastpath.cpu_vendor() and fastpath.cpu_vendor() != fastpath.cpu_vendor().lower()
    finally:
        fastpath.cpu_info.cache_clear()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_defaults_to_bf16_and_graphs_for_training():
    train = fastpath.choose("cuda", "train")
    assert (train.precision, train.compile, train.compile_mode) == ("bf16", True, "reduce-overhead")
    assert train.describe() == "bf16 + CUDA graphs"
    assert not fastpath.choose("cuda", "translate").compile
    assert not fastpath.choose("cuda", "train", static_shapes=False).compile


TINY = ["--ngf", "4", "--ndf", "4", "--size", "32", "--netG", "resnet_6blocks", "--num-workers", "0",
        "--preview-every", "0", "--max-iters", "2"]


def _train(tmp_path, name: str, *flags: str, cpu_flags: str) -> subprocess.CompletedProcess:
    from test_train import make_domain

    data = tmp_path / "data"
    if not data.exists():
        make_domain(data / "trainA", 2, 0)
        make_domain(data / "trainB", 2, 1)
    env = {**os.environ, "CYCLEGAN_CPU_FLAGS": cpu_flags, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "cyclegan", "train", *TINY, "--dataroot", str(data),
                           "--runs-dir", str(tmp_path / "runs"), "--name", name, *flags],
                          capture_output=True, text=True, env=env, timeout=300)


def test_train_header_and_config_say_which_path_ran(tmp_path):
    # A CPU with native bf16 that measured faster in it (as the flags say) trains in bf16 by
    # default; the header and config.yaml say so; --precision fp32 --no-compile is the reference
    # arithmetic anywhere.
    r = _train(tmp_path, "auto", cpu_flags="AuthenticAMD avx2 avx512f avx512_bf16")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "fast path: bf16 + eager (AuthenticAMD CPU with avx512_bf16" in r.stderr
    saved = yaml.safe_load((tmp_path / "runs" / "auto" / "config.yaml").read_text())
    assert saved["loop"]["precision"] == "auto" and saved["fast_path"]["precision"] == "bf16"
    assert saved["fast_path"]["compile"] is False

    r = _train(tmp_path, "ref", "--precision", "fp32", "--no-compile", cpu_flags="avx512_bf16")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "fast path: fp32 + eager (as given)" in r.stderr
    saved = yaml.safe_load((tmp_path / "runs" / "ref" / "config.yaml").read_text())
    assert saved["fast_path"] == {"precision": "fp32", "compile": False, "compile_mode": None, "why": "as given",
                                  "step_graph": None}

    r = _train(tmp_path, "avx2", cpu_flags="avx2 fma")
    assert r.returncode == 0 and "fast path: fp32 + eager (CPU without native bf16" in r.stderr


def test_a_compile_failure_falls_back_to_eager_in_one_line(tmp_path, monkeypatch):
    # A real failure: inductor finds no C++ compiler, as on a machine without one (its cache is
    # fresh, so nothing compiled earlier is reused). The run goes on in eager mode, says so in one
    # line, writes its previews (eager too) and saves a plain model.
    for var, value in (("CXX", "/nonexistent/c++"), ("CC", "/nonexistent/cc"),
                       ("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor")), ("TORCHINDUCTOR_FX_GRAPH_CACHE", "0")):
        monkeypatch.setenv(var, value)
    r = _train(tmp_path, "nocc", "--compile", "--preview-every", "1", "--precision", "fp32", cpu_flags="avx2")
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [line for line in r.stderr.splitlines() if "going on eagerly" in line]
    assert len(lines) == 1 and "the compiled step failed at iteration 1" in lines[0], r.stderr[-3000:]
    assert lines[0].endswith("going on eagerly from the same state")
    assert "Traceback" not in r.stderr
    run = tmp_path / "runs" / "nocc"
    state = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert state["counters"]["iteration"] == 2 and not any("_orig_mod" in k for k in state["model"])
    assert sorted(p.name for p in (run / "previews").iterdir()) == ["iter_00000001.png", "iter_00000002.png"]


def test_an_amx_cpu_translates_in_bf16_without_winograd(cpu_with):
    # bf16 is real arithmetic everywhere (emulated where the CPU lacks it), so this runs on any CPU
    from pathlib import Path as P

    from cyclegan.inference.loading import GeneratorSpec, LoadedGenerator
    from cyclegan.inference.translator import Translator
    from tiny_models import tiny_generators

    gen = LoadedGenerator(tiny_generators()["G_A"], GeneratorSpec("resnet_6blocks", 4), "AtoB", 32, P("mem"), "t")
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    cpu_with("avx2 fma")
    ref = Translator(gen, device="cpu")
    assert ref.fast_path.precision == "fp32" and ref.dtype is None
    cpu_with(AMX)
    fast = Translator(gen, device="cpu")
    assert (fast.fast_path.precision, fast.dtype, fast.winograd, fast.fast_path.compile) == \
        ("bf16", torch.bfloat16, False, False)
    with torch.inference_mode():
        a, b = ref.forward(x), fast.forward(x)
    assert b.dtype == torch.float32 and not torch.equal(a, b)  # bf16 ran, and answers in float32
    assert (a - b).abs().max() < 0.05  # bf16 rounding (8 bits of mantissa) on outputs in [-1, 1]
