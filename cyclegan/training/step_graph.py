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
import weakref

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
    return StepGraph(model, capture=False, warmup=1, forbid_host_reads=True)


@dataclasses.dataclass
class _Captured:
    """One captured kind of step: the graph, its outputs (losses, then gradient flags, stacked)
    and the learning rates it was captured with."""

    graph: torch.cuda.CUDAGraph | None  # None in the dry run
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
        # inside, it would be re-created by every replay); the dry run follows the same steps
        self.warmup = max(1, warmup)
        #: per kind of step (whether it updates G), its captured graph
        self.graphs: dict[bool, _Captured] = {}
        self.captures = 0  # how many times a graph was captured (tests, the run's closing line)
        self.replays = 0
        #: ("warmup" | "capture", updates G) in the order they happened (tests read it)
        self.events: list[tuple[str, bool]] = []
        #: why capturing failed (the run then goes on with the ordinary step), or None
        self.failed: str | None = None
        self._shapes: dict[str, torch.Size] | None = None  # the first full batch's: the graphs' inputs
        #: the images in a full batch (the trainer sets it): the pools' plans and the graphs'
        #: inputs are sized by it. None: the first batch is taken to be full.
        self.batch_size: int | None = None
        self._side: torch.cuda.Stream | None = None  # created by the first warm-up step
        #: one memory pool shared by every capture (see _capture); created by the first one
        self._pool: tuple[int, int] | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the graph and go back to eager steps: call after the model's or the optimizers'
        state was reloaded (their tensors are new ones)."""
        self.graphs = {}
        #: per kind of step (whether it updates G), the warm-up steps it has run: each kind is
        #: warmed up before its own capture (a run resumed in the middle of a --d-steps cycle
        #: meets the D-only kind first, and cuDNN must not benchmark inside a capture)
        self._warmed: dict[bool, int] = {}
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
        if shapes != self._shapes:
            return self._planned_step(batch)
        update_g = model.step_count % model.d_steps == 0  # as train_step decides
        if self._warmed.get(update_g, 0) < self.warmup:
            self._warmed[update_g] = self._warmed.get(update_g, 0) + 1
            self.events.append(("warmup", update_g))
            return self._warmup_step(batch) if self.capture else self._planned_step(batch)
        lrs = tuple(float(g["lr"]) for opt in model.optimizers.values() for g in opt.param_groups)
        # This step's host decisions first: a capture then records the step reading them from
        # the plan's device tensors (drawn after it, DiffAugment would draw inside the capture).
        model.draw_plan(batch)
        captured = self.graphs.get(update_g)
        if not self.capture:  # the dry run: the region a capture records, run under its stand-in
            if captured is None or captured.lrs != lrs:
                self.graphs[update_g] = _Captured(None, torch.empty(0), [], [], lrs)
                self.captures += 1
                self.events.append(("capture", update_g))
            with strict_capture(model, batch) if self.forbid_host_reads else contextlib.nullcontext():
                return model.train_step(batch)
        if captured is None or captured.lrs != lrs:
            try:
                captured = self.graphs[update_g] = self._capture(batch, lrs)
            except Exception as e:  # an operation that cannot be captured: on without the graph
                self.failed = describe_error(e, 200)
                log.warning("--step-graph: capturing the step failed (%s); continuing with the ordinary step",
                            self.failed)
                # The capture ran nothing: this step, its plan drawn, runs eagerly; then ordinary
                # steps, which draw as the planned ones do.
                logs = model.train_step(batch)
                self.reset()
                return logs
        for k, v in self._inputs.items():
            v.copy_(batch[k], non_blocking=True)
        captured.graph.replay()
        self.replays += 1
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
        """The planned step run eagerly (without CUDA, or for a batch of another size). With
        ``forbid_host_reads`` (the dry run) the step runs under :func:`strict_capture`, which
        refuses what a capture cannot contain."""
        self.model.draw_plan(batch)
        if not self.forbid_host_reads:
            return self.model.train_step(batch)
        with strict_capture(self.model, batch):
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
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        try:
            # Adam refuses to be captured unless capturable; only while capturing, so that the
            # optimizer state a checkpoint stores is the ordinary one.
            for g in groups:
                g["capturable"] = True
            with record(graph, self._stream(), self._pool):
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
def record(graph: torch.cuda.CUDAGraph, stream: torch.cuda.Stream, pool: tuple[int, int]):
    """Capture what runs inside into ``graph`` on ``stream``, allocating from ``pool``.

    ``torch.cuda.graph`` without its failure path's leaks (torch 2.9-2.14, read in their source):
    when ``capture_end()`` raises (an operation inside invalidated the capture), its ``__exit__``
    never leaves the capture stream's context, so every later kernel of the run goes to that
    stream; and ``CUDAGraph::capture_end`` throws before it tells the caching allocator that the
    capture is over, so that stream's later allocations still go to the graph's pool. Here the
    stream's context is left whatever happens, and a failed capture's pool routing is ended.

    One pool for every capture of a run (the step's kinds with ``--d-steps`` above 1, and the
    captures after a learning rate change): graphs that share a pool must not rely on memory that
    another one's replay may reuse, and these leave nothing behind that a later step reads (the
    trainer copies a replay's outputs at once, and every replay makes its gradients anew).
    ``capture_error_mode="thread_local"``: the DataLoader's pin-memory thread may call CUDA."""
    with torch.cuda.stream(stream):
        graph.capture_begin(pool=pool, capture_error_mode="thread_local")
        try:
            yield
        except BaseException:
            _end_failed_capture(graph, pool)
            raise
        try:
            graph.capture_end()
        except BaseException:
            _end_pool_routing(pool)
            raise


