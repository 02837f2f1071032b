"""``cyclegan bench``: speed, memory and FLOPs of the real training step and the real inference
path on synthetic data, over a sweep of sizes, batch sizes, precisions, memory formats and
torch.compile. A benchmark, not a test: run it, then record the figures with the command and the
machine in docs/benchmarks.md.

Every combination of the sweep flags is one row:

* ``train``: iterations/s of ``CycleGAN.train_step`` (G_A, G_B, D_A, D_B forwards and
  backwards, both Adam updates, image pools), on the model as built (fused Adam on CUDA);
* ``translate``: images/s of :meth:`cyclegan.translate.Translator.forward` on a batch of a
  generator built from the same config (host batch in, host result out, as ``cyclegan translate``
  runs it; no tiling, so one forward pass per batch).

Each row runs untimed warm-up iterations (with ``--compile on`` they include compilation), then
``--repeats`` timed runs of ``--iters`` iterations; the median run is reported (min and max in the
JSON). The first row of each (mode, size, batch) group is the baseline (fp32, eager, contiguous,
direct convolutions) when the sweep has it, and every row of the group shows its speed-up over it. A row that fails
(torch.compile without a compiler, out of memory, ...) reports its error; the sweep goes on.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as _dt
import gc
import json
import os
import platform
import resource
import statistics
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from .argtypes import nonneg_int, positive_float, positive_int
from .cyclegan import CycleGAN, CycleGANConfig
from .gan import COMPILE_MODES, PRECISIONS, GANModel, Precision, init_weights
from .networks import GENERATORS

MODES = ("train", "translate")
SWITCH = ("off", "on")


def add_bench_args(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Time the real CycleGAN training step (--mode train: iterations/s) and the real inference path "
        "(--mode translate: Translator.forward, images/s) on synthetic data. Every combination of --size, "
        "--batch-size, --precision, --channels-last and --compile is one row, with its peak memory, FLOPs per "
        "iteration (torch.utils.flop_counter), achieved FLOP/s, fraction of the device's peak where known, and "
        "speed-up over the fp32/eager/contiguous baseline of its (mode, size, batch) group. The defaults suit a "
        "CPU; on a GPU try e.g. --size 256 512 --batch-size 1 4 8 --precision fp32 bf16 --compile off on.")
    p.epilog = ("Columns: ms/iter and it/s per iteration (one batch), img/s = batch x it/s; x base = speed-up over "
                "the group's baseline row; peak MiB = CUDA max allocated, or on the CPU the process's peak RSS "
                "during the timed runs (sampled); +MiB = that peak minus the memory in use before the row built "
                "its model. Compare rows as ratios within one run; absolute figures move with the machine and "
                "its load. On a shared CPU set OMP_NUM_THREADS=1 and --threads 1.")
    s = p.add_argument_group("what to measure (every combination is one row)")
    s.add_argument("--mode", choices=MODES, nargs="+", default=list(MODES),
                   help="train: CycleGAN.train_step it/s; translate: Translator.forward images/s")
    s.add_argument("--size", type=positive_int, nargs="+", default=[128], help="image sides in pixels")
    s.add_argument("--batch-size", type=positive_int, nargs="+", default=[1], help="images per iteration")
    s.add_argument("--precision", choices=PRECISIONS, nargs="+", default=["fp32"], help="autocast precisions")
    s.add_argument("--channels-last", choices=SWITCH, nargs="+", default=list(SWITCH),
                   help="channels_last memory format for weights and batches")
    s.add_argument("--compile", choices=SWITCH, nargs="+", default=["off"],
                   help="torch.compile the networks (compilation happens in the warm-up)")
    s.add_argument("--winograd", choices=SWITCH, nargs="+", default=["off"],
                   help="translate rows: Winograd F(4x4,3x3) for the wide 3x3 convolutions (CPU fp32 inference; "
                        "cyclegan translate's default there). FLOP/s columns count the direct convolution's FLOPs, "
                        "so Winograd rows show effective FLOP/s")
    s.add_argument("--compile-backend", default="inductor", help="torch.compile backend")
    s.add_argument("--compile-mode", choices=COMPILE_MODES, default=None,
                   help="inductor mode; reduce-overhead replays CUDA graphs (fewer launches at batch 1)")
    m = p.add_argument_group("model")
    m.add_argument("--netG", choices=tuple(GENERATORS), default="resnet_9blocks", help="generator")
    m.add_argument("--ngf", type=positive_int, default=64, help="generator filters in the first conv")
    m.add_argument("--ndf", type=positive_int, default=64, help="discriminator filters in the first conv")
    r = p.add_argument_group("how")
    r.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    r.add_argument("--warmup", type=nonneg_int, default=2,
                   help="untimed iterations first (at least 2 with --compile on)")
    r.add_argument("--iters", type=positive_int, default=5, help="timed iterations per repeat")
    r.add_argument("--repeats", type=positive_int, default=3, help="timed repeats; the median is reported")
    r.add_argument("--threads", type=nonneg_int, default=0, help="torch CPU threads (0: torch's default)")
    r.add_argument("--peak-tflops", type=positive_float,
                   help="the device's peak TFLOP/s, for the fraction-of-peak column [built-in table for "
                        "some NVIDIA data-centre GPUs; none for CPUs]")
    o = p.add_argument_group("output")
    o.add_argument("--json", help="also write every row and the machine to this JSON file (updated after each row)")
    o.add_argument("--markdown", action="store_true", help="print the table again as markdown at the end")


# --------------------------------------------------------------------------------------------
# Timing, memory and FLOPs (time_steps, peak_memory and flops_per_iteration are also used by
# `cyclegan mnist bench`)
# --------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_runs(step: Callable[[], object], device: torch.device, warmup: int, iters: int, repeats: int,
              on_timed: Callable[[], None] | None = None) -> tuple[float, list[float]]:
    """``warmup`` untimed calls of ``step``, then ``repeats`` timed runs of ``iters`` calls each,
    synchronising the device around every run. Returns (warm-up seconds, seconds per call of
    each run). ``on_timed`` is called between the warm-up and the first timed run."""
    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    _sync(device)
    warm = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if on_timed is not None:
        on_timed()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            step()
        _sync(device)
        times.append((time.perf_counter() - t0) / iters)
    return warm, times


def time_steps(step: Callable[[], object], device: torch.device, warmup: int, iters: int, repeats: int) -> float:
    """Median seconds per call of ``step`` (see :func:`time_runs`). Resets CUDA peak memory after
    the warm-up, so :func:`peak_memory` reports the steady state."""
    return statistics.median(time_runs(step, device, warmup, iters, repeats)[1])


def peak_memory(device: torch.device) -> tuple[int, str]:
    """(bytes, what was measured): CUDA's max allocated, or the process's lifetime peak RSS on the
    CPU (ru_maxrss only grows; :class:`RowMemory` measures one row)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "cuda max allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process peak RSS"  # KiB on Linux


