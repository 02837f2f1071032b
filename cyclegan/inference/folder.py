"""Translating a folder (or one file) to an output folder: decoding and encoding threads around
batched forward passes, atomic writes, a summary."""

from __future__ import annotations

import io
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
import numpy as np
import torch
from PIL import Image
from torch import Tensor
import html
import urllib.parse

from cyclegan.core.checkpoint import atomic_write
from cyclegan.data.images import DataError, UnreadableImageError, find_images, load_image
from cyclegan.inference.translator import Translator

__all__ = ["TranslateJob", "TranslateSummary", "plan_jobs", "translate_jobs"]

log = logging.getLogger("cyclegan.translate")

OUTPUT_FORMATS = ("png", "jpg", "webp")
_PIL_FORMAT = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}


# --------------------------------------------------------------------------------------------
# Folders: jobs, the pipeline, outputs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TranslateJob:
    source: Path
    output: Path
    label: str  # the input's path relative to the input folder (for messages and the HTML page)


@dataclass
class TranslateSummary:
    translated: int = 0
    skipped: int = 0  # outputs that already existed
    failed: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0
    index: Path | None = None  # the index.html written for a folder, if any
    processes: int = 1  # ranks that shared the work (torchrun: inference.sharded)

    @property
    def ok(self) -> bool:
        return not self.failed

    def describe(self) -> str:
        rate = self.translated / self.seconds if self.seconds > 0 else 0.0
        hint = " (outputs exist; --overwrite redoes them)" if self.skipped else ""
        text = (f"{self.translated} translated, {self.skipped} skipped{hint}, {len(self.failed)} failed "
                f"in {self.seconds:.1f} s ({rate:.2f} images/s)"
                + (f" over {self.processes} processes" if self.processes > 1 else ""))
        for path, reason in self.failed:
            text += f"\n  failed: {path}: {reason}"
        return text


def _output_format(fmt: str | None, output: Path | None = None) -> str:
    if fmt:
        return "jpg" if fmt == "jpeg" else fmt
    if output is not None and output.suffix.lower().lstrip(".") in _PIL_FORMAT:
        return "jpg" if output.suffix.lower() == ".jpeg" else output.suffix.lower().lstrip(".")
    return "png"  # lossless, as the original release's results


def _check_not_inside(input_path: Path, output: Path) -> None:
    src, dst = input_path.resolve(), output.resolve()
    if input_path.is_dir():
        if dst == src or src in dst.parents:
            raise DataError(f"--output {output} is the input folder {input_path} or inside it: outputs would mix "
                            "with the inputs (and be read as inputs next time); choose a folder outside it")
    elif dst == src:
        raise DataError(f"--output {output} is the input file itself; choose another name")


def _outside(sources: list[Path], out: Path) -> list[Path]:
    """``sources`` without the files that really live in the output folder (reached through a
    symlink in the input folder): they are earlier outputs, and reading them as inputs would nest
    the outputs one level deeper on every run."""
    # os.path.realpath never raises: a symlink pointing at itself (a loop) stays in the list and is
    # reported as unreadable when it is decoded, like any other bad file, instead of stopping the run
    real_out = Path(os.path.realpath(out))
    inside = [p for p in sources if real_out in Path(os.path.realpath(p)).parents]
    if inside:
        log.warning("--input: skipping %d image(s) that are in the output folder %s (reached through a symlink, "
                    "e.g. %s)", len(inside), out, inside[0])
    return [p for p in sources if p not in set(inside)] if inside else sources


def plan_jobs(input_path: str | os.PathLike, output: str | os.PathLike, fmt: str | None = None) -> list[TranslateJob]:
    """One job per input image. A folder is searched recursively and mirrored under ``output``;
    a single file goes to ``output`` (a file name with an image suffix, or a folder)."""
    src, out = Path(input_path), Path(output)
    if not src.exists():
        raise DataError(f"--input {src}: no such file or folder")
    _check_not_inside(src, out)
    if src.is_file():
        if out.suffix.lower().lstrip(".") in _PIL_FORMAT and not out.is_dir():
            if fmt and _output_format(fmt) != _output_format(None, out):
                raise DataError(f"--output {out} has a .{out.suffix.lstrip('.')} suffix but --format is {fmt}")
            return [TranslateJob(src, out, src.name)]
        return [TranslateJob(src, out / f"{src.stem}.{_output_format(fmt)}", src.name)]
    ext = _output_format(fmt)
    sources = _outside(find_images(src), out)
    if not sources:
        raise DataError(f"--input {src}: no images found (looked for .jpg, .png, .webp, ... in subfolders too)")
    rels = [p.relative_to(src) for p in sources]
    targets = [rel.with_suffix(f".{ext}") for rel in rels]
    counts: dict[Path, int] = {}
    for t in targets:
        counts[t] = counts.get(t, 0) + 1
    # a.jpg and a.png in one folder would both become a.png: keep the input suffix in those names
    targets = [rel.with_name(f"{rel.name}.{ext}") if counts[t] > 1 else t for rel, t in zip(rels, targets)]
    return [TranslateJob(p, out / t, rel.as_posix()) for p, rel, t in zip(sources, rels, targets)]


