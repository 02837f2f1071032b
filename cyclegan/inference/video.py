"""Video translation: every frame of a clip through a :class:`~cyclegan.inference.translator.Translator`,
with the clip's frame size, frame rate and audio kept.

Decoding and encoding go through PyAV (FFmpeg's libraries, no ``ffmpeg`` binary needed). The
work happens in two passes so that a killed run can resume, as folder translation does:

1. every decoded frame is translated and written, atomically, as a lossless PNG into a hidden
   folder beside the output (``.OUTPUT.frames/000000.png``, ...); frames already there are
   reused, so a second run only translates what is missing;
2. the PNGs are encoded into the output (H.264, or VP9 for ``.webm``) at the source's average
   frame rate, with the source's audio packets copied unchanged, and the folder is deleted.

The frame cache costs disk: one PNG per frame at the output size (about 100 KB at 256 x 256,
several MB at 1080p) until the video is written.

Temporal smoothing (``smoothing = a``, 0 <= a < 1) blends each output frame with the previous
smoothed one, ``y_t = (1 - a) g_t + a y_{t-1}`` (``g_t`` the generator's output): per-frame
translation flickers, because the generator sees each frame alone, and the blend damps that
flicker, at the price of ghosting behind anything that moves (a trail lasting about
``1 / (1 - a)`` frames) and a smear across scene cuts. It is applied while encoding, to the
cached raw outputs, so a resumed run gives the same video as an unbroken one.

Nothing here imports training code: ``cyclegan translate clip.mp4`` (cyclegan.cli.translate) and the
app's Video tab both call :func:`translate_video`.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cyclegan.core.checkpoint import atomic_write
from cyclegan.data.images import DataError
from cyclegan.inference.translator import Translator

__all__ = ["VIDEO_EXTENSIONS", "VideoInfo", "VideoSummary", "frames_folder", "is_video", "probe", "translate_video"]

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")
#: output suffix -> (video encoder, its options, audio encoder when the source audio cannot be copied)
_ENCODERS = {".webm": ("libvpx-vp9", {"b:v": "0", "row-mt": "1"}, "libopus")}
_DEFAULT_ENCODER = ("libx264", {"preset": "medium"}, "aac")
DEFAULT_CRF = 18  # x264's "visually lossless" end of the scale; VP9 takes the same number

#: ``on_progress(frames done, total frames or None)``, e.g. the app's progress bar
Progress = Callable[[int, "int | None"], None]


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: Fraction            # average frame rate
    frames: int | None       # as the container states it (None when it does not)
    audio: str | None        # codec of the first audio stream


def probe(path: str | os.PathLike) -> VideoInfo:
    """What a video file holds; a :class:`DataError` naming the file when it is not a video."""
    import av

    path = Path(path)
    if not path.is_file():
        raise DataError(f"--input {path}: no such file")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"--input {path} has no video stream")
            v = container.streams.video[0]
            fps = v.average_rate or v.guessed_rate
            if not fps:
                raise DataError(f"--input {path}: the video stream states no frame rate")
            audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
            return VideoInfo(v.codec_context.width, v.codec_context.height, Fraction(fps), v.frames or None, audio)
    except av.FFmpegError as e:
        raise DataError(f"--input {path} cannot be read as a video ({e})") from None


@dataclass
class VideoSummary:
    output: Path
    frames: int = 0          # frames in the output
    reused: int = 0          # translated by an earlier, interrupted run
    seconds: float = 0.0
    skipped: bool = False    # the output existed already

    def describe(self) -> str:
        if self.skipped:
            return f"{self.output} exists; --overwrite redoes it"
        translated = self.frames - self.reused
        rate = translated / self.seconds if self.seconds > 0 else 0.0
        again = f", {self.reused} reused from an interrupted run" if self.reused else ""
        return (f"{self.output}: {self.frames} frames ({translated} translated{again}) "
                f"in {self.seconds:.1f} s ({rate:.2f} frames/s)")


def frames_folder(output: Path) -> Path:
    """Where the translated frames of ``output`` wait until the video is encoded."""
    return output.with_name(f".{output.name}.frames")


def _frame_path(folder: Path, index: int) -> Path:
    return folder / f"{index:06d}.png"


_MANIFEST = "cache.json"


def _file_id(path: Path) -> list:
    st = path.stat()
    return [os.path.realpath(path), st.st_size, st.st_mtime_ns]


def _cache_key(translator: Translator, source: Path) -> dict:
    """What the cached frames depend on: the input clip, the model file and direction, and how
    it translates. A frame folder whose manifest says anything else is not this run's."""
    gen = translator.generator
    model = _file_id(gen.source) if Path(gen.source).is_file() else [str(gen.source)]
    return {"format": 1, "source": _file_id(source), "model": model, "direction": gen.direction,
            "size": translator.size, "full_res": translator.full_res, "channels": translator.input_channels}


