"""What the verifier worker pool costs: the same 256 math checks scored in the pool (bounded
in time, crash-proof) and in the trainer process (unbounded), alternately in one run.

    .venv/bin/python bench/verifier_pool_bench.py [--rounds 30] [--batch 256]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hybrid_rl.data.samples import Sample
from hybrid_rl.rewards.scorer import RewardScorer, Signal  # noqa: E402
from hybrid_rl.tasks.arithmetic import arithmetic  # noqa: E402
from verifiers import get_verifier  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    rows = arithmetic(args.batch, 0, 2, 2, "+-")
    samples = [Sample(p, a, "math") for p, a, _ in rows]
    # a third wrong
    completions = [a if i % 3 else str(int(a) + 1) for i, (_, a, _) in enumerate(rows)]
    signal = [Signal("correctness", get_verifier("math"), 1.0)]
    scorers = {"pool (2 workers)": RewardScorer({"math": signal}, num_workers=2),
               "in-process": RewardScorer({"math": signal}, num_workers=0)}
    times = {name: [] for name in scorers}
    for _ in range(args.rounds):
        for name, scorer in scorers.items():
            start = time.perf_counter()
            scorer.score(samples, completions)
            times[name].append(time.perf_counter() - start)
    scorers["pool (2 workers)"].close()
    skip = min(5, args.rounds // 2)  # first rounds warm caches
    medians = {name: statistics.median(t[skip:]) * 1000 for name, t in times.items()}
    print(f"{args.batch} math checks per batch, median of {args.rounds - skip} alternating rounds")
    print("| scorer | ms per batch |\n|---|---|")
    for name, ms in medians.items():
        print(f"| {name} | {ms:.1f} |")
    print(f"pool / in-process: {medians['pool (2 workers)'] / medians['in-process']:.2f}x")


if __name__ == "__main__":
    main()