def flops_per_iteration(model: GANModel, batch: dict) -> int:
    """FLOPs of one full training step (forwards and backwards of G and D) by torch's counter."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        model.train_step(batch)
    return counter.get_total_flops()


def _rss_bytes() -> int | None:
    """The process's resident set size now (Linux: /proc/self/statm), or None."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _release_memory(device: torch.device) -> None:
    """Free what earlier rows left: Python garbage, CUDA's cache, and glibc's free heap pages (so
    the next row's RSS baseline is not inflated by memory already freed)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class RowMemory:
    """Peak memory of one row. CUDA: ``torch.cuda.max_memory_allocated`` over the timed runs
    (reset after the warm-up), baseline = allocated before the row built its model. CPU/MPS on
    Linux: the process's RSS sampled every ``interval`` seconds by a background thread from
    before the row built its model to its end; the peak over the timed runs is reported, the
    peak including the warm-up (compilation) beside it. Elsewhere: the lifetime ru_maxrss."""

    def __init__(self, device: torch.device, interval: float = 0.005) -> None:
        self.device, self.interval = device, interval
        self.cuda = device.type == "cuda"
        self.sampling = not self.cuda and _rss_bytes() is not None
        self.baseline = 0
        self.peak_all = 0
        self.peak_timed = 0
        self._timed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def kind(self) -> str:
        if self.cuda:
            return "torch.cuda.max_memory_allocated during the timed runs (reset after the warm-up)"
        if self.sampling:
            return (f"process RSS (/proc/self/statm, sampled every {self.interval * 1e3:g} ms) peak during the "
                    "timed runs; baseline = RSS before the row built its model")
        return "process lifetime peak RSS (ru_maxrss; not per row)"

    def _sample(self) -> None:
        rss = _rss_bytes() or 0
        self.peak_all = max(self.peak_all, rss)
        if self._timed:
            self.peak_timed = max(self.peak_timed, rss)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> None:
        _release_memory(self.device)
        if self.cuda:
            self.baseline = torch.cuda.memory_allocated(self.device)
        elif self.sampling:
            self.baseline = _rss_bytes() or 0
            self._sample()
            self._thread = threading.Thread(target=self._loop, name="bench-rss", daemon=True)
            self._thread.start()

    def timed(self) -> None:
        """Called after the warm-up: the steady-state peak starts here."""
        if self.sampling:
            self._timed = True
            self._sample()

    def stop(self) -> dict[str, Any]:
        if self._thread is not None:
            self._sample()
            self._stop.set()
            self._thread.join()
            self._thread = None
        if self.cuda:
            peak = torch.cuda.max_memory_allocated(self.device)
            extra: dict[str, Any] = {}
        elif self.sampling:
            peak = self.peak_timed or self.peak_all
            extra = {"peak_memory_incl_warmup_bytes": self.peak_all}
        else:
            peak = peak_memory(self.device)[0]
            extra = {}
        return {"peak_memory_bytes": peak, "memory_baseline_bytes": self.baseline,
                "memory_growth_bytes": max(0, peak - self.baseline), **extra}


def _count_flops(fn: Callable[[], object]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


# --------------------------------------------------------------------------------------------
# Peak FLOP/s
# --------------------------------------------------------------------------------------------

#: Dense (no sparsity) peak TFLOP/s from NVIDIA's data sheets: fp32 (CUDA cores), tf32, bf16 and
#: fp16 tensor cores; matched against torch.cuda.get_device_name(), first match wins.
_GPU_PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H200", {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),
    ("H100 PCIe", {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0}),
    ("H100", {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),  # SXM
    ("A100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0}),
    ("L40S", {"fp32": 91.6, "tf32": 183.0, "bf16": 362.1, "fp16": 362.1}),
    ("L4", {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0}),
    ("V100", {"fp32": 15.7, "fp16": 125.0}),
    ("T4", {"fp32": 8.1, "fp16": 65.0}),
)


def peak_flops(device: torch.device, precision: str, given_tflops: float | None) -> tuple[float | None, str]:
    """(peak FLOP/s for ``precision`` on ``device`` or None, where the figure comes from)."""
    if given_tflops:
        return given_tflops * 1e12, "--peak-tflops"
    if device.type != "cuda":
        return None, "unknown (pass --peak-tflops)"
    name = torch.cuda.get_device_name(device)
    for key, table in _GPU_PEAK_TFLOPS:
        if key in name:
            # fp32 convolutions run on TF32 tensor cores while cudnn.allow_tf32 is on (torch's default)
            which = "tf32" if precision == "fp32" and torch.backends.cudnn.allow_tf32 and "tf32" in table else precision
            if which in table:
                return table[which] * 1e12, f"{key} {which} dense peak (built-in table)"
    return None, f"unknown for {name} (pass --peak-tflops)"


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------


def _is_compile_error(e: BaseException) -> bool:
    return any(t.__module__.startswith(("torch._dynamo", "torch._inductor")) for t in type(e).__mro__)


def _describe(e: BaseException, limit: int = 300) -> str:
    """One line: the type and the message (dynamo's span lines), cut at ``limit`` characters."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


class CompileFailed(Exception):
    """torch.compile could not compile the row's networks."""


def _train_config(args: argparse.Namespace) -> CycleGANConfig:
    return CycleGANConfig(netG=args.netG, ngf=args.ngf, ndf=args.ndf)


def _train_batch(batch_size: int, size: int, device: torch.device,
                 memory_format: torch.memory_format = torch.contiguous_format) -> dict:
    g = torch.Generator().manual_seed(0)
    return {k: torch.rand(batch_size, 3, size, size, generator=g).mul(2).sub(1).to(device)
            .contiguous(memory_format=memory_format) for k in ("A", "B")}


def _setup_train(args: argparse.Namespace, size: int, batch_size: int, precision: str, channels_last: bool,
                 compile: bool, device: torch.device, info: dict, winograd: bool = False) -> Callable[[], object]:
    del winograd  # training always uses the direct convolutions (the sweep gives train rows "off" only)
    torch.manual_seed(0)
    cfg = _train_config(args)
    model = CycleGAN(cfg).to(device)
    info["fused_adam"] = model.use_fused_optimizers()  # as the training loop does on CUDA
    model.precision = Precision(device.type, precision)
    mf = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=mf)
    model.train()
    if compile:
        try:
            for net in (*model.generators.values(), *model.discriminators.values()):
                net.compile(backend=args.compile_backend, mode=args.compile_mode)
        except Exception as e:
            raise CompileFailed(_describe(e)) from e
    batch = _train_batch(batch_size, size, device, mf)
    return lambda: model.train_step(batch)


