"""The arithmetic and compilation a run gets on the machine it finds: what ``--precision auto``
and ``--compile auto`` (the defaults) resolve to. One place decides, once per process.

What was measured (docs/benchmarks.md has the commands):

- CUDA (one H200, torch 2.11, 2026-11-25): bf16 autocast plus the networks in CUDA graphs
  (``torch.compile`` mode ``reduce-overhead``) took a 256 px CycleGAN step from 85 to 20 ms; at
  batch 1 the step is launch-bound, so graphs matter more than the dtype. But the training code
  has changed since that run (fused Adam skipping on the device, the EMA, the planned step), and
  a careful read of torch's cudagraph trees predicts failures for objectives that run a network
  again after another backward (CUT, the MNIST GAN). So on CUDA ``auto`` is **bf16 eager** (on
  GPUs with native bf16, compute capability 8.0 and up; fp32 on older ones, where bf16 is
  emulated) until a GPU run of today's code earns more: :data:`GPU_PROVEN` lists what has, and
  ``tests/gpu/accept.sh`` measures what would. ``--compile`` and ``--step-graph`` stay one flag
  away, and a failure of either in the first steps goes on eagerly (cyclegan.training.loop).
- CPUs with native bf16 (``avx512_bf16`` or AMX): a 128 px training step ran 1.6-1.7x faster in
  bf16 than in fp32 on an AMD EPYC (avx512_bf16), 2.1-2.6x on an Intel Xeon with AMX. An Intel
  core's avx512_bf16 without AMX (measured on that Xeon with oneDNN capped at ``avx512_core_bf16``,
  the kernels a Cooper Lake Xeon, or a Sapphire Rapids VM whose AMX is hidden, runs) made the step
  0.75x and translation 0.73x of fp32 (likely because that core issues the bf16 dot product on
  one port and fp32 FMAs on two), so an avx512_bf16 CPU gets bf16 by default only where it
  measured faster, on AMD (:data:`BF16_WITHOUT_AMX_VENDORS`). An ISA cap set for oneDNN
  (ONEDNN_MAX_CPU_ISA) counts: the defaults follow the kernels that will run.
- CPUs with AMX (Intel Xeon, torch 2.14): compiling the networks (inductor) made that 2.6-3.3x.
  Compiling takes a minute or more (81 s on one thread) and saves a fifth of each step, so
  training compiles there only from :data:`CPU_COMPILE_MIN_SIDE` px crops up, where it pays back
  within a few hundred iterations. Translation at 256 px ran 2.8x faster in bf16 than in fp32
  (2.2x faster than fp32 with Winograd). Neither was measured on an AMD CPU with avx512_bf16,
  which keeps eager training and fp32 translation.
- CPUs without it: bf16 is emulated, 16x slower on an AVX2-only AMD EPYC and 3.9x slower on an
  AVX-512 Intel Xeon without avx512_bf16 (128 px training, one thread); fp32.

``--precision fp32 --no-compile`` is the reference arithmetic everywhere. ``CYCLEGAN_CPU_FLAGS``
(space-separated) replaces the CPU flags read from /proc/cpuinfo, to see or test what another
CPU would get; a word with capitals among them is the vendor (``"AuthenticAMD avx512_bf16"``).
"""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

PRECISIONS = ("fp32", "bf16", "fp16")
PRECISION_CHOICES = ("auto", *PRECISIONS)
#: the autocast dtype of each precision (None: no autocast)
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
#: torch.compile modes (inductor); reduce-overhead replays CUDA graphs, cutting launch overhead
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
#: what a CPU needs for bf16 convolutions in hardware rather than emulated
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
#: Intel's matrix units, where bf16 translation and compiled training were measured faster
AMX_FLAG = "amx_bf16"
#: vendors (/proc/cpuinfo's vendor_id) whose avx512_bf16 without AMX trained faster in bf16
#: (an AMD EPYC: 1.6-1.7x); an Intel core there measured 0.75x, other vendors were not measured
BF16_WITHOUT_AMX_VENDORS = frozenset({"AuthenticAMD"})
#: environment variables that change what the fast path sees or which CPU kernels run (oneDNN's
#: ISA cap emulates an older CPU on a newer one); benchmarks and `cyclegan info` report them
KERNEL_ENV = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "CYCLEGAN_CPU_FLAGS")
TASKS = ("train", "translate")
#: the smallest training crop (px) at which a CPU with native bf16 compiles the networks by default
CPU_COMPILE_MIN_SIDE = 128


