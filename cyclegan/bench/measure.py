"""Measuring a step: wall time, peak memory, FLOPs, and the machine it ran on."""

from __future__ import annotations

import ctypes
import datetime as _dt
import gc
import os
import platform
import resource
import statistics
import threading
import time
from typing import Any, Callable
import torch

from cyclegan.core import fastpath
from cyclegan.models.gan import GANModel

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


def release_memory(device: torch.device) -> None:
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
        release_memory(self.device)
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


def count_call_flops(fn: Callable[[], object]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


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
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    # a row measured under settings that change the kernels or the fast path says so
    for var in fastpath.KERNEL_ENV:
        if os.environ.get(var):
            info[var] = os.environ[var]
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update({"device_name": torch.cuda.get_device_name(device), "cuda": torch.version.cuda,
                     "cudnn": torch.backends.cudnn.version(), "gpu_memory_bytes": props.total_memory,
                     "cudnn_benchmark": torch.backends.cudnn.benchmark,
                     "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32})
    else:
        info["device_name"] = info["cpu"] if device.type == "cpu" else str(device)
    return info
