"""``cyclegan bench``: speed, memory and FLOPs of the real training step and the real inference
path on synthetic data, over a sweep of sizes, batch sizes, precisions, memory formats and
torch.compile. A benchmark, not a test: run it, then record the figures with the command and the
machine in docs/benchmarks.md.

Every combination of the sweep flags is one row:

* ``train``: iterations/s of ``CycleGAN.train_step`` (G_A, G_B, D_A, D_B forwards and
  backwards, both Adam updates, image pools), on the model as built (fused Adam on CUDA and CPUs);
* ``translate``: images/s of :meth:`cyclegan.translate.Translator.forward` on a batch of a
  generator built from the same config (host batch in, host result out, as ``cyclegan translate``
  runs it; no tiling, so one forward pass per batch);
* ``loop``: iterations/s of the real ``cyclegan train`` loop end to end, data loading included
  (:mod:`cyclegan.bench.loop`), beside the synthetic ``train`` rows; ``loop-dev`` the same with
  ``--data-on-device on`` (the images held and augmented on the device, :mod:`cyclegan.data.resident`).

Each kind is one entry of :data:`KINDS` (how it is timed, its FLOPs, the task its ``--precision
auto`` is chosen for); ``auto`` is resolved by :func:`cyclegan.core.fastpath.choose` and shown
as ``auto:NAME``. ``--model`` picks the model kind of train and loop rows through the training
registry (cyclegan.training.kinds), so CycleGAN, CUT, FastCUT and the MNIST GAN are timed by this
one harness (``cyclegan mnist bench`` is ``--model mnist --mode train`` with the MNIST flags).

Each row runs untimed warm-up iterations (with ``--compile on`` they include compilation), then
``--repeats`` timed runs of ``--iters`` iterations; the median run is reported (min and max in the
JSON). The first row of each (mode, size, batch) group is the baseline (fp32, eager, contiguous,
direct convolutions) when the sweep has it, and every row of the group shows its speed-up over it. A row that fails
(torch.compile without a compiler, out of memory, ...) reports its error; the sweep goes on.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
import torch

from cyclegan.core.checkpoint import write_json
from cyclegan.core import fastpath
from cyclegan.core.fastpath import describe_error, is_compile_error
from cyclegan.models.gan import GANModel, Precision
from cyclegan.models.init import init_weights
from cyclegan.training import step_graph
from cyclegan.training.config import RunConfig, with_optimizers
from cyclegan.training.kinds import kind, resolve
from cyclegan.bench.measure import RowMemory, count_call_flops, machine_info, peak_flops, release_memory, time_runs
from cyclegan.bench.table import COLUMNS, markdown_table, row_cells, table_line

SWITCH = ("off", "on")


# --------------------------------------------------------------------------------------------
# Peak FLOP/s
# --------------------------------------------------------------------------------------------

# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------


class CompileFailed(Exception):
    """torch.compile could not compile the row's networks."""


def train_run(args: argparse.Namespace, size: int) -> RunConfig:
    """The run config of a train row: the ``--model`` kind resolved as ``cyclegan train`` would,
    with the bench's networks (image kinds: --netG/--ngf/--ndf; the MNIST GAN: images of ``size``
    and its own settings in ``args.model_settings``, as ``cyclegan mnist bench`` passes them)."""
    model = args.model
    given = {"ngf": args.ngf, "ndf": args.ndf, **(getattr(args, "model_settings", None) or {})}
    if model == "mnist":
        given["image_size"] = size
    else:
        given.update(netG=args.netG, size=size)
    return resolve(model, given)


def train_model(args: argparse.Namespace, size: int, batch_size: int, device: torch.device,
                memory_format: torch.memory_format = torch.contiguous_format) -> tuple[GANModel, dict]:
    """The kind's model with its run's Adam, as training builds them, on ``device``, and a random
    batch (both seeded: every row starts from the same weights and images)."""
    run = train_run(args, size)
    training = kind(run.kind).training
    torch.manual_seed(0)
    model = with_optimizers(training.new_model(run), run.optim).to(device)
    batch = training.example_batch(run, batch_size, size, torch.Generator().manual_seed(0))
    return model, {k: v.to(device).contiguous(memory_format=memory_format) for k, v in batch.items()}


