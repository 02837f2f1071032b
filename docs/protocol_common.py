"""What docs/quality_protocol.py and docs/cut_protocol.py share: the run settings of docs/quality.md
(32 px grayscale, ResNet-6 at the bundled demo model's width, batch 1), one training run as the
real ``cyclegan train`` command with its wall time recorded, and the scripts' command line."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAVE_EVERY = 100


def run_flags(data: str, runs: str, name: str, seed: int, iters: int) -> list[str]:
    """The ``cyclegan train`` flags every protocol run has, checkpoints every SAVE_EVERY iterations."""
    return ["--dataroot", data, "--size", "32", "--channels", "1", "--netG", "resnet_6blocks", "--ngf", "16",
            "--ndf", "32", "--precision", "fp32", "--no-compile", "--batch-size", "1", "--max-iters", str(iters), "--seed", str(seed), "--name", name,
            "--runs-dir", runs, "--num-workers", "0", "--save-every", str(SAVE_EVERY),
            "--keep", str(iters // SAVE_EVERY + 1), "--preview-every", "1000", "--log-every", "100"]


def train_run(runs: str, name: str, train_args: list[str], iters: int, log_mode: str = "w") -> str:
    """Run ``cyclegan train TRAIN_ARGS`` as RUNS/NAME (resumed when a checkpoint is there), its
    output in RUNS/NAME/train.log (opened with ``log_mode``), and record its wall time in
    wall.json; a run with an export and wall.json is done already. Returns one line for the log."""
    run = Path(runs) / name
    if (run / "generators.safetensors").is_file() and (run / "wall.json").is_file():
        return f"{name}: done already"
    cmd = [sys.executable, "-m", "cyclegan", "train", *train_args]
    if (run / "checkpoints" / "latest.pt").is_file():
        cmd.append("--resume")  # an interrupted protocol continues; its wall time is then not comparable
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    run.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(run / "train.log", log_mode) as log:
        rc = subprocess.call(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    wall = time.time() - t0
    if rc:
        return f"{name}: FAILED (exit {rc}, see {run / 'train.log'})"
    # The loop's own time (the trainer logs it), without the command's start-up.
    loop = re.findall(r"finished at iteration \d+ \(epoch \d+\) in ([0-9.]+) s", (run / "train.log").read_text())
    (run / "wall.json").write_text(json.dumps({"seconds": float(loop[-1]) if loop else wall, "command_seconds": wall,
                                               "iterations": iters, "resumed": "--resume" in cmd,
                                               "command": " ".join(["cyclegan", *cmd[3:]])}))
    return f"{name}: {wall / 60:.1f} min"


def parser(doc: str, runs: str, iters: int, json_path: str, cost: str,
           add_choices: Callable[[argparse.ArgumentParser], None]) -> argparse.ArgumentParser:
    """The protocols' command line; ``add_choices`` adds what a script compares (after --runs)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=("train", "cost", "eval", "table"))
    p.add_argument("--data", default="datasets/fmnist_tshirt_pullover")
    p.add_argument("--runs", default=runs)
    add_choices(p)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--iters", type=int, default=iters)
    p.add_argument("--jobs", type=int, default=2, help="runs at a time (one CPU thread each)")
    p.add_argument("--json", default=json_path)
    p.add_argument("--cost", default=cost, help="per-step costs (the cost command writes it)")
    p.add_argument("--rounds", type=int, default=5, help="cost: interleaved timing rounds of 10 steps")
    return p


def dispatch(args: argparse.Namespace, train: Callable, cost: Callable, evaluate: Callable,
             markdown: Callable[[dict], str]) -> int:
    """Run the command ``args.command`` names; ``table`` prints the saved results again."""
    if args.command == "train":
        return train(args)
    if args.command == "cost":
        return cost(args)
    if args.command == "table":
        print(markdown(json.loads(Path(args.json).read_text())))
        return 0
    return evaluate(args)


def trainable_model(argv: list[str]):
    """The model ``cyclegan ARGV`` (a ``train`` command line) trains, with its run's Adam, seeded:
    built through the same resolution and kind registry as the command. Returns (model, run)."""
    import torch

    from cyclegan.cli.main import build_parser
    from cyclegan.cli.train import train_config
    from cyclegan.training.config import with_optimizers
    from cyclegan.training.kinds import kind

    run = train_config(build_parser().parse_args(argv))
    torch.manual_seed(0)
    return with_optimizers(kind(run.kind).training.new_model(run), run.optim), run


def interleaved_step_seconds(models: dict, batch: dict, rounds: int, steps: int = 10) -> dict[str, float]:
    """Median seconds per ``train_step`` of each model, measured in one process in interleaved
    rounds of ``steps`` steps (round 0 warms up), so a change in the machine's load hits every
    model alike."""
    import statistics

    times: dict[str, list[float]] = {name: [] for name in models}
    for round_ in range(rounds + 1):
        for name, model in models.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                model.train_step(batch)
            if round_:
                times[name].append((time.perf_counter() - t0) / steps)
    return {name: statistics.median(t) for name, t in times.items()}
