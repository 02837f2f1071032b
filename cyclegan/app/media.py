"""The app's Batch and Video tabs, without the UI.

* :func:`translate_batch`: many uploads through one model: a gallery of (input, translation)
  pairs for the page and one zip of the translations at their true size. Files that cannot be
  read are skipped with a note naming them; the rest go on.
* :func:`translate_video_upload`: an uploaded clip frame by frame
  (:func:`cyclegan.inference.video.translate_video`: frame size, frame rate and audio kept, optional
  temporal smoothing) into an H.264 MP4 the browser plays.
"""

from __future__ import annotations

import os
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cyclegan.app.actions import AppBackend, slug
from cyclegan.app.settings import UserError
from cyclegan.app.uploads import colour_note, enlarge, megapixels, read_upload, to_image
from cyclegan.data.images import DataError
from cyclegan.inference.translator import Translator
from cyclegan.inference.video import VideoInfo, probe, translate_video

__all__ = ["BatchResult", "VideoResult", "translate_batch", "translate_video_upload"]

Progress = Callable[[int, "int | None"], None]


def _output_name(path: str | os.PathLike, short_name: str, direction: str | None, suffix: str) -> str:
    return f"{slug(Path(str(path)).stem)}_{slug(short_name)}{f'_{direction}' if direction else ''}{suffix}"


@dataclass
class BatchResult:
    gallery: list[tuple[Path, str]]       # (image file, caption): input, translation, input, ...
    archive: Path | None                  # zip of the translations at their true size
    info: str
    notes: list[str] = field(default_factory=list)


def translate_batch(backend: AppBackend, paths: Sequence[Any], choice_id: Any, *, full_res: bool = False,
                    on_progress: Progress | None = None) -> BatchResult:
    """Translate every uploaded file in ``paths`` with the catalog's choice ``choice_id``."""
    choice = backend.catalog().find(choice_id)
    paths = [str(p) for p in (paths or []) if p]
    if not paths:
        raise UserError("No images yet: drop or choose several image files first.")
    limit = backend.settings.max_batch
    if len(paths) > limit:
        raise UserError(f"{len(paths)} images at once is more than this app takes ({limit}, set with --max-batch); "
                        "translate them in parts, or use `cyclegan translate FOLDER` for a whole folder.")
    gen = backend.generator(choice.entry, choice.direction)
    translator = Translator(gen, device=backend.device, full_res=full_res)
    folder = backend.output_folder()
    gallery: list[tuple[Path, str]] = []
    notes: list[str] = []
    written: list[Path] = []
    gray: str | None = None  # said once for the batch
    start = time.perf_counter()
    for i, path in enumerate(paths):
        name = Path(path).name
        try:
            image, upload_notes = read_upload(path, gen.spec.input_nc,
                                              max_input_pixels=backend.settings.max_input_pixels,
                                              max_pixels=backend.settings.max_pixels if full_res else None)
            out = translator.translate(image)
        except UserError as e:
            notes.append(str(e))
        except (RuntimeError, ValueError) as e:  # an image too small for the network, out of memory
            notes.append(f"{name} could not be translated: {str(e).splitlines()[0]}")
        else:
            notes += upload_notes
            gray = gray or colour_note(path, gen.spec.input_nc)
            target = folder / _unique(folder, _output_name(path, choice.entry.short_name, choice.direction, ".png"))
            to_image(out).save(target, format="PNG")
            written.append(target)
            shown_in = folder / "shown" / f"{len(written):04d}_input.png"
            shown_out = folder / "shown" / f"{len(written):04d}_output.png"
            shown_in.parent.mkdir(exist_ok=True)
            enlarge(to_image(image), 256).save(shown_in, format="PNG")
            enlarge(to_image(out), 256).save(shown_out, format="PNG")
            gallery += [(shown_in, name), (shown_out, "translated")]  # the zip has the full names
        if on_progress is not None:
            on_progress(i + 1, len(paths))
    if gray:
        notes.append(gray)
    archive = None
    if written:
        archive = folder / f"translated_{slug(choice.entry.short_name)}_{len(written)}.zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:  # PNGs are compressed already
            for p in written:
                zf.write(p, p.name)
    seconds = time.perf_counter() - start
    how = "full resolution" if full_res else f"training size ({translator.size}x{translator.size})"
    info = (f"**{choice.label}**: {len(written)} of {len(paths)} image(s) translated at {how} in {seconds:.1f} s"
            + (f"; {len(paths) - len(written)} skipped (see the notes)" if len(written) < len(paths) else "")
            + (". The zip holds the translations at their true size." if written else "."))
    return BatchResult(gallery, archive, info, notes)


