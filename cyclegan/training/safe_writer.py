"""TensorBoard logging that never ends a run: a full disk or a vanished folder turns the logs off
with one warning, so the error that matters (a checkpoint that cannot be written) is the one the
user sees, not TensorBoard's OSError from a background thread or from ``close()``."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("cyclegan.train")


def _reason(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__


def _quiet_writer_thread_errors() -> None:
    """TensorBoard's writer thread re-raises its OSError, which Python prints as an "Exception in
    thread" traceback; the same error is raised again by the writer's next call, where
    :class:`SafeWriter` reports it as one warning. Chained, and limited to that thread and OSError."""
    previous = threading.excepthook
    if getattr(previous, "quiets_tensorboard", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if isinstance(args.exc_value, OSError) and type(args.thread).__name__ == "_AsyncWriterThread":
            return
        previous(args)

    hook.quiets_tensorboard = True  # type: ignore[attr-defined]
    threading.excepthook = hook


class SafeWriter:
    """A ``SummaryWriter`` for ``folder`` whose every call (add_scalar, add_image, flush, close,
    ...) logs the first OSError once and then does nothing."""

    def __init__(self, folder: Path, **kwargs: Any) -> None:
        self.folder = folder
        self._writer = None
        _quiet_writer_thread_errors()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(folder), **kwargs)
        except OSError as e:
            self._disable(e)

    def _disable(self, e: OSError) -> None:
        log.warning("TensorBoard logging stopped: could not write %s: %s", self.folder, _reason(e))
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except OSError:
                pass

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._writer, name) if self._writer is not None else None

        def call(*args: Any, **kwargs: Any) -> Any:
            if self._writer is None:
                return None
            try:
                return method(*args, **kwargs)
            except OSError as e:
                self._disable(e)
                return None

        return call
