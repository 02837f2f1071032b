"""Video translation (`cyclegan translate clip.mp4`): real clips written with PyAV (H.264 video,
AAC audio), translated by the real command, read back and compared with the generator's own
outputs. Codec loss is allowed for by comparing luma (chroma is subsampled) at --crf 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cyclegan.inference.loading import load_generator
from cyclegan.inference.translator import Translator
import cyclegan
from cyclegan.inference.video import frames_folder
from tiny_models import ROOT, cli, one_thread, tiny_export  # noqa: F401

av = pytest.importorskip("av")

FPS = 8
RATE = 16000


def write_clip(path: Path, frames: int = 12, width: int = 48, height: int = 40, fps: int = FPS,
               audio: bool = True) -> Path:
    """An H.264 clip whose frames all differ (a moving gradient with a per-frame tint), with a
    440 Hz AAC tone as long as the video when ``audio``."""
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        a = c.add_stream("aac", rate=RATE) if audio else None
        if a is not None:
            a.layout = "mono"
        yy, xx = np.mgrid[0:height, 0:width]
        for i in range(frames):
            img = np.stack([(xx * 5 + i * 20) % 256, (yy * 6 + i * 7) % 256, np.full_like(xx, i * 20 % 256)], -1)
            frame = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
            frame.pts = i
            c.mux(v.encode(frame))
        c.mux(v.encode(None))
        if a is not None:
            t = np.arange(RATE * frames // fps) / RATE
            tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            for k in range(0, tone.shape[1], 1024):
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, k:k + 1024]), format="fltp", layout="mono")
                af.sample_rate, af.pts = RATE, k
                c.mux(a.encode(af))
            c.mux(a.encode(None))
    return path


def frames_of(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(audio=0) if p.size]


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def expected_outputs(model: Path, clip: Path) -> list[np.ndarray]:
    """What the generator makes of each frame at full resolution, without any codec."""
    translator = Translator(load_generator(model), device="cpu", full_res=True)
    return [translator.translate(f) for f in frames_of(clip)]


@pytest.fixture
def setup(tmp_path):
    tiny_export(tmp_path / "runs" / "tiny")
    return tmp_path, write_clip(tmp_path / "clip.mp4")


def test_video_keeps_frame_count_size_rate_and_audio(setup):
    tmp, clip = setup
    r = cli("translate", "clip.mp4", "--model", "runs/tiny", "--output", "out", "--no-progress", cwd=tmp)
    assert r.returncode == 0, r.stderr
    out = tmp / "out" / "clip.mp4"  # a folder --output gets the clip's name
    assert "12 frames (12 translated)" in r.stderr
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert (v.codec_context.width, v.codec_context.height) == (48, 40)  # resized back from 32 x 32
        assert v.average_rate == FPS and c.streams.audio[0].codec_context.name == "aac"
    got = frames_of(out)
    assert len(got) == 12 and got[0].shape == (40, 48, 3)
    assert np.abs(got[5].astype(int) - frames_of(clip)[5]).mean() > 20  # translated, not copied
    assert audio_packets(out) == audio_packets(clip)  # copied, not re-encoded
    assert not frames_folder(out).exists()  # the frame cache is gone once the video is written


def test_video_frames_are_the_generators_outputs(setup):
    tmp, clip = setup
    r = cli("translate", "--input", "clip.mp4", "--model", "runs/tiny", "--output", "full.mp4", "--full-res",
            "--crf", "0", "--no-progress", cwd=tmp)
    assert r.returncode == 0, r.stderr
    want = [luma(f) for f in expected_outputs(tmp / "runs" / "tiny", clip)]
    got = [luma(f) for f in frames_of(tmp / "full.mp4")]
    errors = np.array([[np.abs(g - w).mean() for w in want] for g in got])
    assert np.diag(errors).max() < 2.5, np.diag(errors)   # luma through yuv420p at crf 0
    assert (errors.argmin(axis=1) == np.arange(len(got))).all()  # every frame in its place


def test_smoothing_blends_each_frame_with_the_previous_output(setup):
    tmp, clip = setup
    translator = Translator(load_generator(tmp / "runs" / "tiny"), device="cpu", full_res=True)
    raw = [f.astype(np.float64) for f in expected_outputs(tmp / "runs" / "tiny", clip)]
    summary = cyclegan.translate_video(translator, clip, tmp / "smooth.mp4", smoothing=0.6, crf=0, progress=False)
    assert summary.frames == 12
    want, blended = [], raw[0]
    for frame in raw:
        blended = 0.4 * frame + 0.6 * blended
        want.append(luma(np.rint(blended)))
    got = [luma(f) for f in frames_of(tmp / "smooth.mp4")]
    assert max(np.abs(g - w).mean() for g, w in zip(got, want)) < 2.5
    flicker = [np.mean([np.abs(a - b).mean() for a, b in zip(x, x[1:])]) for x in (got, [luma(f) for f in raw])]
    assert flicker[0] < 0.6 * flicker[1]  # the point of smoothing: smaller frame-to-frame changes


def test_killed_video_run_resumes_from_its_translated_frames(tmp_path):
    tiny_export(tmp_path / "runs" / "tiny")
    clip = write_clip(tmp_path / "long.mp4", frames=160, width=160, height=128, audio=False)
    out, cache = tmp_path / "long_out.mp4", frames_folder(tmp_path / "long_out.mp4")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "cyclegan", "translate", str(clip), "-m", "runs/tiny", "-o", str(out),
            "--full-res", "--batch-size", "1", "--no-progress"]
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if cache.is_dir() and len(list(cache.glob("*.png"))) >= 10:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done = len(list(cache.glob("*.png")))
    assert not out.exists() and 10 <= done < 160
    r = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    reused = int(r.stderr.split(" reused from an interrupted run")[0].rsplit(", ", 1)[1])
    assert reused >= done - 2  # a frame being written at the kill is redone (its temp file removed)
    assert len(frames_of(out)) == 160 and not cache.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp") or ".partial" in p.name]


def test_bad_video_inputs_get_one_line_messages(setup):
    tmp, clip = setup
    (tmp / "fake.mp4").write_bytes(b"not a video at all")
    r = cli("translate", "fake.mp4", "-m", "runs/tiny", "-o", "x.mp4", cwd=tmp)
    assert r.returncode == 2 and "fake.mp4 cannot be read as a video" in r.stderr.strip().splitlines()[-1]
    r = cli("translate", "clip.mp4", "-m", "runs/tiny", "-o", "x.mp4", "--smooth", "1", cwd=tmp)
    assert r.returncode == 2 and "--smooth: must be at least 0 and below 1" in r.stderr
    r = cli("translate", "clip.mp4", "-m", "runs/tiny", "-o", "clip.mp4", cwd=tmp)
    assert r.returncode == 2 and "is the input video itself" in r.stderr
    (tmp / "taken.mp4").write_bytes(b"keep me")
    r = cli("translate", "clip.mp4", "-m", "runs/tiny", "-o", "taken.mp4", cwd=tmp)
    assert r.returncode == 0 and "taken.mp4 exists; --overwrite redoes it" in r.stderr
    assert (tmp / "taken.mp4").read_bytes() == b"keep me"