def _own_cache(folder: Path, key: dict) -> None:
    """Make ``folder`` this run's frame cache: kept when its manifest names this input, model and
    settings (a killed run of the same job: its frames are reused), else emptied first (another
    model's or another clip's frames are never mixed in), then the manifest is written."""
    import json

    if folder.exists() and not folder.is_dir():
        raise DataError(f"--output: {folder} (where the translated frames wait) exists and is not a folder; "
                        "move it away")
    manifest = folder / _MANIFEST
    try:
        same = json.loads(manifest.read_text()) == key
    except (OSError, ValueError, RecursionError):
        same = False
    if not same and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not same:
        atomic_write(manifest, lambda f: f.write(json.dumps(key).encode()))


def _check_paths(source: Path, output: Path) -> None:
    if output.is_dir():
        raise DataError(f"--output {output} is a folder; a video needs a file name ({', '.join(VIDEO_EXTENSIONS)})")
    if not is_video(output):
        raise DataError(f"--output {output}: a video needs a video file name "
                        f"({', '.join(VIDEO_EXTENSIONS)})")
    if output.resolve() == source.resolve():
        raise DataError(f"--output {output} is the input video itself; choose another name")


def translate_video(translator: Translator, source: str | os.PathLike, output: str | os.PathLike, *,
                    smoothing: float = 0.0, crf: int = DEFAULT_CRF, batch_size: int = 4, overwrite: bool = False,
                    progress: bool = True, on_progress: Progress | None = None,
                    max_frames: int | None = None, max_pixels: int | None = None) -> VideoSummary:
    """Translate every frame of ``source`` into the video ``output`` (see the module docstring).
    The output keeps the source's frame size (frames translated at the training size are resized
    back), frame rate and audio. An existing output is left alone unless ``overwrite``; a clip
    with more than ``max_frames`` frames is refused (a DataError) when the count is reached, a
    frame over ``max_pixels`` (default: the decompression-bomb limit images have, PIL's) before it
    is converted."""
    source, output = Path(source), Path(output)
    _check_paths(source, output)
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"--smooth {smoothing}: must be at least 0 and below 1")
    if not 0 <= crf <= 51:
        raise ValueError(f"--crf {crf}: must be between 0 and 51")
    info = probe(source)
    if max_pixels is None and Image.MAX_IMAGE_PIXELS:  # the limit every decoded image has (PIL's bomb guard)
        max_pixels = 2 * int(Image.MAX_IMAGE_PIXELS)
    summary = VideoSummary(output)
    if output.exists() and not overwrite:
        summary.skipped = True
        return summary
    _check_encoders(output, info)
    folder = frames_folder(output)
    if overwrite:
        shutil.rmtree(folder, ignore_errors=True)
    _own_cache(folder, _cache_key(translator, source))
    start = time.perf_counter()
    summary.frames, summary.reused, times = _translate_frames(translator, source, info, folder, batch_size,
                                                              progress, on_progress, max_frames, max_pixels)
    if summary.frames == 0:
        raise DataError(f"--input {source}: no frame could be decoded")
    _encode(folder, summary.frames, info, source, output, smoothing, crf, times)
    shutil.rmtree(folder, ignore_errors=True)
    summary.seconds = time.perf_counter() - start
    return summary


