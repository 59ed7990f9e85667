"""Side by side in one process: our math verifier against Math-Verify 0.9.0.

Both checkers see the same labelled pairs from tests/data/math_cases.tsv (plus the number
families of tests/test_math_cases.py): the gold wrapped in \\boxed{} and the prediction as a
completion ending in \\boxed{...}. Reports accuracy, wrong accepts, and checks per second with
the two checkers timed alternately, round after round, so machine noise hits both alike.

    .venv/bin/pip install -e ".[bench]"
    .venv/bin/python bench/math_verify_bench.py [--rounds 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def load_cases() -> list[tuple[str, str, bool]]:
    from test_math_cases import CASES  # the labelled file and the generated number families

    return [tuple(c.values) for c in CASES]


def ours(gold: str, pred: str) -> bool:
    from verifiers.math import verify_math

    return verify_math(f"The answer is \\boxed{{{pred}}}.", f"\\boxed{{{gold}}}") == 1.0


def math_verify(gold: str, pred: str) -> bool:
    from math_verify import parse, verify

    try:
        return bool(verify(parse(f"\\boxed{{{gold}}}"), parse(f"The answer is \\boxed{{{pred}}}.")))
    except Exception:
        return False


def run_once(check, cases) -> tuple[list[bool], float]:
    from verifiers.math import reset

    reset()  # every round starts with cold caches and a fresh worker, as a new run would
    start = time.perf_counter()
    verdicts = [check(g, p) for g, p, _ in cases]
    return verdicts, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cases = load_cases()
    checkers = {"hybrid-rl": ours, "math-verify 0.9.0": math_verify}
    for check in checkers.values():  # warm-up: imports, caches, worker start
        run_once(check, cases[:20])
    times = {name: [] for name in checkers}
    verdicts = {}
    for _ in range(args.rounds):
        for name, check in checkers.items():
            verdicts[name], seconds = run_once(check, cases)
            times[name].append(seconds)
    print(f"{len(cases)} labelled pairs ({sum(1 for c in cases if not c[2])} non-equivalent), "
          f"{args.rounds} alternating rounds, 1 process, {os.cpu_count()} CPUs\n")
    print("| checker | accuracy | wrong accepts | wrong rejects | checks/s (median) |")
    print("|---|---|---|---|---|")
    for name in checkers:
        v = verdicts[name]
        correct = sum(got == want for got, (_, _, want) in zip(v, cases))
        wrong_accepts = sum(got and not want for got, (_, _, want) in zip(v, cases))
        wrong_rejects = sum(want and not got for got, (_, _, want) in zip(v, cases))
        rate = len(cases) / statistics.median(times[name])
        print(f"| {name} | {100 * correct / len(cases):.1f}% | "
              f"{wrong_accepts} | {wrong_rejects} | {rate:,.0f} |")
    ratio = statistics.median(times["math-verify 0.9.0"]) / statistics.median(times["hybrid-rl"])
    print(f"\nthroughput ratio hybrid-rl / math-verify: {ratio:.1f}x")
    misses = [(g, p, w) for (g, p, w), got in zip(cases, verdicts["math-verify 0.9.0"]) if got != w]
    if misses:
        print("\nmath-verify disagrees with the label on:",
              *[f"  gold={g!r} pred={p!r} label={w}" for g, p, w in misses[:40]], sep="\n")


if __name__ == "__main__":
    main()
