"""Side by side in one process: our math verifier against Math-Verify 0.9.0.

Both checkers see the same labelled (completion, gold) pairs of the answer corpus
(tests/data/math_corpus/: whole completions in the styles real models write, see styles.py),
each part reported on its own: `dev` is where our rules were developed, `heldout` was written
before them and never used to tune them (the honest figure). Throughput is measured with the
two checkers timed alternately, round after round, each round with cold caches, so machine
noise hits both alike.

    .venv/bin/pip install -e ".[bench]"
    .venv/bin/python bench/math_verify_bench.py [--rounds 5] [--show-misses]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MATH_VERIFY = "math-verify 0.9.0"


def load_corpus() -> dict[str, list[dict]]:
    path = ROOT / "tests" / "data" / "math_corpus" / "build.py"
    spec = importlib.util.spec_from_file_location("math_corpus_build", path)
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    return {part: build.load(part) for part in build.PARTS}


def ours(completion: str, gold: str) -> bool:
    from verifiers.math import verify_math

    return verify_math(completion, gold) == 1.0


def math_verify(completion: str, gold: str) -> bool:
    from math_verify import parse, verify

    try:
        return bool(verify(parse(f"\\boxed{{{gold}}}"), parse(completion)))
    except Exception:
        return False


def cold_start() -> None:
    from verifiers.math import reset

    reset()  # every round starts with cold caches and a fresh worker, as a new run would


def timed(check, rows) -> tuple[list[bool], float]:
    cold_start()
    start = time.perf_counter()
    verdicts = [check(r["completion"], r["gold"]) for r in rows]
    return verdicts, time.perf_counter() - start


def score_table(checkers, verdicts, corpus) -> None:
    print("| part | checker | pairs | accuracy | wrong accepts | wrong rejects |")
    print("|---|---|---|---|---|---|")
    for part, rows in corpus.items():
        for name in checkers:
            got = verdicts[name][part]
            correct = sum(g == r["label"] for g, r in zip(got, rows))
            accepts = sum(g and not r["label"] for g, r in zip(got, rows))
            rejects = sum(r["label"] and not g for g, r in zip(got, rows))
            print(f"| {part} | {name} | {len(rows)} | {100 * correct / len(rows):.1f}% | "
                  f"{accepts} | {rejects} |")


def print_misses(checkers, verdicts, corpus, part: str) -> None:
    rows = corpus[part]
    for name in checkers:
        misses = [r for g, r in zip(verdicts[name][part], rows) if g != r["label"]]
        print(f"\n{name} disagrees with the label on {len(misses)} {part} pairs:")
        for r in misses:
            print(f"  [{r['kind']}/{r['style']}] gold={r['gold']!r} label={r['label']} "
                  f"completion={r['completion'][-90:]!r}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--show-misses", choices=["dev", "heldout"],
                        help="list the pairs of this part that either checker gets wrong")
    args = parser.parse_args()
    corpus = load_corpus()
    every_row = [r for rows in corpus.values() for r in rows]
    checkers = {"hybrid-rl": ours, MATH_VERIFY: math_verify}
    for check in checkers.values():  # warm-up: imports, caches, worker start
        timed(check, every_row[:20])
    verdicts = {name: {part: timed(check, rows)[0] for part, rows in corpus.items()}
                for name, check in checkers.items()}
    times = {name: [] for name in checkers}
    for _ in range(args.rounds):
        for name, check in checkers.items():
            times[name].append(timed(check, every_row)[1])
    print(f"{len(every_row)} labelled pairs ({sum(not r['label'] for r in every_row)} to reject), "
          f"{args.rounds} alternating rounds, 1 process, {os.cpu_count()} CPUs\n")
    score_table(checkers, verdicts, corpus)
    print("\n| checker | checks/s (median of rounds, whole corpus) |\n|---|---|")
    for name in checkers:
        print(f"| {name} | {len(every_row) / statistics.median(times[name]):,.0f} |")
    ratio = statistics.median(times[MATH_VERIFY]) / statistics.median(times["hybrid-rl"])
    print(f"\nthroughput ratio hybrid-rl / {MATH_VERIFY}: {ratio:.1f}x")
    if args.show_misses:
        print_misses(checkers, verdicts, corpus, args.show_misses)


if __name__ == "__main__":
    main()
