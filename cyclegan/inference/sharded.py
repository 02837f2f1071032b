"""One folder translated by several processes: ``torchrun --nproc_per_node N -m cyclegan translate
--model M --input big/ --output out/`` (several machines: torchrun's ``--nnodes`` and rendezvous).

- Rank 0 lists the outputs still to write (all of them with ``--overwrite``) and sends that list
  to every rank before anyone writes, so all ranks split the same list: rank *r* takes items
  *r*, *r + N*, ... (sorted paths, so a rerun splits the same way). Every output belongs to one
  rank: it is written once, atomically (:func:`cyclegan.core.checkpoint.atomic_write`), and the
  temporary files a killed rank left are removed by the rank that owns the output next time.
- Each rank runs on its own device (``cuda:LOCAL_RANK`` for ``--device auto``) the same pipeline
  as one process (:func:`cyclegan.inference.folder.translate_jobs`).
- One progress bar, on rank 0, counts the images done by every rank (a counter in the process
  group's key-value store, which no rank waits on, read by rank 0 between its batches); the
  ranks that finish early wait for the
  others by polling that store, not in a collective, so an unbalanced share never hits the
  collective timeout. Then one gather: rank 0 prints the totals of all ranks and writes
  ``index.html``; every rank returns them, so the exit status of every rank says whether any
  rank failed a file.
- A rank that dies ends the job (torchrun stops the others); rerunning the same command skips every
  finished output and translates only the rest, split over the ranks of the new run.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from collections.abc import Callable

from cyclegan.core.distributed import DistInfo, broadcast_object, gather_objects, shared_counter
from cyclegan.inference.folder import TranslateJob, TranslateSummary, translate_jobs
from cyclegan.inference.translator import Translator

__all__ = ["share_of", "translate_sharded"]

POLL_S = 0.25


def share_of(items: list, rank: int, world_size: int) -> list:
    """Rank ``rank``'s share of ``items``: every ``world_size``-th item from the ``rank``-th, so
    the shares differ by at most one item and neighbours (often alike in size) are spread out."""
    return items[rank::world_size]


def _missing(jobs: list[TranslateJob]) -> list[int]:
    """Indices of the jobs whose output does not exist yet: one listing per output folder rather
    than a stat per file (millions of files on a network file system, while the other ranks wait)."""
    present: dict[Path, set[str]] = {}
    for folder in {job.output.parent for job in jobs}:
        try:
            present[folder] = {e.name for e in os.scandir(folder)}
        except OSError:  # not created yet: nothing in it
            present[folder] = set()
    return [i for i, job in enumerate(jobs) if job.output.name not in present[job.output.parent]]


def translate_sharded(translator: Translator, jobs: list[TranslateJob], me: DistInfo, *, batch_size: int = 4,
                      workers: int = 4, fmt: str | None = None, quality: int = 95, side_by_side: bool = False,
                      overwrite: bool = False, progress: bool = True) -> TranslateSummary:
    """Translate this rank's share of ``jobs`` (every rank passes the same list) and return the
    totals over all ranks (on every rank). See the module docstring."""
    from tqdm import tqdm

    start = time.perf_counter()
    todo = (list(range(len(jobs))) if overwrite else _missing(jobs)) if me.is_main else None
    todo = broadcast_object(todo, me.world_size)
    share = [jobs[i] for i in share_of(todo, me.rank, me.world_size)]

    counter = shared_counter("translate/done")
    finished = shared_counter("translate/ranks_finished")
    bar = tqdm(total=len(todo), unit="img", desc=f"translate ({me.world_size} processes)", file=sys.stderr,
               disable=not (progress and me.is_main), dynamic_ncols=True, mininterval=0.5)
    # The store's client is used from this thread only (it is not made for several).
    on_progress: Callable[[int], None] | None
    if counter is None:  # no shared store: rank 0's bar counts its own share only
        on_progress = bar.update if me.is_main else None
    elif me.is_main:
        def on_progress(n: int) -> None:
            bar.update(counter(n) - bar.n)  # every rank's images so far
    else:
        on_progress = counter

    local = translate_jobs(translator, share, batch_size=batch_size, workers=workers, fmt=fmt, quality=quality,
                           side_by_side=side_by_side, overwrite=True, progress=False, on_progress=on_progress)
    if finished is not None:  # wait for the slower ranks without a collective (which would time out)
        finished(1)
        while finished(0) < me.world_size:
            if me.is_main and counter is not None:
                on_progress(0)
            time.sleep(POLL_S)
    results = gather_objects((local.translated, local.failed), me.world_size)
    summary = TranslateSummary(translated=sum(r[0] for r in results), skipped=len(jobs) - len(todo),
                               failed=[f for r in results for f in r[1]], processes=me.world_size)
    bar.update(summary.translated + len(summary.failed) - bar.n)
    bar.close()
    summary.seconds = time.perf_counter() - start
    return summary
