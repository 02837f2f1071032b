"""What a training process needs around the loop: how it ends (diverged, stopped by a signal),
its random streams (saved in checkpoints so resumed runs draw as straight ones), and the
graceful-stop signal handler."""

from __future__ import annotations

import random
import signal
import sys
from pathlib import Path

import torch


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint was kept. ``what`` says which loss
    and where, without the advice."""

    def __init__(self, message: str, what: str = "") -> None:
        super().__init__(message)
        self.what = what or message


class TrainingStopped(Exception):
    """The run was stopped by SIGINT or SIGTERM after writing a checkpoint. ``status`` is the
    conventional exit status, 128 + the signal's number (130 for SIGINT, 143 for SIGTERM), so a
    pre-empted job does not look finished."""

    def __init__(self, reason: str, checkpoint: Path | None) -> None:
        super().__init__(f"stopped by {reason}; resume with --resume (checkpoint {checkpoint})")
        self.checkpoint = checkpoint
        # a stop agreed with the other ranks of a torchrun job: they were sent SIGTERM or SIGINT
        sig = signal.Signals[reason] if reason in signal.Signals.__members__ else signal.SIGTERM
        self.status = 128 + int(sig)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_as_python_state(state["python"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        restore_cuda_rng(state["cuda"], torch.cuda.device_count(), torch.cuda.set_rng_state)


def restore_cuda_rng(states: list, devices: int, set_state) -> None:
    """The saved CUDA generators' states, one per device that is here: a run saved with more
    visible GPUs than it resumes with (torch's ``set_rng_state_all`` raises an IndexError then),
    or with fewer (the others keep theirs)."""
    for index, state in enumerate(list(states)[:devices]):
        set_state(state, index)


def _as_python_state(s):  # torch.load gives lists where random.getstate() had tuples
    return tuple(_as_python_state(x) for x in s) if isinstance(s, (list, tuple)) else s


class StopFlag:
    """First SIGINT/SIGTERM asks the loop to save and stop after the current step; a second
    SIGINT interrupts at once (the last checkpoint on disk stays valid either way)."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._old: dict[int, object] = {}

    def __enter__(self) -> "StopFlag":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: no handlers, no graceful stop
                pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        print(f"\n{self.requested} received: saving a checkpoint after this step "
              "(press Ctrl-C again to abort at once)", file=sys.stderr, flush=True)