def _encode(image: np.ndarray, fmt: str, quality: int) -> bytes:
    pil = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
    buf = io.BytesIO()
    kwargs: dict[str, Any] = {"quality": quality} if fmt in ("jpg", "webp") else {}
    if fmt == "jpg":
        kwargs["subsampling"] = 0 if quality >= 90 else 2  # keep colour detail at high quality
    pil.save(buf, format=_PIL_FORMAT[fmt], **kwargs)
    return buf.getvalue()


def _side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    if left.shape[:2] != right.shape[:2]:
        pil = Image.fromarray(left[:, :, 0] if left.shape[2] == 1 else left)
        left = np.asarray(pil.resize((right.shape[1], right.shape[0]), Image.BICUBIC))
        left = left[:, :, None] if left.ndim == 2 else left
    if left.shape[2] != right.shape[2]:  # grayscale next to RGB: show both as RGB
        left, right = (np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in (left, right))
    return np.concatenate([left, right], axis=1)


def ordered_map(pool: ThreadPoolExecutor, fn: Callable[[Any], Any], items: Iterable[Any], ahead: int) -> Iterator[Any]:
    """``map(fn, items)`` on ``pool``, in order, with at most ``ahead`` results in flight: the
    workers decode the next images while the caller runs the network on the current batch."""
    pending: deque[Future] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _remove_stale_temps(jobs: list[TranslateJob]) -> None:
    """Delete the ``.NAME.*.tmp`` files a killed run left beside the outputs still to do (one
    listing per folder; assumes no other process is writing the same outputs)."""
    by_folder: dict[Path, set[str]] = {}
    for job in jobs:
        by_folder.setdefault(job.output.parent, set()).add(job.output.name)
    for folder, names in by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            n = entry.name
            if n.startswith(".") and n.endswith(".tmp") and n[1:].rsplit(".", 2)[0] in names:
                try:
                    os.unlink(entry.path)
                except OSError:
                    pass


def translate_jobs(translator: Translator, jobs: list[TranslateJob], *, batch_size: int = 4, workers: int = 4,
                   fmt: str | None = None, quality: int = 95, side_by_side: bool = False,
                   overwrite: bool = False, progress: bool = True,
                   on_progress: Callable[[int], None] | None = None) -> TranslateSummary:
    """Translate ``jobs``: decode in ``workers`` threads, run batches of up to ``batch_size``
    same-sized images, encode and write each output atomically in the background. Existing
    outputs are skipped unless ``overwrite`` (so a killed run resumes); unreadable inputs are
    reported by name and skipped. ``on_progress(n)`` hears of every ``n`` images done (the
    progress bar of a run over several processes, :mod:`cyclegan.inference.sharded`)."""
    from tqdm import tqdm

    summary = TranslateSummary()
    todo = [j for j in jobs if overwrite or not j.output.exists()]
    _remove_stale_temps(todo)
    summary.skipped = len(jobs) - len(todo)
    channels = translator.input_channels
    start = time.perf_counter()

    def decode(job: TranslateJob) -> tuple[TranslateJob, np.ndarray | None, Tensor | str]:
        try:
            image = load_image(job.source, channels)
            return job, image, translator.prepare(image)
        except UnreadableImageError as e:
            return job, None, e.reason
        except Exception as e:  # vanished file, permission denied, ...: report it, keep going
            return job, None, f"{type(e).__name__}: {e}"

    def write(job: TranslateJob, image: np.ndarray, out: np.ndarray) -> None:
        if side_by_side:
            out = _side_by_side(image, out)
        data = _encode(out, _output_format(fmt, job.output), quality)
        atomic_write(job.output, lambda f: f.write(data))

    bar = tqdm(total=len(todo), unit="img", desc="translate", file=sys.stderr, disable=not progress,
               dynamic_ncols=True, mininterval=0.5)
    writes: list[tuple[TranslateJob, Future]] = []

    def advance(n: int) -> None:
        bar.update(n)
        if on_progress is not None:
            on_progress(n)

    def fail(job: TranslateJob, reason: str) -> None:
        summary.failed.append((job.source, reason))
        bar.write(f"skipping {job.source}: {reason}", file=sys.stderr)

    def run(batch: list[tuple[TranslateJob, np.ndarray, Tensor]], writer: ThreadPoolExecutor) -> None:
        try:
            out = translator.forward(torch.stack([t for _, _, t in batch]))
        except Exception as e:  # out of memory, an odd shape, ...: one failed image, not a failed run
            if len(batch) > 1:
                for item in batch:  # find which image it was
                    run([item], writer)
                return
            text = " ".join(str(e).split())
            fail(batch[0][0], f"{type(e).__name__}: {text[:300]}" if text else type(e).__name__)
            advance(1)
            return
        for (job, image, tensor), y in zip(batch, out):
            shown = image if translator.full_res else Translator.to_uint8(tensor)
            writes.append((job, writer.submit(write, job, shown, Translator.to_uint8(y))))
        advance(len(batch))

    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="decode") as reader, \
            ThreadPoolExecutor(2, thread_name_prefix="encode") as writer:
        batch: list[tuple[TranslateJob, np.ndarray, Tensor]] = []
        for job, image, result in ordered_map(reader, decode, todo, ahead=batch_size + 2 * max(1, workers)):
            if image is None:
                fail(job, str(result))
                advance(1)
                continue
            assert isinstance(result, Tensor)
            if batch and (len(batch) >= batch_size or batch[0][2].shape != result.shape):
                run(batch, writer)
                batch = []
            batch.append((job, image, result))
        if batch:
            run(batch, writer)
        for job, future in writes:
            try:
                future.result()
                summary.translated += 1
            except Exception as e:  # a full disk or a read-only folder: name the file
                fail(job, f"could not write {job.output}: {e}")
    bar.close()
    summary.seconds = time.perf_counter() - start
    return summary