def _generator(args: argparse.Namespace, size: int):
    from .translate import GeneratorSpec, LoadedGenerator

    torch.manual_seed(0)
    spec = GeneratorSpec(args.netG, args.ngf)
    net = init_weights(spec.build(), "normal", 0.02)
    net.eval().requires_grad_(False)
    return LoadedGenerator(net, spec, "AtoB", size, Path("<bench>"), "bench")


def _translate_batch(batch_size: int, size: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(batch_size, 3, size, size, generator=g).mul(2).sub(1)  # as Translator.prepare gives


def _setup_translate(args: argparse.Namespace, size: int, batch_size: int, precision: str, channels_last: bool,
                     compile: bool, device: torch.device, info: dict, winograd: bool = False) -> Callable[[], object]:
    from .translate import Translator

    translator = Translator(_generator(args, size), device=device, precision=precision, full_res=True, size=size,
                            tile=0, channels_last=channels_last, compile=compile,
                            compile_backend=args.compile_backend, compile_mode=args.compile_mode, winograd=winograd)
    if winograd and not translator.winograd:
        raise ValueError("Winograd does not apply here (CPU fp32 inference, layers with >= 128 input channels)")
    if compile and translator.compile_error:
        raise CompileFailed(translator.compile_error)
    x = _translate_batch(batch_size, size)
    info["translator"] = translator

    def step() -> object:
        out = translator.forward(x)
        if compile and translator.compile_error:  # Translator fell back to eager: not a compiled figure
            raise CompileFailed(translator.compile_error)
        return out

    return step


def count_flops(mode: str, args: argparse.Namespace, size: int, batch_size: int, device: torch.device) -> int:
    """FLOPs of one iteration of ``mode`` (fp32, eager, contiguous) by FlopCounterMode."""
    if mode == "train":
        torch.manual_seed(0)
        model = CycleGAN(_train_config(args)).to(device)
        batch = _train_batch(batch_size, size, device)
        return _count_flops(lambda: model.train_step(batch))
    net = _generator(args, size).net.to(device)
    x = _translate_batch(batch_size, size).to(device)
    with torch.inference_mode():
        return _count_flops(lambda: net(x))


def bench_row(mode: str, args: argparse.Namespace, size: int, batch_size: int, precision: str,
              channels_last: bool, compile: bool, device: torch.device, winograd: bool = False) -> dict:
    """One row: set up, warm up, time, measure memory. Errors are returned in the row."""
    row: dict[str, Any] = {"mode": mode, "size": size, "batch_size": batch_size, "precision": precision,
                           "channels_last": channels_last, "compile": compile, "winograd": winograd,
                           "compile_backend": args.compile_backend if compile else None,
                           "netG": args.netG, "ngf": args.ngf, "ndf": args.ndf if mode == "train" else None,
                           "device": str(device), "error": None}
    warmup = max(args.warmup, 2) if compile else args.warmup
    mem = RowMemory(device)
    info: dict[str, Any] = {}
    if compile:
        import torch._dynamo

        torch._dynamo.reset()  # fresh caches: no recompilation limits carried over from earlier rows
    mem.start()
    try:
        setup = _setup_train if mode == "train" else _setup_translate
        step = setup(args, size, batch_size, precision, channels_last, compile, device, info, winograd)
        warm, times = time_runs(step, device, warmup, args.iters, args.repeats, on_timed=mem.timed)
    except CompileFailed as e:
        row["error"] = f"torch.compile failed: {e}"
    except Exception as e:
        row["error"] = f"torch.compile failed: {_describe(e)}" if compile and _is_compile_error(e) else _describe(e)
    finally:
        memory = mem.stop()
        info.pop("translator", None)
        step = None
        _release_memory(device)
    if "fused_adam" in info:
        row["fused_adam"] = info["fused_adam"]
    if row["error"] is None:
        sec = statistics.median(times)
        row.update({"warmup_iters": warmup, "warmup_sec": warm, "sec_per_iter": sec,
                    "sec_per_iter_min": min(times), "sec_per_iter_max": max(times), "sec_per_iter_runs": times,
                    "iters_per_sec": 1 / sec, "iters_per_sec_min": 1 / max(times),
                    "iters_per_sec_max": 1 / min(times), "images_per_sec": batch_size / sec,
                    **memory})
    return row


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------

_COLUMNS = (("mode", 9), ("size", 5), ("batch", 5), ("precision", 9), ("ch-last", 7), ("compile", 7), ("wino", 4),
            ("ms/iter", 9), ("it/s", 8), ("img/s", 8), ("x base", 6), ("peak MiB", 8), ("+MiB", 6), ("GFLOP/iter", 10),
            ("GFLOP/s", 9), ("% peak", 6))


def _fmt(x: float, digits: int = 3) -> str:
    """A number with about ``digits`` significant figures, without exponent notation."""
    if x == 0:
        return "0"
    decimals = max(0, digits - 1 - int(f"{abs(x):e}".split("e")[1]))
    return f"{x:.{decimals}f}"


def _cells(row: dict) -> list[str]:
    cells = [row["mode"], str(row["size"]), str(row["batch_size"]), row["precision"],
             "on" if row["channels_last"] else "off", "on" if row["compile"] else "off",
             "-" if row["mode"] == "train" else "on" if row.get("winograd") else "off"]
    if row.get("error"):
        return cells + [f"error: {row['error']}"]
    speedup = row.get("speedup_vs_baseline")
    flops = row.get("flops_per_iter")
    fraction = row.get("fraction_of_peak")
    return cells + [
        _fmt(row["sec_per_iter"] * 1e3), _fmt(row["iters_per_sec"]), _fmt(row["images_per_sec"]),
        f"{speedup:.2f}" if speedup is not None else "-",
        f"{row['peak_memory_bytes'] / 2**20:.0f}", f"{row['memory_growth_bytes'] / 2**20:.0f}",
        _fmt(flops / 1e9) if flops else "-",
        _fmt(row["achieved_flops_per_sec"] / 1e9) if flops else "-",
        f"{100 * fraction:.1f}" if fraction is not None else "-",
    ]


def _line(cells: list[str]) -> str:
    if len(cells) < len(_COLUMNS):  # an error row: the message takes the rest of the line
        fixed = [f"{c:>{w}}" for c, (_, w) in zip(cells[:-1], _COLUMNS)]
        return " ".join(fixed) + "  " + cells[-1]
    return " ".join(f"{c:>{w}}" for c, (_, w) in zip(cells, _COLUMNS))


def markdown_table(rows: list[dict]) -> str:
    head = [name for name, _ in _COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in rows:
        cells = _cells(row)
        if len(cells) < len(head):
            cells = cells[:-1] + [cells[-1].replace("|", "\\|")] + [""] * (len(head) - len(cells))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
        "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update({"device_name": torch.cuda.get_device_name(device), "cuda": torch.version.cuda,
                     "cudnn": torch.backends.cudnn.version(), "gpu_memory_bytes": props.total_memory,
                     "cudnn_benchmark": torch.backends.cudnn.benchmark,
                     "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32})
    else:
        info["device_name"] = info["cpu"] if device.type == "cpu" else str(device)
    return info


def _ordered(values: list, first: Any) -> list:
    """``values`` without repeats, ``first`` (the baseline's value) first when present."""
    out = list(dict.fromkeys(values))
    return sorted(out, key=lambda v: v != first)


def _write_json(path: str, doc: dict) -> None:
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)


@contextmanager
def _cudnn_benchmark(device: torch.device) -> Iterator[None]:
    before = torch.backends.cudnn.benchmark
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes per row: let cuDNN pick its fastest kernels
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def run_bench(args: argparse.Namespace) -> int:
    from .gan import pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    modes = list(dict.fromkeys(args.mode))
    sizes, batches = list(dict.fromkeys(args.size)), list(dict.fromkeys(args.batch_size))
    precisions = _ordered(args.precision, "fp32")
    layouts = [v == "on" for v in _ordered(args.channels_last, "off")]
    compiles = [v == "on" for v in _ordered(args.compile, "off")]
    winograds = [v == "on" for v in _ordered(args.winograd, "off")]
    rows: list[dict] = []
    with _cudnn_benchmark(device):
        machine = machine_info(device)
        doc: dict[str, Any] = {
            "argv": sys.argv,
            "machine": machine,
            "settings": {k: v for k, v in vars(args).items() if k not in ("func",) and not callable(v)},
            "memory_measured": RowMemory(device).kind,
            "translate_path": "Translator.forward on a host (CPU) batch, result back on the host; tile 0 (one pass)",
            "baseline": "first row of each (mode, size, batch_size) group: fp32, eager, contiguous, direct "
                        "convolutions, when swept",
            "rows": rows,
        }
        print(f"cyclegan bench: {args.netG} (ngf {args.ngf}) / 70x70 PatchGAN (ndf {args.ndf}) on "
              f"{machine['device_name']}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
              f"warm-up {args.warmup}, {args.repeats} x {args.iters} timed iterations, median", file=sys.stderr)
        print(_line([name for name, _ in _COLUMNS]), flush=True)
        for mode in modes:
            for size in sizes:
                for batch_size in batches:
                    flops: int | None = None
                    try:
                        flops = count_flops(mode, args, size, batch_size, device)
                    except Exception as e:
                        print(f"({mode} {size} px batch {batch_size}: FLOPs not counted: {_describe(e)})",
                              file=sys.stderr)
                    _release_memory(device)
                    base: dict | None = None
                    for precision in precisions:
                        for channels_last in layouts:
                            for compile, winograd in [(c, w) for c in compiles
                                                      for w in (winograds if mode == "translate" else [False])]:
                                row = bench_row(mode, args, size, batch_size, precision, channels_last, compile,
                                                device, winograd)
                                is_base = precision == "fp32" and not channels_last and not compile and not winograd
                                row["baseline"] = is_base
                                if is_base and row["error"] is None:
                                    base = row
                                if row["error"] is None:
                                    row["speedup_vs_baseline"] = (base["sec_per_iter"] / row["sec_per_iter"]
                                                                  if base is not None else None)
                                    row["flops_per_iter"] = flops
                                    row["achieved_flops_per_sec"] = flops / row["sec_per_iter"] if flops else None
                                    peak, source = peak_flops(device, precision, args.peak_tflops)
                                    row["peak_flops_per_sec"], row["peak_flops_source"] = peak, source
                                    row["fraction_of_peak"] = (row["achieved_flops_per_sec"] / peak
                                                               if peak and flops else None)
                                rows.append(row)
                                print(_line(_cells(row)), flush=True)
                                if args.json:
                                    _write_json(args.json, doc)
    failed = sum(1 for r in rows if r["error"])
    if args.markdown:
        print()
        print(markdown_table(rows), flush=True)
    if args.json:
        print(f"wrote {args.json}", file=sys.stderr)
    if failed:
        print(f"{failed} of {len(rows)} rows failed (see their error)", file=sys.stderr)
    return 1 if failed else 0