def _unique(folder: Path, name: str) -> str:
    """``name``, or ``stem_2.png``, ... when two uploads share a name."""
    stem, suffix = os.path.splitext(name)
    candidate, n = name, 1
    while (folder / candidate).exists():
        n += 1
        candidate = f"{stem}_{n}{suffix}"
    return candidate


@dataclass
class VideoResult:
    video: Path
    info: str
    notes: list[str] = field(default_factory=list)


def _check_video(path: Path, backend: AppBackend, full_res: bool) -> VideoInfo:
    try:
        info = probe(path)
    except DataError:
        raise UserError(f"{path.name} is not a video this app can read; upload an MP4, MOV, MKV, WebM or AVI "
                        "file.") from None
    s = backend.settings
    seconds = (info.frames or 0) / float(info.fps)
    if info.frames and info.frames > s.max_video_frames:
        raise UserError(f"{path.name} has {info.frames} frames ({seconds:.0f} s); this app translates up to "
                        f"{s.max_video_frames} frames (--max-video-frames). Cut it, or use "
                        "`cyclegan translate clip.mp4`.")
    if info.width * info.height > s.max_input_pixels:  # as for images: decoding one frame costs this much
        raise UserError(f"{path.name} has frames of {info.width}x{info.height} ({megapixels(info.width * info.height)}); "
                        f"this app accepts images and video frames up to {megapixels(s.max_input_pixels)}. Please "
                        "downscale it and try again.")
    if full_res and info.width * info.height > s.max_pixels:
        raise UserError(f"{path.name} is {info.width}x{info.height}; full-resolution video is limited to "
                        f"{s.max_pixels / 1e6:.1f} MP per frame (--max-pixels). Choose the training size.")
    return info


def translate_video_upload(backend: AppBackend, path: Any, choice_id: Any, *, full_res: bool = False,
                           smoothing: float = 0.0, on_progress: Progress | None = None) -> VideoResult:
    """Translate the uploaded clip at ``path`` frame by frame into an MP4."""
    choice = backend.catalog().find(choice_id)
    if not path:
        raise UserError("No video yet: upload a clip first.")
    path = Path(str(path))
    if not path.is_file():
        raise UserError("The uploaded file is gone (uploads expire after a while); please upload it again.")
    try:
        smoothing = float(smoothing or 0.0)
    except (TypeError, ValueError):
        raise UserError("Smoothing must be a number from 0 to 0.95.") from None
    if not 0.0 <= smoothing <= 0.95:
        raise UserError(f"Smoothing must be from 0 to 0.95; got {smoothing}.")
    info = _check_video(path, backend, full_res)
    gen = backend.generator(choice.entry, choice.direction)
    translator = Translator(gen, device=backend.device, full_res=full_res)
    output = backend.output_folder() / _output_name(path, choice.entry.short_name, choice.direction, ".mp4")
    try:
        summary = translate_video(translator, path, output, smoothing=smoothing, progress=False,
                                  on_progress=on_progress, max_frames=backend.settings.max_video_frames,
                                  max_pixels=min(backend.settings.max_input_pixels, backend.settings.max_pixels)
                                  if full_res else backend.settings.max_input_pixels)
    except DataError as e:
        raise UserError(str(e).replace("--input ", "").replace("--output ", "")) from None
    how = "full resolution" if full_res else f"training size ({translator.size}x{translator.size}, resized back)"
    smooth = f", temporal smoothing {smoothing:.2f}" if smoothing else ""
    audio = f", audio ({info.audio}) kept" if info.audio else ""
    text = (f"**{choice.label}**: {summary.frames} frames of {info.width}x{info.height} at {float(info.fps):.3g} "
            f"frames/s, translated at {how}{smooth}{audio}, in {summary.seconds:.1f} s.")
    return VideoResult(output, text)
