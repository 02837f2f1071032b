"""The GPU acceptance run (issue 27): what a lent GPU machine must show before a CUDA default
changes. Run it through tests/gpu/accept.sh (which installs the carried wheels); see that file.

Parts, in order of what matters most (each skipped, and said to be, when the time budget is spent):

- ``info``: torch, the GPU, and what ``--precision/--compile auto`` choose on it.
- ``defaults``: 20 iterations of ``cyclegan train`` / ``cyclegan mnist train`` under the defaults
  for every model kind and objective (CycleGAN default and paper, WGAN-GP, R1, --d-steps 2,
  --pool-size 0, DiffAugment, --data-on-device on; CUT, FastCUT; the MNIST GAN with each loss).
- ``fast``: the same runs with ``--step-graph``, and a few with ``--compile --compile-mode
  reduce-overhead``: a run that fell back to eager is a failure of that fast path (the run itself
  goes on, as designed), and config.yaml's ``ran`` says what was captured and replayed.
- ``tests``: the gpu-marked tests.
- ``rows``: the real training loop (``cyclegan bench --mode loop``) at 32 px and 256 px, batch 1:
  fp32 eager, auto, the step graph, per-network CUDA graphs; batch 8 at 256 px as a fraction of
  the bf16 peak. These decide ``core.fastpath.GPU_PROVEN``.

Every result is a line of ``OUT/results.jsonl`` and a row of ``OUT/summary.md``, written as it
comes. Exit status: 0 when every part ran and passed, 1 when anything failed, 2 when nothing
failed but a part did not run for lack of time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("info", "defaults", "fast", "tests", "rows")
TINY = ["--size", "32", "--netG", "resnet_6blocks", "--ngf", "8", "--ndf", "8"]
#: ACCEPT_DEVICE=cpu rehearses the script here (the step graph as its dry run, no compile rows)
DEVICE = os.environ.get("ACCEPT_DEVICE", "cuda")
LOOP = ["--max-iters", "20", "--device", DEVICE, "--num-workers", "0", "--preview-every", "10",
        "--save-every", "10", "--log-every", "5"]
#: (name, command after `python -m cyclegan`) for every model kind and objective
IMAGE_RUNS = {
    "cyclegan": [], "cyclegan-paper": ["--preset", "paper", *TINY], "wgangp": ["--gan-mode", "wgangp"],
    "r1": ["--r1-gamma", "1"], "d-steps-2": ["--d-steps", "2"], "pool-0": ["--pool-size", "0"],
    "diffaug": ["--diffaug", "color,translation,cutout"], "data-on-device": ["--data-on-device", "on"],
    "cut": ["--model", "cut"], "fastcut": ["--model", "fastcut"],
}
MNIST_LOSSES = ("nonsaturating", "minimax", "vanilla", "lsgan", "hinge", "wgangp")
#: the fast path tried with per-network CUDA graphs (each compiles for about a minute)
COMPILED = ("cyclegan", "cut", "mnist-wgangp")
PEAK_TFLOPS = 989  # dense bf16 TFLOP/s of an H100/H200 SXM (datasheet)


class Session:
    def __init__(self, out: Path, budget: float):
        self.out, self.deadline, self.failed, self.skipped = out, time.time() + budget, [], []
        out.mkdir(parents=True, exist_ok=True)
        self.summary = out / "summary.md"
        self.summary.write_text("| part | what | result | seconds | detail |\n|---|---|---|---|---|\n")

    def left(self) -> float:
        return self.deadline - time.time()

    def record(self, part: str, what: str, ok: bool | None, seconds: float, detail: str = "", **extra) -> None:
        result = "ok" if ok else ("FAILED" if ok is False else "not run")
        if ok is False:
            self.failed.append(f"{part}/{what}")
        if ok is None:
            self.skipped.append(f"{part}/{what}")
        row = {"part": part, "what": what, "result": result, "seconds": round(seconds, 1), "detail": detail, **extra}
        with open(self.out / "results.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        with open(self.summary, "a") as f:
            f.write(f"| {part} | {what} | {result} | {seconds:.0f} | {detail[:300].replace('|', '/')} |\n")
        print(f"[{part}] {what}: {result} ({seconds:.0f} s) {detail[:200]}", flush=True)


def sh(args: list[str], timeout: float, cwd: Path = ROOT) -> tuple[int, str, float]:
    start = time.time()
    try:
        env = {**os.environ, **({"CYCLEGAN_STEP_GRAPH_DRY": "1"} if DEVICE == "cpu" else {})}
        r = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=max(1.0, timeout), env=env)
        return r.returncode, r.stdout + r.stderr, time.time() - start
    except subprocess.TimeoutExpired as e:
        return 124, f"timed out after {timeout:.0f} s: {(e.stderr or b'')[-2000:]!r}", time.time() - start


def cyclegan(*args: str) -> list[str]:
    return [sys.executable, "-m", "cyclegan", *args]


def make_data(work: Path) -> dict[str, Path]:
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from cyclegan.bench.loop import synthetic_folder
    from cyclegan.data.mnist import write_idx

    data = {"rgb32": synthetic_folder(work / "rgb32", 32, count=24),
            "gray32": synthetic_folder(work / "gray32", 32, count=400, channels=1),
            "rgb256": synthetic_folder(work / "rgb256", 256, count=80)}
    rng = np.random.default_rng(0)
    mnist = work / "mnist"
    for split, n in (("train", 64), ("t10k", 16)):
        write_idx(mnist / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(mnist / f"{split}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    data["mnist"] = mnist
    return data


def train_command(name: str, data: dict[str, Path], runs: Path, extra: list[str]) -> list[str]:
    if name.startswith("mnist-"):
        return cyclegan("mnist", "train", "--idx-dir", str(data["mnist"]), "--gan-mode", name.split("-", 1)[1],
                        "--ngf", "8", "--ndf", "8", "--eval-samples", "0", "--runs-dir", str(runs), "--name", name,
                        *LOOP, *extra)
    flags = IMAGE_RUNS[name]
    tiny = [] if "--preset" in flags else TINY
    return cyclegan("train", "--dataroot", str(data["rgb32"]), "--runs-dir", str(runs), "--name", name,
                    *tiny, *flags, *LOOP, *extra)


def check_run(s: Session, part: str, name: str, cmd: list[str], run_dir: Path, fast: str | None) -> None:
    if s.left() < 30:
        s.record(part, name, None, 0, "out of time")
        return
    rc, text, seconds = sh(cmd, min(240, s.left()))
    config, ran = {}, {}
    if (run_dir / "config.yaml").exists():
        import yaml

        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
        ran = config.get("ran") or {}
    fast_path = config.get("fast_path") or {}
    problems = []
    if rc != 0:
        problems.append(f"exit {rc}: {text.strip().splitlines()[-1] if text.strip() else ''}")
    if "Traceback" in text:
        problems.append("a traceback")
    if fast and ran.get("fell_back"):
        problems.append(f"fell back: {ran['fell_back']}")
    if fast == "step-graph" and not (ran.get("step_graph_replays" if DEVICE == "cuda" else "step_graph_captures") or 0):
        problems.append(f"no replay ({ran})")
    detail = "; ".join(problems) or (f"{fast_path.get('precision')} {'compiled' if fast_path.get('compile') else 'eager'}"
                                     f"{(', captures ' + str(ran.get('step_graph_captures')) + ', replays ' + str(ran.get('step_graph_replays'))) if fast == 'step-graph' else ''}")
    s.record(part, name, not problems, seconds, detail, fast_path=fast_path, ran=ran, tail=text[-1500:])


def runs(s: Session, part: str, data: dict[str, Path], work: Path, only: str) -> None:
    names = [n for n in (*IMAGE_RUNS, *(f"mnist-{loss}" for loss in MNIST_LOSSES)) if re.search(only, n)]
    jobs = []
    if part == "defaults":
        jobs = [(n, [], None) for n in names]
    else:
        jobs = [(n, ["--step-graph"], "step-graph") for n in names if n != "data-on-device"]
        jobs += [("data-on-device", ["--step-graph"], "step-graph")]
        if DEVICE == "cuda":
            jobs += [(n, ["--compile", "--compile-mode", "reduce-overhead"], "graphs") for n in COMPILED
                     if re.search(only, n)]
    with ThreadPoolExecutor(4) as pool:  # correctness, not speed: four runs share the GPU
        for name, extra, fast in jobs:
            label = name + (f" {fast}" if fast else "")
            run_root = work / part / (fast or "auto")
            pool.submit(check_run, s, part, label, train_command(name, data, run_root, extra), run_root / name, fast)


def tests(s: Session) -> None:
    if s.left() < 60:
        s.record("tests", "pytest -m gpu", None, 0, "out of time")
        return
    files = sorted(str(f.relative_to(ROOT)) for f in (ROOT / "tests").glob("test_*.py") if "mark.gpu" in f.read_text())
    rc, text, seconds = sh([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", *files],
                           min(420, s.left()))
    (s.out / "tests.txt").write_text(text)
    last = text.strip().splitlines()[-1] if text.strip() else ""
    s.record("tests", "pytest -m gpu", rc == 0, seconds, last)


def rows(s: Session, data: dict[str, Path]) -> None:
    bench = ["bench", "--device", DEVICE, "--mode", "loop", "--channels-last", "off", "--warmup", "10",
             "--iters", "50", "--repeats", "1", "--peak-tflops", str(PEAK_TFLOPS)]
    sets = [
        ("32px eager/auto/step-graph", [*bench, "--size", "32", "--netG", "resnet_6blocks", "--loop-channels", "1",
                                        "--dataroot", str(data["gray32"]), "--precision", "fp32", "auto",
                                        "--compile", "off"], ["--step-graph"]),
        ("256px eager/auto/step-graph", [*bench, "--size", "256", "--dataroot", str(data["rgb256"]),
                                         "--precision", "fp32", "auto", "--compile", "off"], ["--step-graph"]),
        ("256px batch 8 step-graph", [*bench, "--size", "256", "--batch-size", "8", "--dataroot", str(data["rgb256"]),
                                      "--precision", "auto", "--compile", "off", "--step-graph"], []),
        ("32px per-network graphs", [*bench, "--size", "32", "--netG", "resnet_6blocks", "--loop-channels", "1",
                                     "--dataroot", str(data["gray32"]), "--precision", "auto", "--compile", "on",
                                     "--compile-mode", "reduce-overhead"], []),
        ("256px per-network graphs", [*bench, "--size", "256", "--dataroot", str(data["rgb256"]), "--precision",
                                      "auto", "--compile", "on", "--compile-mode", "reduce-overhead"], []),
    ]
    for i, (what, args, also) in enumerate(sets):
        for variant in ([args, args + also] if also else [args]):
            label = what + (" (+step graph)" if variant is not args else "")
            if s.left() < 45:
                s.record("rows", label, None, 0, "out of time")
                continue
            out = s.out / f"rows_{i}{'_sg' if variant is not args else ''}.json"
            rc, text, seconds = sh(cyclegan(*variant, "--json", str(out)), min(300, s.left()))
            rows_ = json.loads(out.read_text()).get("rows", []) if out.exists() else []
            errors = [r.get("error") for r in rows_ if r.get("error")]
            detail = "; ".join(_row_line(r) for r in rows_) or text[-300:]
            s.record("rows", label, rc == 0 and not errors, seconds, "; ".join(errors) or detail, rows=rows_)


def _row_line(r: dict) -> str:
    ms = f"{1000 * r['sec_per_iter']:.1f} ms/iter" if r.get("sec_per_iter") else "-"
    peak = f", {100 * r['fraction_of_peak']:.1f}% of peak" if r.get("fraction_of_peak") else ""
    graph = " step-graph" if r.get("step_graph") else ""
    return f"b{r.get('batch_size')} {r.get('precision')} compile={r.get('compile')}{graph}: {ms}{peak}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("parts", nargs="*", choices=PARTS, default=list(PARTS))
    p.add_argument("--only", default="", help="a regular expression: the training runs whose names match")
    p.add_argument("--budget", type=float, default=float(os.environ.get("ACCEPT_BUDGET", 460)),
                   help="seconds for all parts (the device tool allows 8 minutes a call)")
    args = p.parse_args()
    s = Session(args.out, args.budget)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "cyclegan-accept"
    data = make_data(work)
    for part in args.parts:
        start = time.time()
        if part == "info":
            code = ("import torch; from cyclegan.core import fastpath as f; d=torch.device('cuda'); "
                    "print(torch.__version__, torch.cuda.get_device_name(), torch.cuda.get_device_capability(), "
                    "'cudnn', torch.backends.cudnn.version()); print(f.choose(d, 'train', signature='cyclegan/hinge'))")
            rc, text, seconds = sh([sys.executable, "-c", code], 60)
            s.record("info", "torch, GPU, auto", rc == 0, seconds, " ".join(text.split())[:300])
        elif part in ("defaults", "fast"):
            runs(s, part, data, work, args.only)
        elif part == "tests":
            tests(s)
        elif part == "rows":
            rows(s, data)
        print(f"=== {part}: {time.time() - start:.0f} s, {s.left():.0f} s left", flush=True)
    verdict = 1 if s.failed else 2 if s.skipped else 0
    with open(s.summary, "a") as f:
        f.write(f"\nfailed: {', '.join(s.failed) or 'none'}\nnot run: {', '.join(s.skipped) or 'none'}\n"
                f"exit status {verdict}\n")
    print(f"failed: {s.failed or 'none'}; not run: {s.skipped or 'none'}", flush=True)
    return verdict


if __name__ == "__main__":
    sys.exit(main())