def setup_train(args: argparse.Namespace, size: int, batch_size: int, precision: str, channels_last: bool,
                compile: bool, device: torch.device, info: dict, winograd: bool = False) -> Callable[[], object]:
    del winograd  # training always uses the direct convolutions (the sweep gives train rows "off" only)
    mf = torch.channels_last if channels_last else torch.contiguous_format
    model, batch = train_model(args, size, batch_size, device, mf)
    info["fused_adam"] = model.use_fused_optimizers()  # as the training loop does
    model.precision = Precision(device.type, precision)
    model.to(memory_format=mf)
    model.train()
    if compile:
        try:  # as the training loop does: a discriminator differentiated twice stays eager
            info["eager_networks"] = model.compile_networks(backend=args.compile_backend, mode=args.compile_mode)
        except Exception as e:
            raise CompileFailed(describe_error(e)) from e
    if getattr(args, "step_graph", False):  # train's --step-graph: replays after warm-up and capture
        why = step_graph.unsupported(model, device, precision, 1, True)
        if why:
            raise RuntimeError(f"--step-graph: {why}")
        graph = step_graph.for_device(model, device)
        info["step_graph"] = graph

        def step() -> object:
            out = graph.step(batch)
            if graph.failed:
                raise RuntimeError(f"--step-graph: capture failed: {graph.failed}")
            return out

        return step
    return lambda: model.train_step(batch)


def _generator(args: argparse.Namespace, size: int):
    from cyclegan.inference.loading import GeneratorSpec, LoadedGenerator

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
    from cyclegan.inference.translator import Translator

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


def _train_flops(args: argparse.Namespace, size: int, batch_size: int, device: torch.device) -> int:
    torch.manual_seed(0)
    model, batch = train_model(args, size, batch_size, device)
    return count_call_flops(lambda: model.train_step(batch))


def _translate_flops(args: argparse.Namespace, size: int, batch_size: int, device: torch.device) -> int:
    net = _generator(args, size).net.to(device)
    x = _translate_batch(batch_size, size).to(device)
    with torch.inference_mode():
        return count_call_flops(lambda: net(x))


def _time_steps(setup: Callable[..., Callable[[], object]]) -> Callable[..., tuple[float, list[float]]]:
    """A kind measured as one step called again and again (:func:`time_runs`)."""

    def timed(args, size, batch_size, precision, channels_last, compile, device, info, winograd, mem):
        step = setup(args, size, batch_size, precision, channels_last, compile, device, info, winograd)
        return time_runs(step, device, args.warmup, args.iters, args.repeats, on_timed=mem.timed)

    return timed


def _time_loop(data_on_device: str) -> Callable[..., tuple[float, list[float]]]:
    """The real training loop, with train's --data-on-device ``data_on_device``."""

    def timed(args, size, batch_size, precision, channels_last, compile, device, info, winograd, mem):
        from cyclegan.bench.loop import time_loop

        mem.timed()
        return time_loop(args, size, batch_size, precision, channels_last, compile, device, data_on_device, info)

    return timed


@dataclass(frozen=True)
class BenchKind:
    """One kind of row: how it is timed (seconds of the warm-up, seconds per iteration of each
    repeat), the FLOPs of one iteration, the fast-path task its ``auto`` precision is chosen for,
    and whether the Winograd switch applies."""

    time: Callable[..., tuple[float, list[float]]]
    flops: Callable[[argparse.Namespace, int, int, torch.device], int]
    task: str
    winograd: bool = False


#: The kinds of rows, by ``--mode`` name: a new kind is one entry here.
KINDS: dict[str, BenchKind] = {
    "train": BenchKind(_time_steps(setup_train), _train_flops, "train"),
    "translate": BenchKind(_time_steps(_setup_translate), _translate_flops, "translate", winograd=True),
    "loop": BenchKind(_time_loop("off"), _train_flops, "train"),
    "loop-dev": BenchKind(_time_loop("on"), _train_flops, "train"),
}
MODES = tuple(KINDS)


def count_flops(mode: str, args: argparse.Namespace, size: int, batch_size: int, device: torch.device) -> int:
    """FLOPs of one iteration of ``mode`` (fp32, eager, contiguous) by FlopCounterMode."""
    return KINDS[mode].flops(args, size, batch_size, device)