def write_index_html(path: str | os.PathLike, jobs: list[TranslateJob], title: str, subtitle: str = "",
                     width: int = 256) -> Path:
    """An HTML page with one row per image (name, input, output), like the original release's
    results page; links are relative, so the page works wherever the folders are opened."""
    path = Path(path)
    base = path.parent.resolve()

    def link(p: Path) -> str:
        return urllib.parse.quote(Path(os.path.relpath(p.resolve(), base)).as_posix())

    rows = []
    for job in jobs:
        if not job.output.exists():
            continue  # failed inputs have no output to show
        src, out = link(job.source), link(job.output)
        rows.append(f'<tr><td>{html.escape(job.label)}</td>'
                    f'<td><a href="{src}"><img src="{src}" width="{width}" loading="lazy"></a></td>'
                    f'<td><a href="{out}"><img src="{out}" width="{width}" loading="lazy"></a></td></tr>')
    page = "\n".join([
        "<!DOCTYPE html>", '<html><head><meta charset="utf-8">', f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif} td{padding:4px;vertical-align:top} img{display:block}</style>",
        "</head><body>", f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(subtitle)}</p>",
        "<table><tr><th>image</th><th>input</th><th>output</th></tr>", *rows, "</table>", "</body></html>", ""])
    return atomic_write(path, lambda f: f.write(page.encode("utf-8")))


def translate_folder(model: "Translator | str | os.PathLike", input: str | os.PathLike, output: str | os.PathLike, *,
                     direction: str | None = None, device: str = "auto", fmt: str | None = None,
                     batch_size: int = 4, workers: int = 4, quality: int = 95, side_by_side: bool = False,
                     overwrite: bool = False, html: bool = True, progress: bool = False,
                     jobs: list[TranslateJob] | None = None, title: str | None = None) -> TranslateSummary:
    """Translate an image folder (searched recursively, mirrored under ``output``) or one file, as
    ``cyclegan translate`` does, and for a folder write ``output``/index.html (unless ``html`` is
    False). ``model``: a :class:`Translator`, or what :meth:`Translator.from_pretrained` takes."""
    translator = model if isinstance(model, Translator) else Translator.from_pretrained(model, direction, device=device)
    jobs = plan_jobs(input, output, fmt) if jobs is None else jobs
    summary = translate_jobs(translator, jobs, batch_size=batch_size, workers=workers, fmt=fmt, quality=quality,
                             side_by_side=side_by_side, overwrite=overwrite, progress=progress)
    if Path(input).is_dir() and html:
        gen = translator.generator
        summary.index = write_index_html(Path(output) / "index.html", jobs,
                                         title or f"{gen.name} ({gen.direction or 'translation'})", gen.describe())
    return summary
