"""CUT and FastCUT against the CycleGAN default on the demo pair of docs/quality.md, at equal
iterations and at equal wall-clock time, two seeds, both directions.

    python datasets/make_fashion_pairs.py                       # T-shirt/top (A) <-> Pullover (B)
    python docs/cut_protocol.py cost                            # time and peak memory per step
    python docs/cut_protocol.py train --jobs 2                  # 2 CycleGAN + 8 CUT/FastCUT runs
    python docs/cut_protocol.py eval                            # table, JSON, strips

Every run is the real ``cyclegan train`` command with the project's defaults (hinge loss, EMA
0.999) at the size of docs/quality.md: 32 px, grayscale, ResNet-6 with ngf 16, ndf 32, batch 1,
fp32 eager, plus ``--model``. CycleGAN learns both directions in one run; CUT and FastCUT learn one, so each
needs two runs (``--direction AtoB`` and ``BtoA``) and its cost for both directions is two models'
steps. Equal wall-clock time: in the time CycleGAN takes for ITERS iterations, each of the two
one-direction models gets half, i.e. ITERS * c_cyclegan / (2 * c_model) iterations by the per-step
costs c measured by ``cost`` (rounded down to the 100-iteration checkpoints); runs are trained far
enough to reach it.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from protocol_common import (ROOT, SAVE_EVERY, dispatch, interleaved_step_seconds, parser, run_flags, trainable_model,
                             train_run)

MODELS = ("cyclegan", "cut", "fastcut")


def common(data: str, runs: str, name: str, seed: int, iters: int) -> list[str]:
    return [*run_flags(data, runs, name, seed, iters), "--precision", "fp32", "--no-compile"]


def runs_of(model: str, seed: int) -> list[tuple[str, list[str]]]:
    """(run name, model flags) of one model and seed: one run for CycleGAN, one per direction for CUT."""
    if model == "cyclegan":
        return [(f"cyclegan_s{seed}", ["--model", "cyclegan"])]
    return [(f"{model}_{d}_s{seed}", ["--model", model, "--direction", d]) for d in ("AtoB", "BtoA")]


def train_one(args: argparse.Namespace, name: str, flags: list[str], seed: int, iters: int) -> str:
    return train_run(args.runs, name, [*common(args.data, args.runs, name, seed, iters), *flags], iters, log_mode="a")


def iterations_needed(cost: dict, model: str, iters: int) -> int:
    """Iterations a run of ``model`` must reach: ``iters`` for equal iterations, and its equal-time
    checkpoint when that is further."""
    return max(iters, equal_time_iteration(cost, model, iters))


def equal_time_iteration(cost: dict, model: str, iters: int) -> int:
    """The checkpoint each of ``model``'s runs reaches in CycleGAN's time for ``iters`` iterations
    (two one-direction runs share that time), rounded down to a saved checkpoint."""
    if model == "cyclegan":
        return iters
    reached = iters * cost["cyclegan"] / (2 * cost[model])
    return max(SAVE_EVERY, int(reached // SAVE_EVERY) * SAVE_EVERY)


def cmd_train(args: argparse.Namespace) -> int:
    cost = json.loads(Path(args.cost).read_text())["sec_per_step"]
    jobs = [(name, flags, seed, iterations_needed(cost, model, args.iters))
            for seed in args.seeds for model in args.models for name, flags in runs_of(model, seed)]
    with ThreadPoolExecutor(args.jobs) as pool:
        for line in pool.map(lambda j: train_one(args, *j), jobs):
            print(line, flush=True)
    return 0


def _memory(model: str, size: int, paper_networks: bool) -> dict:
    """What one training step holds, counted from the tensors rather than the process (whose
    resident size on a CPU is dominated by the libraries at 32 px): the model state (weights,
    gradients, Adam moments, EMA) and the activations saved for backward during one step
    (deduplicated by storage; the two updates' graphs together, an upper bound of the peak)."""
    import torch

    torch.set_num_threads(1)
    sizes = (["--size", str(size)] + (["--netG", "resnet_9blocks", "--ngf", "64", "--ndf", "64", "--channels", "3"]
                                       if paper_networks else []))
    m, run = trainable_model(["train", *common("unused", "unused", "cost", 0, 1), *sizes, "--model", model])
    channels = run.model.input_nc
    g = torch.Generator().manual_seed(0)
    batch = {k: torch.rand(1, channels, size, size, generator=g) * 2 - 1 for k in "AB"}
    m.train_step(batch)  # gradients and Adam moments exist from here on
    saved: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return t

    t0 = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        m.train_step(batch)
    seconds = time.perf_counter() - t0
    state = sum(t.numel() * t.element_size() for t in m.state_dict().values())
    state += sum(p.grad.numel() * p.grad.element_size() for p in m.parameters() if p.grad is not None)
    state += sum(v.numel() * v.element_size() for opt in m.optimizers.values() for st in opt.state.values()
                 for v in st.values() if torch.is_tensor(v))
    return {"size": size, "paper_networks": paper_networks, "state_mib": state / 2**20,
            "saved_activations_mib": sum(saved.values()) / 2**20, "one_step_seconds": seconds}


def cmd_cost(args: argparse.Namespace) -> int:
    """Seconds per training step of each model on this machine, in one process in interleaved
    rounds (a change in the machine's load hits every model alike), and peak memory per step,
    each model in its own process."""
    import torch

    torch.set_num_threads(1)
    models = {model: trainable_model(["train", *common(args.data, args.runs, "cost", 0, 1), "--model", model])[0]
              for model in MODELS}
    g = torch.Generator().manual_seed(0)
    batch = {k: torch.rand(1, 1, 32, 32, generator=g) * 2 - 1 for k in "AB"}
    cost = interleaved_step_seconds(models, batch, args.rounds)
    memory = {m: [_memory(m, 32, False)] + ([_memory(m, 256, True)] if args.paper_size else []) for m in MODELS}
    for m, c in cost.items():
        both = c * (1 if m == "cyclegan" else 2)
        mem = "  ".join(f"{r['size']} px: state {r['state_mib']:.1f} MiB + activations "
                        f"{r['saved_activations_mib']:.1f} MiB" for r in memory[m])
        print(f"{m:<9} {c * 1e3:7.1f} ms/step  both directions {both * 1e3:7.1f} ms ({both / cost['cyclegan']:.2f}x "
              f"cyclegan)  {mem}", flush=True)
    Path(args.cost).write_text(json.dumps({"sec_per_step": cost, "memory": memory, "rounds": args.rounds,
                                           "threads": 1, "date": time.strftime("%Y-%m-%d %H:%M")}, indent=1))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from cyclegan.evaluation.domains import DomainJudge

    judge = DomainJudge.from_dataroot(args.data, 1, seed=0)
    cost = json.loads(Path(args.cost).read_text())["sec_per_step"]
    rows, done = [], {}
    for model in args.models:
        eq = equal_time_iteration(cost, model, args.iters)
        for seed in args.seeds:
            for budget, it in (("iterations", args.iters), ("time", eq)):
                row = {"model": model, "seed": seed, "budget": budget, "iteration": it,
                       "sec_per_step": cost[model], "runs": []}
                for name, _ in runs_of(model, seed):
                    run = Path(args.runs) / name
                    source = run / "checkpoints" / f"iter_{it:08d}.pt"
                    strip = (ROOT / "docs" / "images" / f"cut_protocol_{name.rsplit('_s', 1)[0]}.png"
                             if budget == "iterations" and seed == args.seeds[0] else None)
                    if source not in done:
                        done[source] = judge.evaluate(str(source), strip=strip)
                    row["runs"].append(name)
                    for d in ("AtoB", "BtoA"):
                        if d in done[source]:
                            t = done[source][d]["translated"]
                            row[d] = {"hit_rate": t["hit_rate"], "fid": t["fid"], "kid": t["kid"]}
                rows.append(row)
                print(f"{model:<9} seed {seed} {budget:<10} it {it:>5}  FID {row['AtoB']['fid']:7.2f} "
                      f"{row['BtoA']['fid']:7.2f}  hit {row['AtoB']['hit_rate']:.3f} {row['BtoA']['hit_rate']:.3f}",
                      flush=True)
    out = {"classifier": judge.summary(), "iterations": args.iters, "seeds": args.seeds, "rows": rows,
           "cost": json.loads(Path(args.cost).read_text())}
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(markdown(out))
    return 0


def markdown(result: dict) -> str:
    lines = []
    for budget, title in (("iterations", "equal iterations"), ("time", "equal wall-clock time")):
        lines += [f"\n### {title}\n",
                  "| model | seed | iterations per run | FID A→B | FID B→A | hit A→B | hit B→A |",
                  "|---|---|---|---|---|---|---|"]
        means: dict[str, list[dict]] = {}
        for r in result["rows"]:
            if r["budget"] != budget:
                continue
            means.setdefault(r["model"], []).append(r)
            lines.append(f"| {r['model']} | {r['seed']} | {r['iteration']} | {r['AtoB']['fid']:.2f} | "
                         f"{r['BtoA']['fid']:.2f} | {r['AtoB']['hit_rate']:.3f} | {r['BtoA']['hit_rate']:.3f} |")
        for model, rows in means.items():
            def mean(d: str, k: str) -> float:
                return sum(r[d][k] for r in rows) / len(rows)

            def spread(d: str) -> float:
                return max(r[d]["fid"] for r in rows) - min(r[d]["fid"] for r in rows)

            lines.append(f"| **{model} mean (spread)** | | | {mean('AtoB', 'fid'):.2f} ({spread('AtoB'):.2f}) | "
                         f"{mean('BtoA', 'fid'):.2f} ({spread('BtoA'):.2f}) | {mean('AtoB', 'hit_rate'):.3f} | "
                         f"{mean('BtoA', 'hit_rate'):.3f} |")
    return "\n".join(lines)


def main() -> int:
    def models(p: argparse.ArgumentParser) -> None:
        p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
        p.add_argument("--paper-size", action="store_true", help="cost: also memory at 256 px with the paper's networks")

    args = parser(__doc__, "runs/cut", 1500, "docs/cut_results.json", "docs/cut_cost.json", models).parse_args()
    return dispatch(args, cmd_train, cmd_cost, cmd_eval, markdown)


if __name__ == "__main__":
    raise SystemExit(main())