def bench_row(mode: str, args: argparse.Namespace, size: int, batch_size: int, precision: str,
              channels_last: bool, compile: bool, device: torch.device, winograd: bool = False) -> dict:
    """One row: set up, warm up, time, measure memory. Errors are returned in the row."""
    row: dict[str, Any] = {"mode": mode, "model": args.model if mode != "translate" else None,
                           "size": size, "batch_size": batch_size, "precision": precision,
                           "channels_last": channels_last, "compile": compile, "winograd": winograd,
                           "compile_backend": args.compile_backend if compile else None,
                           "netG": args.netG, "ngf": args.ngf, "ndf": args.ndf if mode != "translate" else None,
                           "device": str(device), "error": None}
    warmup = max(args.warmup, 2) if compile else args.warmup
    if getattr(args, "step_graph", False) and mode == "train":  # its eager steps and the capture stay untimed
        warmup = max(warmup, step_graph.WARMUP_STEPS + 2)
    args = argparse.Namespace(**{**vars(args), "warmup": warmup})
    mem = RowMemory(device)
    info: dict[str, Any] = {}
    if compile:
        import torch._dynamo

        torch._dynamo.reset()  # fresh caches: no recompilation limits carried over from earlier rows
    mem.start()
    try:
        warm, times = KINDS[mode].time(args, size, batch_size, precision, channels_last, compile, device, info,
                                       winograd, mem)
    except CompileFailed as e:
        row["error"] = f"torch.compile failed: {e}"
    except Exception as e:
        row["error"] = f"torch.compile failed: {describe_error(e)}" if compile and is_compile_error(e) else describe_error(e)
    finally:
        memory = mem.stop()
        info.pop("translator", None)
        row["step_graph"] = info.pop("step_graph", None) is not None if mode == "train" else None
        release_memory(device)
    row.update({k: info[k] for k in ("fused_adam", "data_path", "fast_path") if k in info})
    if row["error"] is None:
        sec = statistics.median(times)
        row.update({"warmup_iters": warmup, "warmup_sec": warm, "sec_per_iter": sec,
                    "sec_per_iter_min": min(times), "sec_per_iter_max": max(times), "sec_per_iter_runs": times,
                    "iters_per_sec": 1 / sec, "iters_per_sec_min": 1 / max(times),
                    "iters_per_sec_max": 1 / min(times), "images_per_sec": batch_size / sec,
                    **memory})
    return row


def _ordered(values: list, first: Any) -> list:
    """``values`` without repeats, ``first`` (the baseline's value) first when present."""
    out = list(dict.fromkeys(values))
    return sorted(out, key=lambda v: v != first)


@dataclass(frozen=True)
class _Precision:
    name: str
    auto: bool  # chosen by core.fastpath for ``--precision auto``


def _resolved(precisions: list[str], task: str, device: torch.device) -> list[_Precision]:
    """``--precision`` values with ``auto`` as :func:`cyclegan.core.fastpath.choose` resolves it for
    ``task`` on ``device``; an ``auto`` equal to an explicit value given too is one row, not two."""
    out = []
    for p in precisions:
        if p == "auto":
            p = fastpath.choose(device, task, "auto", compile=False).precision
            out.append(_Precision(p, True))
        else:
            out.append(_Precision(p, False))
    names = {q.name for q in out if not q.auto}
    return [q for q in out if not (q.auto and q.name in names)]


@dataclass(frozen=True)
class _Compile:
    on: bool
    mode: str | None  # the torch.compile mode (None: inductor's default)
    auto: bool  # chosen by core.fastpath for ``--compile auto``


def _resolved_compiles(values: list[str], task: str, device: torch.device, precision: str, size: int,
                       given_mode: str | None) -> list[_Compile]:
    """``--compile`` values with ``auto`` as :func:`cyclegan.core.fastpath.choose` resolves it for
    ``task`` in ``precision`` at ``size`` px on ``device`` (as ``cyclegan train`` would for crops
    of that size); an ``auto`` equal to an explicit value given too is one row, not two."""
    out = []
    for v in values:
        if v == "auto":
            fp = fastpath.choose(device, task, precision, None, given_mode, image_side=size)
            out.append(_Compile(fp.compile, fp.compile_mode, True))
        else:
            out.append(_Compile(v == "on", given_mode if v == "on" else None, False))
    explicit = {(c.on, c.mode) for c in out if not c.auto}
    return [c for c in out if not (c.auto and (c.on, c.mode) in explicit)]