def _end_failed_capture(graph: torch.cuda.CUDAGraph, pool: tuple[int, int]) -> None:
    """After an exception inside a capture: end the stream's capture (CUDA requires it before the
    stream runs anything again; it raises for an invalidated capture) and the pool routing."""
    try:
        graph.capture_end()
    except Exception:
        _end_pool_routing(pool)


def _end_pool_routing(pool: tuple[int, int]) -> None:
    """Tell the caching allocator that the capture into ``pool`` is over, where torch's
    ``capture_end`` failed before doing so (newer versions do it first; then this finds nothing
    to end and raises, which is fine)."""
    end = getattr(torch._C, "_cuda_endAllocateToPool", None) or getattr(torch._C, "_cuda_endAllocateCurrentStreamToPool", None)
    if end is None:
        return
    with contextlib.suppress(Exception):
        end(torch.cuda.current_device(), pool)


#: tensor methods that read a value on the host (on CUDA: wait for the GPU; refused in a capture)
HOST_READS = frozenset({"item", "__bool__", "__float__", "__int__", "__index__", "__format__", "tolist", "numpy",
                        "cpu"})
#: functions that make a tensor of host data (on CUDA: a host-to-device copy), whatever the device
FROM_HOST_DATA = frozenset({"tensor", "as_tensor", "asarray", "from_numpy", "scalar_tensor"})
#: factories that make a host tensor unless given a device (or a tensor to take it from)
FACTORIES = frozenset({"zeros", "ones", "empty", "full", "arange", "range", "linspace", "logspace", "eye",
                       "rand", "randn", "randint", "randperm", "normal", "empty_strided"})
#: tensor methods that move their tensor to the device (on CUDA: a host-to-device copy when it is a host tensor)
MOVES = frozenset({"to", "cuda", "copy_"})


class CaptureViolation(RuntimeError):
    """A planned step did something a CUDA graph capture cannot contain (:func:`strict_capture`)."""


