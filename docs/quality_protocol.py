"""The quality protocol of docs/quality.md: the paper's recipe against each change alone and in
combination, two seeds each, at equal iterations and at equal wall-clock time.

    python datasets/make_fashion_pairs.py                      # T-shirt/top (A) <-> Pullover (B)
    python docs/quality_protocol.py train --jobs 2              # 18 runs, ~6 min each on one core
    python docs/quality_protocol.py cost                        # each setting's time per step
    python docs/quality_protocol.py eval                        # table, JSON, sample strips

Every run is the real ``cyclegan train`` command: ``--preset paper`` at 32 px, batch 1,
ResNet-6 (ngf 16, ndf 32, the bundled demo model's width, so a run fits in minutes on one CPU
thread), 3000 iterations, plus the setting's flags. Checkpoints every 100 iterations let the
evaluation also take each run at the iteration it had reached when the paper recipe's run of the
same seed finished (equal wall-clock time on this machine). ``eval`` judges each run with
``cyclegan eval domains``' code (a domain classifier trained on the train split).
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from protocol_common import (ROOT, SAVE_EVERY, dispatch, interleaved_step_seconds, parser, run_flags, trainable_model,
                             train_run)

#: setting -> flags on top of the common command; "each change alone", then combinations.
SETTINGS: dict[str, list[str]] = {
    "paper": [],
    "ema": ["--ema", "0.999"],
    "diffaug": ["--diffaug", "color,translation,cutout"],
    "spectral-norm": ["--spectral-norm"],
    "ttur": ["--lr", "1e-4", "--lr-d", "4e-4"],
    "r1": ["--r1-gamma", "0.2"],   # StyleGAN2's heuristic 0.0002 * side^2 / batch at 32 px
    "hinge": ["--gan-mode", "hinge"],
    "ema+diffaug": ["--ema", "0.999", "--diffaug", "color,translation,cutout"],
    "ema+hinge": ["--ema", "0.999", "--gan-mode", "hinge"],
    "ema+spectral-norm": ["--ema", "0.999", "--spectral-norm"],
    "all": ["--ema", "0.999", "--diffaug", "color,translation,cutout", "--spectral-norm", "--lr", "1e-4",
            "--lr-d", "4e-4", "--r1-gamma", "0.2"],
    # Not a recipe change: the default recipe (ema+hinge) in bf16 autocast, the arithmetic
    # --precision auto picks on CPUs with native bf16 (issue 15's "results stay equal" check).
    "ema+hinge+bf16": ["--ema", "0.999", "--gan-mode", "hinge", "--precision", "bf16"],
}


def common(data: str, runs: str, name: str, seed: int, iters: int) -> list[str]:
    return ["--preset", "paper", *run_flags(data, runs, name, seed, iters)]


def run_name(setting: str, seed: int) -> str:
    return f"{setting}_s{seed}"


def train_one(args: argparse.Namespace, setting: str, seed: int) -> str:
    name = run_name(setting, seed)
    return train_run(args.runs, name, [*common(args.data, args.runs, name, seed, args.iters), *SETTINGS[setting]],
                     args.iters)


def cmd_train(args: argparse.Namespace) -> int:
    jobs = [(s, seed) for seed in args.seeds for s in args.settings]
    with ThreadPoolExecutor(args.jobs) as pool:
        for line in pool.map(lambda j: train_one(args, *j), jobs):
            print(line, flush=True)
    return 0


def cmd_cost(args: argparse.Namespace) -> int:
    """Seconds per training step of each setting on this machine, measured in one process in
    interleaved rounds (so a change in the machine's load hits every setting alike): what the
    equal wall-clock comparison divides the paper run's time by. The runs' own wall times, taken
    two at a time on a shared machine, are too noisy for that."""
    import torch

    torch.set_num_threads(1)
    models = {setting: trainable_model(["train", *common(args.data, args.runs, "cost", 0, args.iters),
                                        *SETTINGS[setting]])[0] for setting in args.settings}
    g = torch.Generator().manual_seed(0)
    batch = {k: torch.rand(1, 1, 32, 32, generator=g) * 2 - 1 for k in "AB"}
    cost = interleaved_step_seconds(models, batch, args.rounds)
    for s, c in cost.items():
        print(f"{s:<18} {c * 1e3:7.1f} ms/step  {c / cost['paper']:.2f}x paper", flush=True)
    Path(args.cost).write_text(json.dumps({"sec_per_step": cost, "rounds": args.rounds, "threads": 1,
                                           "date": time.strftime("%Y-%m-%d")}, indent=1))
    return 0


def _equal_time_iteration(cost: dict, setting: str, iters: int) -> int:
    """The iteration a run of ``setting`` reaches in the time the paper recipe takes for ``iters``
    (by the per-step costs of ``cmd_cost``), rounded down to a saved checkpoint."""
    reached = iters * min(1.0, cost["paper"] / cost[setting])
    return max(SAVE_EVERY, int(reached // SAVE_EVERY) * SAVE_EVERY)


def cmd_eval(args: argparse.Namespace) -> int:
    from cyclegan.evaluation.domains import DomainJudge

    judge = DomainJudge.from_dataroot(args.data, 1, seed=0)
    wall = {(s, seed): json.loads((Path(args.runs) / run_name(s, seed) / "wall.json").read_text())["seconds"]
            for s in args.settings for seed in args.seeds}
    cost = json.loads(Path(args.cost).read_text())["sec_per_step"]
    rows, done = [], {}
    for setting in args.settings:
        for seed in args.seeds:
            run = Path(args.runs) / run_name(setting, seed)
            eq = _equal_time_iteration(cost, setting, args.iters)
            sources = {"iterations": run / "generators.safetensors"}
            sources["time"] = run / "checkpoints" / f"iter_{eq:08d}.pt" if eq < args.iters else sources["iterations"]
            for budget, source in sources.items():
                strip = (ROOT / "docs" / "images" / f"quality_{setting}.png"
                         if budget == "iterations" and seed == args.seeds[0] else None)
                if source not in done:  # equal time is often the same checkpoint as equal iterations
                    done[source] = judge.evaluate(str(source), strip=strip)
                result = done[source]
                row = {"setting": setting, "seed": seed, "budget": budget,
                       "iteration": args.iters if budget == "iterations" else eq,
                       "sec_per_iter": wall[(setting, seed)] / args.iters, "sec_per_step": cost[setting],
                       "flags": " ".join(SETTINGS[setting])}
                for d in ("AtoB", "BtoA"):
                    t = result[d]["translated"]
                    row[d] = {"hit_rate": t["hit_rate"], "fid": t["fid"], "kid": t["kid"], "cycle_l1": t["cycle_l1"]}
                rows.append(row)
                print(f"{setting:<14} seed {seed} {budget:<10} it {row['iteration']:>5}  "
                      f"FID {row['AtoB']['fid']:7.2f} {row['BtoA']['fid']:7.2f}  "
                      f"hit {row['AtoB']['hit_rate']:.3f} {row['BtoA']['hit_rate']:.3f}", flush=True)
    out = {"classifier": judge.summary(), "iterations": args.iters, "seeds": args.seeds, "rows": rows}
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(markdown(out))
    return 0


def _stats(rows: list[dict], key: tuple[str, str]) -> tuple[float, float]:
    vals = [r[key[0]][key[1]] for r in rows]
    return sum(vals) / len(vals), max(vals) - min(vals)


def verdicts(result: dict, budget: str) -> dict[str, str]:
    """The rule of docs/quality.md: a change wins when it lowers both directions' mean FID by more
    than the seed spread (the larger of its and the paper's max - min over seeds) and lowers
    neither direction's mean hit rate."""
    by = {}
    for r in result["rows"]:
        if r["budget"] == budget:
            by.setdefault(r["setting"], []).append(r)
    out = {}
    for setting, rows in by.items():
        if setting == "paper":
            continue
        wins = []
        for d in ("AtoB", "BtoA"):
            (fid, spread), (pfid, pspread) = _stats(rows, (d, "fid")), _stats(by["paper"], (d, "fid"))
            hit, phit = _stats(rows, (d, "hit_rate"))[0], _stats(by["paper"], (d, "hit_rate"))[0]
            wins.append(pfid - fid > max(spread, pspread) and hit >= phit)
        out[setting] = "better" if all(wins) else "not better"
    return out


def summary(result: dict, budget: str) -> list[str]:
    """One line per setting: mean (and seed spread) of each direction's FID and hit rate."""
    by: dict[str, list[dict]] = {}
    for r in result["rows"]:
        if r["budget"] == budget:
            by.setdefault(r["setting"], []).append(r)
    verdict = verdicts(result, budget)
    lines = ["| setting | mean FID A→B (spread) | mean FID B→A (spread) | mean hit A→B | mean hit B→A | verdict |",
             "|---|---|---|---|---|---|"]
    for setting, rows in by.items():
        (fa, sa), (fb, sb) = _stats(rows, ("AtoB", "fid")), _stats(rows, ("BtoA", "fid"))
        ha, hb = _stats(rows, ("AtoB", "hit_rate"))[0], _stats(rows, ("BtoA", "hit_rate"))[0]
        lines.append(f"| {setting} | {fa:.2f} ({sa:.2f}) | {fb:.2f} ({sb:.2f}) | {ha:.3f} | {hb:.3f} | "
                     f"{verdict.get(setting, 'baseline')} |")
    return lines


def markdown(result: dict) -> str:
    lines = []
    for budget, title in (("iterations", "equal iterations"), ("time", "equal wall-clock time")):
        verdict = verdicts(result, budget)
        lines += [f"\n### {title}: summary\n", *summary(result, budget)]
        lines += [f"\n### {title}: every run\n",
                  "| setting | seed | iteration | ms/step | FID A→B | FID B→A | hit A→B | hit B→A | KID A→B | KID B→A "
                  "| cycle L1 A | cycle L1 B | verdict |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in result["rows"]:
            if r["budget"] != budget:
                continue
            a, b = r["AtoB"], r["BtoA"]
            lines.append(f"| {r['setting']} | {r['seed']} | {r['iteration']} | {r['sec_per_step'] * 1e3:.0f} | {a['fid']:.2f} "
                         f"| {b['fid']:.2f} | {a['hit_rate']:.3f} | {b['hit_rate']:.3f} | {a['kid']:.4f} | "
                         f"{b['kid']:.4f} | {a['cycle_l1']:.4f} | {b['cycle_l1']:.4f} | "
                         f"{verdict.get(r['setting'], 'baseline')} |")
    return "\n".join(lines)


def main() -> int:
    def settings(p: argparse.ArgumentParser) -> None:
        p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))

    args = parser(__doc__, "runs/quality", 3000, "docs/quality_results.json", "docs/quality_cost.json",
                  settings).parse_args()
    return dispatch(args, cmd_train, cmd_cost, cmd_eval, markdown)


if __name__ == "__main__":
    raise SystemExit(main())