def _decoded_frames(source: Path, channels: int, size: tuple[int, int],
                    max_pixels: int | None = None) -> Iterator[tuple[float | None, np.ndarray]]:
    """The video's frames in order, (time in seconds or None, uint8 HxWxC (C = ``channels``) of
    ``size`` (W, H)): a frame
    whose size changes mid-stream is scaled to the stream's (one output has one frame size), as
    ffmpeg does. A frame over ``max_pixels`` or one that cannot be decoded is a DataError naming
    the file, checked before the frame is converted."""
    import av

    index = 0
    try:
        with av.open(str(source)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fmt = "gray" if channels == 1 else "rgb24"
            for index, frame in enumerate(container.decode(stream)):
                if max_pixels is not None and frame.width * frame.height > max_pixels:
                    raise DataError(f"--input {source}: frame {index} is {frame.width}x{frame.height}, over the "
                                    f"limit of {max_pixels / 1e6:.1f} MP a frame")
                if (frame.width, frame.height) != size:
                    image = frame.reformat(width=size[0], height=size[1], format=fmt).to_ndarray()
                else:
                    image = frame.to_ndarray(format=fmt)
                yield (float(frame.time) if frame.time is not None else None,
                       image[:, :, None] if image.ndim == 2 else image)
    except av.FFmpegError as e:
        raise DataError(f"--input {source}: cannot decode the video after frame {index} ({e}); the file is "
                        "damaged") from None


def _translate_frames(translator: Translator, source: Path, info: VideoInfo, folder: Path, batch_size: int,
                      progress: bool, on_progress: Progress | None, max_frames: int | None,
                      max_pixels: int | None = None) -> tuple[int, int, list[float | None]]:
    """Pass 1: translate each frame not in ``folder`` yet. Returns (frames, frames reused, the
    frames' times: every frame is decoded, reused or not, so a resumed run knows them all)."""
    from tqdm import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    total, reused, done = info.frames, 0, 0
    bar = tqdm(total=total, unit="frame", desc="translate", file=sys.stderr, disable=not progress,
               dynamic_ncols=True, mininterval=0.5)
    size = (info.width, info.height)

    def write(index: int, out: np.ndarray) -> None:
        image = Image.fromarray(out[:, :, 0] if out.shape[2] == 1 else out)
        if image.size != size:  # translated at the training size: back to the frame's size
            image = image.resize(size, Image.BICUBIC)
        atomic_write(_frame_path(folder, index), lambda f: image.save(f, format="PNG", compress_level=1))

    def tick(n: int) -> None:
        nonlocal done
        done += n
        bar.update(n)
        if on_progress is not None:
            on_progress(done, total)

    with ThreadPoolExecutor(2, thread_name_prefix="png") as writer:
        writes: list[Future] = []
        batch: list[tuple[int, torch.Tensor]] = []

        def run() -> None:
            out = translator.forward(torch.stack([t for _, t in batch]))
            writes.extend(writer.submit(write, i, Translator.to_uint8(y)) for (i, _), y in zip(batch, out))
            tick(len(batch))
            batch.clear()

        index = -1
        times: list[float | None] = []
        for index, (when, image) in enumerate(_decoded_frames(source, translator.input_channels, size, max_pixels)):
            times.append(when)
            if max_frames is not None and index >= max_frames:
                raise DataError(f"--input {source} has more than {max_frames} frames")
            if _frame_path(folder, index).is_file():
                reused += 1
                tick(1)
                continue
            batch.append((index, translator.prepare(image)))
            if len(batch) >= batch_size:
                run()
        if batch:
            run()
        for w in writes:
            w.result()  # a full disk: raise, with the frames written so far kept for the next run
    bar.close()
    return index + 1, reused, times


def _even(image: np.ndarray) -> np.ndarray:
    """yuv420p needs an even width and height: repeat the last row/column where they are odd."""
    h, w = image.shape[:2]
    return np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge") if h % 2 or w % 2 else image


def _frame_times(times: list[float | None], frames: int, fps: Fraction) -> list[float] | None:
    """The frames' times from the first, when the clip's frame rate varies (a phone's clip, a
    screen recording): then each frame keeps its time, so the output lasts as long as the input.
    None for a constant rate (or unknown times): frame i at i / fps, as before."""
    if len(times) != frames or any(t is None for t in times):
        return None
    t0 = times[0]
    rel = [t - t0 for t in times]  # type: ignore[operator]
    if any(b <= a for a, b in zip(rel, rel[1:])):
        return None
    if all(abs(t - i / fps) < 0.5 / fps for i, t in enumerate(rel)):
        return None
    return rel


def _encode(folder: Path, frames: int, info: VideoInfo, source: Path, output: Path, smoothing: float,
            crf: int, times: list[float | None] | None = None) -> None:
    """Pass 2: the cached frames, smoothed, into ``output`` with the source's audio; written to a
    temporary file beside it and renamed, so an interrupted encode leaves no half video."""
    import av

    codec, options, audio_codec = _ENCODERS.get(output.suffix.lower(), _DEFAULT_ENCODER)
    tmp = output.with_name(f".{output.stem}.partial{output.suffix}")
    try:
        with av.open(str(source)) as src, av.open(str(tmp), "w") as dst:
            video = dst.add_stream(codec, rate=info.fps)
            video.width, video.height = info.width + info.width % 2, info.height + info.height % 2
            video.pix_fmt = "yuv420p"
            video.options = {**options, "crf": str(crf)}
            vfr = _frame_times(times or [], frames, info.fps)
            if vfr is not None:  # millisecond timestamps: each frame at its own time
                video.time_base = video.codec_context.time_base = Fraction(1, 1000)
            audio_in = src.streams.audio[0] if src.streams.audio else None
            audio_out, reencode = _audio_stream(dst, audio_in, audio_codec, output.suffix) if audio_in \
                else (None, False)
            audio = _audio_packets(src, audio_in, audio_out, reencode) if audio_in else iter(())
            pending = next(audio, None)
            smoothed: np.ndarray | None = None
            for i in range(frames):
                with Image.open(_frame_path(folder, i)) as img:
                    frame = np.asarray(img.convert("RGB"), dtype=np.float32)
                if smoothed is None or not smoothing:
                    smoothed = frame
                else:  # y_t = (1 - a) g_t + a y_{t-1}
                    smoothed = (1 - smoothing) * frame + smoothing * smoothed
                rgb = _even(np.clip(np.rint(smoothed), 0, 255).astype(np.uint8))
                out = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                if vfr is not None:
                    out.pts, out.time_base = round(vfr[i] * 1000), Fraction(1, 1000)
                else:
                    out.pts = i
                dst.mux(video.encode(out))
                # interleave: the audio up to the next frame's time
                until = vfr[i + 1] if vfr is not None and i + 1 < frames else (i + 1) / info.fps
                while pending is not None and pending[0] <= until:
                    dst.mux(pending[1])
                    pending = next(audio, None)
            dst.mux(video.encode(None))
            while pending is not None:
                dst.mux(pending[1])
                pending = next(audio, None)
            if reencode and audio_out is not None:
                dst.mux(audio_out.encode(None))
        os.replace(tmp, output)
    except av.FFmpegError as e:
        raise DataError(f"--output {output}: cannot encode the video ({e})") from None
    finally:
        tmp.unlink(missing_ok=True)


#: audio codecs each output container takes as they are (copied, no loss); anything else is
#: re-encoded (ffmpeg's muxers list more than the players and the muxers themselves accept:
#: AAC "fits" WebM and PCM "fits" MP4 until the header is written, after every frame is done)
_COPYABLE_AUDIO = {".webm": {"opus", "vorbis"}, ".mp4": {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"},
                   ".m4v": {"aac", "mp3", "ac3", "eac3", "alac"}, ".avi": {"mp3", "ac3", "pcm_s16le", "aac"},
                   ".mov": {"aac", "mp3", "ac3", "alac", "pcm_s16le", "pcm_s24le", "pcm_f32le"}}
_OPUS_RATES = (48000, 24000, 16000, 12000, 8000)


def _copies_audio(suffix: str, codec: str) -> bool:
    allowed = _COPYABLE_AUDIO.get(suffix.lower())
    return allowed is None or codec in allowed  # .mkv takes any codec


def _check_encoders(output: Path, info: VideoInfo) -> None:
    """Fail before any frame is translated when an encoder the output needs is missing."""
    import av

    codec, _, audio_codec = _ENCODERS.get(output.suffix.lower(), _DEFAULT_ENCODER)
    needed = [codec] + ([audio_codec] if info.audio and not _copies_audio(output.suffix, info.audio) else [])
    for name in needed:
        try:
            av.codec.Codec(name, "w")
        except Exception:
            raise DataError(f"--output {output}: this FFmpeg build has no {name} encoder, which "
                            f"{output.suffix} output needs; choose another suffix (.mp4, .mkv)") from None


def _audio_stream(dst, audio_in, fallback_codec: str, suffix: str):
    """The output's audio stream: a copy of the source's (no re-encoding, so no loss) when the
    output container takes that codec, else ``fallback_codec`` at the same layout and rate (48 kHz
    for Opus where the source's rate is one Opus does not take)."""
    if _copies_audio(suffix, audio_in.codec_context.name):
        return dst.add_stream_from_template(audio_in), False
    rate = audio_in.codec_context.sample_rate
    if fallback_codec == "libopus" and rate not in _OPUS_RATES:
        rate = 48000
    stream = dst.add_stream(fallback_codec, rate=rate)
    layout = audio_in.codec_context.layout
    # a layout of "1 channels" (no channel order, as PCM in Matroska states it) is refused by the
    # encoders: the standard layout of that many channels instead
    channels = len(layout.channels)
    stream.layout = layout if layout.name in ("mono", "stereo") or channels > 2 else ("mono", "stereo")[channels - 1]
    formats = stream.codec_context.codec.audio_formats
    if formats:  # the encoder's own sample format (AAC: fltp); frames are converted to it on encode
        stream.format = formats[0].name
    return stream, True


def _audio_packets(src, audio_in, audio_out, reencode: bool) -> Iterator[tuple[float, object]]:
    """(time in seconds, packet or packets) of the source's audio, made ready for ``audio_out``."""
    if not reencode:
        for packet in src.demux(audio_in):
            if packet.dts is None:  # the demuxer's empty flush packet
                continue
            packet.stream = audio_out
            yield float(packet.pts * packet.time_base) if packet.pts is not None else 0.0, packet
        return
    for frame in src.decode(audio_in):
        frame.pts = None  # let the encoder count samples
        t = float(frame.time or 0.0)
        yield t, audio_out.encode(frame)