@contextlib.contextmanager
def strict_capture(model: torch.nn.Module | None = None, batch: dict | None = None):
    """A CPU stand-in for the capture of a training step: inside, whatever a CUDA graph capture
    would refuse (or silently get wrong) raises :class:`CaptureViolation`:

    - a host read of a tensor's value (``.item()``, ``bool()``, ``.tolist()``, ``.cpu()``, ...);
    - a host RNG draw: a random function given a CPU ``generator`` (the models' own streams);
    - a new tensor from host data (``torch.tensor``, ``as_tensor``, ``from_numpy``), or a factory
      (``zeros``, ``arange``, ``rand``, ...) without a device, which on CUDA makes a host tensor;
    - a host-to-device copy: ``.to()``, ``.cuda()`` or ``copy_()`` of a tensor that is neither
      one of the step's device tensors (those reachable from ``model``: parameters, buffers,
      optimizer state, the plan's tensors; and ``batch``) nor made inside the region.

    On the CPU every tensor is a host tensor, so "device tensor" means one the step holds on the
    device in a CUDA run. What passes here makes none of these calls; a capture may still fail
    for reasons no CPU shows (an operator without CUDA graph support), which the trainer survives
    (cyclegan.training.loop)."""
    from torch.overrides import TorchFunctionMode

    known: weakref.WeakValueDictionary[int, Tensor] = weakref.WeakValueDictionary()
    for t in _device_tensors(model, batch):
        known[id(t)] = t

    def is_known(t: Tensor) -> bool:
        return known.get(id(t)) is t

    def remember(out) -> None:
        if isinstance(out, Tensor):
            known[id(out)] = out
        elif isinstance(out, (list, tuple)):
            for o in out:
                remember(o)

    class _StrictCapture(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = getattr(func, "__name__", "")
            if name in HOST_READS:
                raise CaptureViolation(f"a host read of a tensor ({name}) inside the step")
            generator = kwargs.get("generator")
            if generator is not None and generator.device.type == "cpu":
                raise CaptureViolation(f"a host RNG draw ({name} from a CPU generator) inside the step")
            if name in FROM_HOST_DATA:
                raise CaptureViolation(f"a new tensor from host data ({name}) inside the step")
            has_tensor = any(isinstance(a, Tensor) for a in args)
            if name in FACTORIES and kwargs.get("device") is None and not has_tensor and func.__module__ != "torch.Tensor":
                raise CaptureViolation(f"a host tensor made inside the step ({name} without a device)")
            if name in MOVES and args and isinstance(args[0], Tensor) and _moves_device(name, args, kwargs):
                source = args[1] if name == "copy_" else args[0]
                if isinstance(source, Tensor) and not is_known(source):
                    raise CaptureViolation(f"a host-to-device copy ({name}) of a tensor made outside the step "
                                           f"{tuple(source.shape)}")
            out = func(*args, **kwargs)
            if name == "__iter__":  # the tensors it yields are the step's own too
                out = list(out)
                remember(out)
                return iter(out)
            remember(out)
            return out

    with _StrictCapture():
        yield


def _moves_device(name: str, args: tuple, kwargs: dict) -> bool:
    """Whether a ``to``/``cuda``/``copy_`` call may put its data on another device (``.to(dtype)``
    does not)."""
    if name != "to":
        return True
    targets = [*args[1:], kwargs.get("device"), kwargs.get("other")]
    return any(t is not None and not isinstance(t, (bool, torch.dtype, torch.memory_format)) for t in targets)


def _device_tensors(root, batch: dict | None, depth: int = 4) -> list[Tensor]:
    """The tensors a CUDA run holds on the device for a step of ``root`` (a model): its
    parameters and buffers, its optimizers' state, the batch, and the tensors its attributes hold
    (plans, pool buffers), found through dicts, lists and plain objects ``depth`` levels down."""
    found: list[Tensor] = [v for v in (batch or {}).values() if isinstance(v, Tensor)]
    if root is None:
        return found
    if isinstance(root, torch.nn.Module):
        found += [*root.parameters(), *root.buffers()]
    for opt in getattr(root, "optimizers", {}).values():
        for state in opt.state.values():
            found += [v for v in state.values() if isinstance(v, Tensor)]
    seen: set[int] = set()

    def walk(obj, level: int) -> None:
        if id(obj) in seen or level < 0:
            return
        seen.add(id(obj))
        if isinstance(obj, Tensor):
            found.append(obj)
        elif isinstance(obj, dict):
            for v in obj.values():
                walk(v, level - 1)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                walk(v, level - 1)
        elif hasattr(obj, "__dict__") and not isinstance(obj, (torch.nn.Module, torch.optim.Optimizer, type)):
            walk(vars(obj), level - 1)

    walk({k: v for k, v in vars(root).items() if not k.startswith("_modules")}, depth)
    return found


#: the old name of :func:`strict_capture`'s host-read check, kept for callers of the dry run
no_host_reads = strict_capture