def run_bench(args: argparse.Namespace) -> int:
    from cyclegan.core.devices import cudnn_benchmark, pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    modes = list(dict.fromkeys(args.mode))
    model = args.model
    if model == "mnist" and set(modes) - {"train"}:
        raise ValueError("--model mnist: only --mode train (the loop rows read image folders, the translate "
                         "rows a CycleGAN generator)")
    sizes, batches = list(dict.fromkeys(args.size)), list(dict.fromkeys(args.batch_size))
    precisions = _ordered(args.precision, "fp32")  # "auto" is resolved per mode, below
    layouts = [v == "on" for v in _ordered(args.channels_last, "off")]
    compiles = _ordered(args.compile, "off")  # "auto" is resolved per mode, size and precision, below
    winograds = [v == "on" for v in _ordered(args.winograd, "off")]
    rows: list[dict] = []
    with cudnn_benchmark(device):
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
        networks = (f"the MNIST GAN (ngf {args.ngf}, ndf {args.ndf})" if model == "mnist" else
                    f"{model}: {args.netG} (ngf {args.ngf}) / 70x70 PatchGAN (ndf {args.ndf})")
        print(f"cyclegan bench: {networks} on "
              f"{machine['device_name']}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
              f"warm-up {args.warmup}, {args.repeats} x {args.iters} timed iterations, median"
              f"{'; train and loop rows with --step-graph' if getattr(args, 'step_graph', False) else ''}",
              file=sys.stderr)
        print(table_line([name for name, _ in COLUMNS]), flush=True)
        for mode in modes:
            for size in sizes:
                for batch_size in batches:
                    flops: int | None = None
                    try:
                        flops = count_flops(mode, args, size, batch_size, device)
                    except Exception as e:
                        print(f"({mode} {size} px batch {batch_size}: FLOPs not counted: {describe_error(e)})",
                              file=sys.stderr)
                    release_memory(device)
                    base: dict | None = None
                    for precision in _resolved(precisions, KINDS[mode].task, device):
                        compiled = _resolved_compiles(compiles, KINDS[mode].task, device, precision.name, size,
                                                      args.compile_mode)
                        for channels_last in layouts:
                            for c, winograd in [(c, w) for c in compiled
                                                for w in (winograds if KINDS[mode].winograd else [False])]:
                                compile = c.on
                                row_args = args if c.mode == args.compile_mode else \
                                    argparse.Namespace(**{**vars(args), "compile_mode": c.mode})
                                row = bench_row(mode, row_args, size, batch_size, precision.name, channels_last,
                                                compile, device, winograd)
                                row["precision_auto"] = precision.auto
                                row["compile_auto"] = c.auto
                                row["compile_mode"] = c.mode
                                is_base = precision.name == "fp32" and not channels_last and not compile and not winograd
                                row["baseline"] = is_base
                                if is_base and row["error"] is None:
                                    base = row
                                if row["error"] is None:
                                    row["speedup_vs_baseline"] = (base["sec_per_iter"] / row["sec_per_iter"]
                                                                  if base is not None else None)
                                    row["flops_per_iter"] = flops
                                    row["achieved_flops_per_sec"] = flops / row["sec_per_iter"] if flops else None
                                    peak, source = peak_flops(device, precision.name, args.peak_tflops)
                                    row["peak_flops_per_sec"], row["peak_flops_source"] = peak, source
                                    row["fraction_of_peak"] = (row["achieved_flops_per_sec"] / peak
                                                               if peak and flops else None)
                                rows.append(row)
                                print(table_line(row_cells(row)), flush=True)
                                if args.json:
                                    write_json(args.json, doc)
    failed = sum(1 for r in rows if r["error"])
    if args.markdown:
        print()
        print(markdown_table(rows), flush=True)
    if args.json:
        print(f"wrote {args.json}", file=sys.stderr)
    if failed:
        print(f"{failed} of {len(rows)} rows failed (see their error)", file=sys.stderr)
    return 1 if failed else 0
