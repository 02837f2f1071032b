"""Does a faster arithmetic learn the same model? `cyclegan eval domains` on the demo pair at equal
iterations, fp32 against bf16 autocast, each over the same seeds (issue 15: a default may change
only where the results stay within the seed spread, or beyond it only for the better).

    python datasets/make_fashion_pairs.py
    python docs/quality_protocol.py train --settings ema+hinge ema+hinge+bf16 --runs runs/quality_bf16
    OMP_NUM_THREADS=1 python docs/precision_quality.py --runs runs/quality_bf16 \\
        --json docs/bench/precision_quality_bf16.json

The runs are docs/quality.md's (32 px grayscale, ResNet-6 at the demo model's width, batch 1,
3000 iterations), in our default recipe ("ema+hinge"), once with --precision fp32 and once with
bf16. Verdict per figure (FID and hit rate, each direction): "same" when the two means differ by
no more than the larger of the two seed spreads (max - min over seeds), else "better" or "worse"
(lower FID, higher hit rate is better).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from protocol_common import ROOT  # noqa: F401  (puts the repository on sys.path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="datasets/fmnist_tshirt_pullover")
    p.add_argument("--runs", default="runs/quality_bf16")
    p.add_argument("--baseline", default="ema+hinge")
    p.add_argument("--candidate", default="ema+hinge+bf16")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--json", default=None)
    args = p.parse_args()

    from cyclegan.evaluation.domains import DomainJudge

    judge = DomainJudge.from_dataroot(args.data, 1, seed=0)
    figures: dict[str, list[dict]] = {}
    for setting in (args.baseline, args.candidate):
        for seed in args.seeds:
            result = judge.evaluate(str(Path(args.runs) / f"{setting}_s{seed}" / "generators.safetensors"))
            row = {d: {k: result[d]["translated"][k] for k in ("fid", "hit_rate", "kid", "cycle_l1")}
                   for d in ("AtoB", "BtoA")}
            figures.setdefault(setting, []).append({"seed": seed, **row})
            print(f"{setting:<16} seed {seed}  FID {row['AtoB']['fid']:6.2f} {row['BtoA']['fid']:6.2f}  "
                  f"hit {row['AtoB']['hit_rate']:.3f} {row['BtoA']['hit_rate']:.3f}", flush=True)
    verdicts = {}
    print(f"\n| figure | {args.baseline} mean (spread) | {args.candidate} mean (spread) | difference | verdict |")
    print("|---|---|---|---|---|")
    for d in ("AtoB", "BtoA"):
        for k in ("fid", "hit_rate"):
            stats = []
            for setting in (args.baseline, args.candidate):
                vals = [r[d][k] for r in figures[setting]]
                stats.append((sum(vals) / len(vals), max(vals) - min(vals)))
            (m0, s0), (m1, s1) = stats
            better = m1 < m0 if k == "fid" else m1 > m0
            verdict = "same" if abs(m1 - m0) <= max(s0, s1) else "better" if better else "worse"
            verdicts[f"{d} {k}"] = verdict
            print(f"| {d} {k} | {m0:.3f} ({s0:.3f}) | {m1:.3f} ({s1:.3f}) | {m1 - m0:+.3f} | {verdict} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"classifier": judge.summary(), "runs": args.runs, "figures": figures,
                                               "verdicts": verdicts, "date": time.strftime("%Y-%m-%d")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
