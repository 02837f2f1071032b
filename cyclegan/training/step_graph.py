"""The whole training step as one CUDA graph (``cyclegan train --step-graph``, also ``mnist train``).

At 32 px and batch 1 a CycleGAN step is several hundred small kernels, and the GPU waits for the
host that launches them (issue 15: 60 ms/iter on an H200, the GPU idle most of the step). Captured
once as a CUDA graph, a step is one replay. Everything on the device is inside: the generators,
both updates with their losses, fused Adam (which skips a non-finite update on the device), the
EMA of the generators and the image pools.

What stays on the host, per step, all without waiting for the GPU:

- copying the batch into the graph's input tensors;
- the model's random decisions (CycleGAN's pools and DiffAugment parameters, CUT's flips and
  patch locations, the MNIST GAN's noise), drawn from their own generators exactly as the eager
  step draws them and written into tensors the graph reads (``GANModel.draw_plan``);
- the EMA's weight for this update (its decay ramps up over the first thousands of updates);
- the step counters, and which kind of step comes next: with ``--d-steps`` above 1, steps that
  update D only and steps that update both are two graphs.

The graph is captured after a few eager runs of the planned step itself, on a side stream as CUDA
requires, so that what the capture records has run before: Adam's state, cuDNN's algorithm
choices, inductor's kernels (``--compile``) and the allocator settle first. A smaller last batch of an
epoch runs the same planned step without the graph. It is captured again
whenever a learning rate changes: fused Adam takes the rate as a kernel argument, and the
schedule changes it at epoch ends. After the trainer reloads state (a NaN roll-back), the
optimizer's tensors are new, so warm-up and capture start over.

The arithmetic is the ordinary step's, with one difference in bf16: autocast's cache of weight
casts is off for every planned step (a capture requires it, and torch.compile guards on it, so the
warm-up steps run without it too). A weight used several times in a step, as the generators are,
then accumulates its gradient in fp32 rather than in bf16.

Without CUDA (``capture=False``) the same planned step runs eagerly each time. The CPU tests use
this mode to check the planned step against the ordinary one. ``CYCLEGAN_STEP_GRAPH_DRY=1`` makes
``--step-graph`` run it on a machine without CUDA, every step checked for host reads of tensor
values (which a capture cannot contain): a dry run of the graph's logic, no faster.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os

import torch
from torch import Tensor

from cyclegan.core.fastpath import FastPath, describe_error
from cyclegan.models.gan import GANModel

log = logging.getLogger("cyclegan.train")

#: eager steps before the first capture
WARMUP_STEPS = 3


def unsupported(model: GANModel, device: torch.device, precision: str, world_size: int,
                static_shapes: bool) -> str | None:
    """Why ``--step-graph`` cannot run here (the run goes on without it, saying so), or None."""
    if device.type != "cuda" and not dry_run():
        return f"it needs CUDA (the device is {device.type})"
    if precision == "fp16":
        return "--precision fp16 (its gradient scaler decides on the host); bf16 or fp32 can"
    if world_size > 1:
        return "torchrun (the gradient all-reduce is outside the graph)"
    if not static_shapes:
        return "images of varying size (--preprocess none)"
    return model.step_graph_unsupported()


def dry_run() -> bool:
    """``CYCLEGAN_STEP_GRAPH_DRY=1``: the planned step without CUDA (see the module docstring)."""
    return os.environ.get("CYCLEGAN_STEP_GRAPH_DRY", "") not in ("", "0")


#: inductor modes that replay CUDA graphs of their own, which cannot run inside a capture
_GRAPH_MODES = {"reduce-overhead": "default", "max-autotune": "max-autotune-no-cudagraphs"}


def setup(model: GANModel, asked: bool, compile_asked: bool | None, fast_path: FastPath, device: torch.device,
          world_size: int, static_shapes: bool) -> tuple[StepGraph | None, FastPath]:
    """The trainer's step graph when ``--step-graph`` was ``asked`` and can run here (else None,
    and one line saying why), and the fast path to run: the networks are not compiled into CUDA
    graphs of their own (auto compilation is off; an explicit ``--compile`` keeps inductor's
    kernels without its graphs)."""
    if not asked:
        return None, fast_path
    why = unsupported(model, device, fast_path.precision, world_size, static_shapes)
    if why:
        log.warning("--step-graph not used: %s", why)
        return None, fast_path
    compile, mode = fast_path.compile, fast_path.compile_mode
    if compile and compile_asked is None:
        compile, mode = False, None
    elif compile and mode in _GRAPH_MODES:
        log.info("--step-graph: the networks compiled in mode %s (not %s: the step is one graph already)",
                 _GRAPH_MODES[mode], mode)
        mode = _GRAPH_MODES[mode]
    graph = for_device(model, device)
    if compile and not graph.capture:
        # dynamo guards on the torch function mode stack: the check would recompile every network
        graph.forbid_host_reads = False
        log.info("--step-graph dry run with --compile: host reads are not checked")
    return graph, dataclasses.replace(fast_path, compile=compile, compile_mode=mode,
                                      step_graph="capture" if graph.capture else "dry", why=f"{fast_path.why}; --step-graph")


def for_device(model: GANModel, device: torch.device) -> StepGraph:
    """The step graph of ``model`` on ``device``: captured on CUDA, else (CYCLEGAN_STEP_GRAPH_DRY)
    the dry run, its planned steps checked for host reads."""
    if device.type == "cuda":
        return StepGraph(model)
    return StepGraph(model, capture=False, warmup=0, forbid_host_reads=True)


@dataclasses.dataclass
class _Captured:
    """One captured kind of step: the graph, its outputs (losses, then gradient flags, stacked)
    and the learning rates it was captured with."""

    graph: torch.cuda.CUDAGraph
    outputs: Tensor
    loss_keys: list[str]
    finite_keys: list[str]
    lrs: tuple[float, ...]


class StepGraph:
    """Runs ``model``'s training steps as replays of captured CUDA graphs (see the module
    docstring): one per kind of step, the discriminator-only steps and the steps that also update
    G when ``d_steps`` is above 1. :meth:`step` replaces ``model.train_step`` and returns the
    same losses."""

    def __init__(self, model: GANModel, capture: bool = True, warmup: int = WARMUP_STEPS,
                 forbid_host_reads: bool = False):
        self.model = model
        self.capture = capture
        #: without capture: run each planned step under :func:`no_host_reads`, to show on any
        #: machine that the step could be captured
        self.forbid_host_reads = forbid_host_reads
        # a capture needs one eager step at least: Adam's state must exist before it (created
        # inside, it would be re-created by every replay)
        self.warmup = max(1, warmup) if capture else warmup
        #: per kind of step (whether it updates G), its captured graph
        self.graphs: dict[bool, _Captured] = {}
        self.captures = 0  # how many times a graph was captured (tests, the run's closing line)
        #: why capturing failed (the run then goes on with the ordinary step), or None
        self.failed: str | None = None
        self._shapes: dict[str, torch.Size] | None = None  # the first full batch's: the graphs' inputs
        #: the images in a full batch (the trainer sets it): the pools' plans and the graphs'
        #: inputs are sized by it. None: the first batch is taken to be full.
        self.batch_size: int | None = None
        self._side: torch.cuda.Stream | None = None  # created by the first warm-up step
        self.reset()

    def reset(self) -> None:
        """Forget the graph and go back to eager steps: call after the model's or the optimizers'
        state was reloaded (their tensors are new ones)."""
        self.graphs = {}
        self._eager_left = self.warmup if self.capture else 0
        self._planned = False
        self.model.stop_planning()
        self.model.precision.cache_enabled = True

    # -- a step ----------------------------------------------------------------------------------
    def step(self, batch: dict) -> dict[str, Tensor]:
        model = self.model
        if self.failed:
            return model.train_step(batch)
        shapes = {k: v.shape for k, v in batch.items() if isinstance(v, Tensor)}
        n = next(iter(shapes.values()))[0]
        full = self.batch_size or n
        if not self._planned:
            self._plan_mode(batch, full)
        # The graphs' inputs are shaped like the first full batch. A smaller last batch of an
        # epoch runs the planned step eagerly, also when it comes first (a run resumed or rolled
        # back just before an epoch's end).
        if self._shapes is None and n == full:
            self._shapes = shapes
        if shapes != self._shapes or not self.capture:
            return self._planned_step(batch)
        if self._eager_left > 0:
            self._eager_left -= 1
            return self._warmup_step(batch)
        update_g = model.step_count % model.d_steps == 0  # as train_step decides
        lrs = tuple(float(g["lr"]) for opt in model.optimizers.values() for g in opt.param_groups)
        captured = self.graphs.get(update_g)
        if captured is None or captured.lrs != lrs:
            try:
                captured = self.graphs[update_g] = self._capture(batch, lrs)
            except Exception as e:  # an operation that cannot be captured: on without the graph
                self.failed = describe_error(e, 200)
                log.warning("--step-graph: capturing the step failed (%s); continuing with the ordinary step",
                            self.failed)
                self.reset()
                return model.train_step(batch)
        model.draw_plan(batch)
        for k, v in self._inputs.items():
            v.copy_(batch[k], non_blocking=True)
        captured.graph.replay()
        model.step_count += 1
        if update_g and model.ema_generators is not None:
            model.ema_updates += 1
        # One copy of all outputs: the next replay overwrites the graph's own, and the trainer
        # keeps a step's losses until its next finiteness check.
        out = captured.outputs.clone()
        n = len(captured.loss_keys)
        model.grads_finite = {k: out[n + i].bool() for i, k in enumerate(captured.finite_keys)}
        return {k: out[i] for i, k in enumerate(captured.loss_keys)}

    def _planned_step(self, batch: dict) -> dict[str, Tensor]:
        """The planned step run eagerly (without CUDA, or for a batch of another size)."""
        self.model.draw_plan(batch)
        with no_host_reads() if self.forbid_host_reads else contextlib.nullcontext():
            return self.model.train_step(batch)

    def _warmup_step(self, batch: dict) -> dict[str, Tensor]:
        """The planned step, eagerly, on the capture's side stream: the capture then records code
        that has run (inductor's kernels compiled, cuDNN's algorithms chosen, Adam's state made)."""
        side = self._stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            logs = self._planned_step(batch)
        torch.cuda.current_stream().wait_stream(side)
        return logs

    def _stream(self) -> torch.cuda.Stream:
        """The side stream of the warm-up steps and of the capture: the same one, so that what
        libraries set up lazily per stream (cuDNN and cuBLAS workspaces) exists before capturing."""
        if self._side is None:
            self._side = torch.cuda.Stream()
        return self._side

    def _plan_mode(self, batch: dict, batch_size: int) -> None:
        """The model's host decisions into device tensors (GANModel.start_planning), Adam fused
        (it skips a non-finite update on the device)."""
        if not self.model.use_fused_optimizers(force=True):
            raise RuntimeError("--step-graph needs fused Adam")
        self.model.start_planning(batch, batch_size)
        # Autocast's cache of weight casts must be off inside a capture; off for every planned
        # step, warm-up included: torch.compile guards on it, and a network compiled with it on
        # would be compiled again inside the capture.
        self.model.precision.cache_enabled = False
        self._planned = True

    def _capture(self, batch: dict, lrs: tuple[float, ...]) -> _Captured:
        """Capture the kind of step the model would take next (nothing runs)."""
        model = self.model
        update_g = model.step_count % model.d_steps == 0
        self.graphs.pop(update_g, None)  # the old graph's memory goes back before the new capture
        torch.cuda.synchronize()
        if not self.graphs:  # the input tensors every graph reads
            self._inputs = {k: torch.empty_like(v) for k, v in batch.items() if isinstance(v, Tensor)}
        for k, v in self._inputs.items():
            v.copy_(batch[k])
        static = {**batch, **self._inputs}
        counters = model.step_count, model.ema_updates
        groups = [g for opt in model.optimizers.values() for g in opt.param_groups]
        graph = torch.cuda.CUDAGraph()
        try:
            # Adam refuses to be captured unless capturable; only while capturing, so that the
            # optimizer state a checkpoint stores is the ordinary one.
            for g in groups:
                g["capturable"] = True
            # thread_local: the DataLoader's pin-memory thread may call CUDA meanwhile
            with torch.cuda.graph(graph, stream=self._stream(), capture_error_mode="thread_local"):
                logs = model.train_step(static)
                finite_keys = list(model.grads_finite)
                outputs = torch.stack([*(v.float() for v in logs.values()),
                                       *(model.grads_finite[k].float() for k in finite_keys)])
        finally:
            for g in groups:
                g["capturable"] = False
            model.step_count, model.ema_updates = counters  # the capture ran nothing
        self.captures += 1
        log.debug("training step (G updated: %s) captured as a CUDA graph (capture %d)", update_g, self.captures)
        return _Captured(graph, outputs, list(logs), finite_keys, lrs)


@contextlib.contextmanager
def no_host_reads():
    """Inside: reading a tensor's value on the host (``.item()``, ``bool()``, ``.tolist()``,
    ``.cpu()``, ...) raises. A step that passes on the CPU makes no such read, which on CUDA would
    wait for the GPU and cannot be captured."""
    from torch.overrides import TorchFunctionMode

    reads = {"item", "__bool__", "__float__", "__int__", "__index__", "tolist", "numpy", "cpu"}

    class _NoHostReads(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            name = getattr(func, "__name__", "")
            if name in reads:
                raise RuntimeError(f"a host read of a tensor ({name}) inside the step")
            return func(*args, **(kwargs or {}))

    with _NoHostReads():
        yield
