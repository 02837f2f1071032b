"""The training progress bar as a person watches it (a real `cyclegan train` process): its losses
move as training does (the mean since the last refresh, every BAR_EVERY iterations), they are
there from the first step after --resume, and log lines print above the bar, not glued onto it."""

from __future__ import annotations

import re

from cyclegan.training.loop import BAR_EVERY
from test_train import TINY_MODEL, make_domain
from tiny_models import cli

POSTFIX = re.compile(r"\| (\d+)/(\d+) \[[^\]]*?, (G_A=[^\]]+)\]")


def _segments(stderr: str) -> list[str]:
    """What a terminal would show line by line: tqdm redraws with carriage returns."""
    return [s for s in re.split(r"[\r\n]", stderr) if s.strip()]


def test_losses_move_after_resume_too_and_log_lines_stand_apart(tmp_path):
    make_domain(tmp_path / "data" / "trainA", 5, 0)
    make_domain(tmp_path / "data" / "trainB", 4, 1)
    common = ("train", "--dataroot", "data", "--size", "32", "--num-workers", "0", "--preview-every", "0",
              "--name", "bar", *TINY_MODEL)
    r = cli(*common, "--max-iters", "30", "--save-every", str(BAR_EVERY), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    segments = _segments(r.stderr)
    # every log line starts a line of its own
    logs = [s for s in segments if "INFO cyclegan" in s]
    assert any("checkpoint:" in s for s in logs) and all(s.startswith("INFO cyclegan") for s in logs), logs
    # the bar is redrawn under each checkpoint line, showing the losses of the last iterations: they change
    shown = {(int(m.group(1)), m.group(3)) for s in segments for m in [POSTFIX.search(s)] if m}
    assert len({losses for _, losses in shown}) >= 3, shown
    assert all(float(v) == float(v) for _, losses in shown for v in re.findall(r"=(-?[\d.]+)", losses))

    r = cli(*common, "--max-iters", "34", "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    after = [m for s in _segments(r.stderr) for m in [POSTFIX.search(s)] if m]
    assert after and after[-1].group(1) == "34" and "D_B=" in after[-1].group(3), r.stderr[-2000:]