@dataclass(frozen=True)
class CpuInfo:
    vendor: str  # /proc/cpuinfo's vendor_id ("GenuineIntel", "AuthenticAMD"); "" if unknown
    flags: frozenset[str]


@functools.cache
def cpu_info() -> CpuInfo:
    """The CPU's vendor and feature flags (Linux /proc/cpuinfo; empty elsewhere), or
    CYCLEGAN_CPU_FLAGS, taken as it is: its lower-case words are the flags, a word with capitals
    the vendor. A oneDNN ISA cap (ONEDNN_MAX_CPU_ISA) removes from the real flags the bf16
    features that oneDNN's kernels may then not use."""
    override = os.environ.get("CYCLEGAN_CPU_FLAGS")
    if override is not None:
        words = override.replace(",", " ").split()
        vendors = [w for w in words if w != w.lower()]
        return CpuInfo(vendors[0] if vendors else "", frozenset(w for w in words if w == w.lower()))
    vendor, flags = _read_cpuinfo()
    return CpuInfo(vendor, flags - _capped_away())


def _read_cpuinfo() -> tuple[str, frozenset[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return "", frozenset()
    vendor, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "vendor_id" and not vendor:
            vendor = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
        if vendor and flags:
            break
    return vendor, flags


def _capped_away() -> frozenset[str]:
    """The bf16 features that oneDNN, which runs the convolutions, may not use under
    ONEDNN_MAX_CPU_ISA (or its old name DNNL_MAX_CPU_ISA): with the cap at AVX512_CORE_BF16
    an AMX CPU runs the kernels of one without AMX, so it must get that CPU's defaults."""
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()
    if not cap or cap in ("ALL", "DEFAULT") or "AMX" in cap:
        return frozenset()
    if cap in ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512", "AVX10_2_512"):
        return frozenset({"amx_bf16", "amx_tile", "amx_int8", "amx_fp16"})
    return frozenset({"amx_bf16", "amx_tile", "amx_int8", "amx_fp16", "avx512_bf16"})


def cpu_flags() -> frozenset[str]:
    return cpu_info().flags


def cpu_vendor() -> str:
    return cpu_info().vendor


def native_cpu_bf16() -> bool:
    return bool(NATIVE_BF16_FLAGS & cpu_flags())


def cpu_amx() -> bool:
    return AMX_FLAG in cpu_flags()


#: Configurations whose fast path a GPU run of today's code has shown to work and pay, as
#: ``(task, signature) -> (compile mode, evidence)``; ``auto`` on CUDA chooses only these, and bf16
#: eager elsewhere. Empty: no GPU has been lent since the CUDA code was last changed (2026-12-07);
#: ``tests/gpu/accept.sh`` writes the rows that decide what to add.
GPU_PROVEN: dict[tuple[str, str], tuple[str, str]] = {}

#: compute capability from which NVIDIA GPUs run bf16 natively (Ampere); older ones emulate it
NATIVE_BF16_CAPABILITY = (8, 0)


def cuda_native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 in hardware: compute capability 8.0 or higher, or ROCm.
    ``torch.cuda.is_bf16_supported()`` also counts emulation (a T4 or V100 answers True and then
    runs bf16 several times slower than fp32)."""
    if torch.version.hip:
        return True
    if not torch.cuda.is_available():
        return False
    index = device.index if device.index is not None else torch.cuda.current_device()
    return tuple(torch.cuda.get_device_capability(index)) >= NATIVE_BF16_CAPABILITY


@dataclass(frozen=True)
class FastPath:
    """A resolved choice: ``precision`` (fp32/bf16/fp16), whether to ``torch.compile`` and with
    which mode, and ``why`` in words (printed in the run header, stored in config.yaml)."""

    precision: str
    compile: bool
    compile_mode: str | None
    why: str
    #: --step-graph (cyclegan.training.step_graph): "capture", the whole training step as one CUDA
    #: graph; "dry", its planned step without capture (no CUDA); None: off
    step_graph: str | None = None

    def describe(self) -> str:
        if not self.compile:
            how = "eager"
        elif self.compile_mode == "reduce-overhead":
            how = "CUDA graphs"
        else:
            how = "torch.compile" + (f" ({self.compile_mode})" if self.compile_mode else "")
        if self.step_graph:
            whole = "whole-step CUDA graph" if self.step_graph == "capture" else "planned step (dry run, no capture)"
            how = whole + ("" if how == "eager" else f" of {how} networks")
        return f"{self.precision} + {how}"

    def as_dict(self) -> dict:
        return asdict(self)


def choose(device: torch.device | str, task: str = "train", precision: str = "auto",
           compile: bool | None = None, compile_mode: str | None = None,
           static_shapes: bool = True, image_side: int | None = None, signature: str | None = None) -> FastPath:
    """Resolve ``precision`` ("auto" or one of :data:`PRECISIONS`) and ``compile`` (None: auto)
    for ``task`` on ``device``; ``image_side``: the training crop's side in pixels, where known;
    ``signature``: the model kind and objective (``GANModel.fast_path_signature``), what
    :data:`GPU_PROVEN` is keyed by. Explicit choices are kept as given; ``why`` says what auto did."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"--precision {precision}: choose one of {', '.join(PRECISION_CHOICES)}")
    device = torch.device(device)
    reasons = []
    if precision == "auto":
        precision, why = _auto_precision(device, task)
        reasons.append(why)
    if compile is None:
        compile, mode, why = _auto_compile(device, task, static_shapes, precision, image_side, signature)
        compile_mode = compile_mode if compile_mode is not None else mode
        reasons.append(why)
    return FastPath(precision, bool(compile), compile_mode if compile else None,
                    "; ".join(reasons) if reasons else "as given")


def _auto_precision(device: torch.device, task: str) -> tuple[str, str]:
    if device.type == "cuda":
        if cuda_native_bf16(device):
            return "bf16", "CUDA with native bf16"
        return "fp32", ("GPU without native bf16 (compute capability below 8.0: bf16 would be emulated); "
                        "--precision fp16 is one flag away")
    if device.type == "cpu":
        if not native_cpu_bf16():
            return "fp32", "CPU without native bf16 (bf16 would be emulated: 4-16x slower, measured)"
        if cpu_amx():
            if task == "train":
                return "bf16", "CPU with AMX (measured 2.1-2.6x faster training)"
            return "bf16", "CPU with AMX (measured 2.8x faster translation)"
        cpu = f"{cpu_vendor()} CPU".lstrip()
        if cpu_vendor() not in BF16_WITHOUT_AMX_VENDORS:
            return "fp32", f"{cpu} with avx512_bf16 but no AMX (bf16 measured 0.75x of fp32 on an Intel core)"
        if task == "train":
            return "bf16", f"{cpu} with avx512_bf16 (measured 1.6-1.7x faster training)"
        return "fp32", f"{cpu} with avx512_bf16 but no AMX: bf16 translation not measured there"
    return "fp32", f"{device.type}: fp32"


def _auto_compile(device: torch.device, task: str, static_shapes: bool, precision: str,
                  image_side: int | None, signature: str | None = None) -> tuple[bool, str | None, str]:
    if device.type == "cpu" and precision == "bf16" and cpu_amx():
        if task == "translate":
            return False, None, ("eager (--compile measured 2.2x over eager bf16 at 256 px, but every new image "
                                 "size compiles again)")
        if not static_shapes:
            return False, None, "eager (image sizes vary; compiling each size costs more than it saves)"
        if image_side is not None and image_side >= CPU_COMPILE_MIN_SIDE:
            return True, None, (f"{image_side} px crops: compiled networks (measured 1.2-1.3x over eager bf16; "
                                "the first step compiles, a minute or more)")
        return False, None, f"eager (below {CPU_COMPILE_MIN_SIDE} px crops compiling takes longer to pay back)"
    if device.type == "cpu":
        return False, None, "eager (on CPUs compiling was measured to pay only with AMX and bf16)"
    if device.type != "cuda":
        return False, None, "eager (compiling pays on CUDA, measured; not on this device)"
    if not static_shapes:
        return False, None, "eager (image sizes vary; compiling each size costs more than it saves)"
    proven = GPU_PROVEN.get((task, signature or ""))
    if proven is not None:
        mode, evidence = proven
        return True, mode, f"compiled ({mode}): {evidence}"
    return False, None, ("eager (compiling and CUDA graphs have not run on a GPU for this configuration with "
                         "today's code; --compile or --step-graph to try, tests/gpu/accept.sh to measure)")


def is_compile_error(e: BaseException) -> bool:
    """Whether ``e`` came from ``torch.compile`` (dynamo or inductor: a missing C compiler or
    Triton, an unsupported operation), as opposed to an error of the model itself: the one rule
    by which the translator, the training loop and the benchmark fall back to eager mode."""
    return any(t.__module__.startswith(("torch._dynamo", "torch._inductor")) for t in type(e).__mro__)


def describe_error(e: BaseException, limit: int = 300) -> str:
    """One line: the type and the message (dynamo's span lines), cut at ``limit`` characters."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"
