"""Build the labelled math-answer corpus: every answer of items_*.py in several completion
styles (styles.py), plus the whole completions. Writes dev.jsonl and heldout.jsonl beside
this file; `load(part)` reads them back (tests and bench/math_verify_bench.py).

    python tests/data/math_corpus/build.py      # rewrite the two files
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STYLES_PER_ANSWER = 2
PARTS = ("dev", "heldout")


def _module(name: str):
    sys.path.insert(0, str(HERE))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(HERE))


# The first held-out part joined development once its figure was frozen (README "Math verifier")
SOURCES = {"dev": ("items_dev", "items_dev_heldout_v1"), "heldout": ("items_heldout",)}


def build(part: str) -> list[dict]:
    rows = []
    for source in SOURCES[part]:
        rows += _rows(_module(source))
    return rows


def _rows(items) -> list[dict]:
    completions_for = _module("styles").completions_for
    rows, rotation = [], 0
    for kind, gold, accepted, rejected in items.ITEMS:
        for answers, label in ((accepted, True), (rejected, False)):
            for answer in answers:
                for style, completion in completions_for(answer, STYLES_PER_ANSWER, rotation):
                    rows.append({"gold": gold, "completion": completion, "label": label,
                                 "kind": kind if label else f"{kind}-miss", "style": style})
                rotation += 1
    for gold, completion, label in items.COMPLETIONS:
        rows.append({"gold": gold, "completion": completion, "label": label,
                     "kind": "extraction" if label else "extraction-miss", "style": "whole"})
    return rows


def load(part: str) -> list[dict]:
    with open(HERE / f"{part}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def main() -> None:
    for part in PARTS:
        rows = build(part)
        with open(HERE / f"{part}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        misses = sum(not r["label"] for r in rows)
        print(f"{part}: {len(rows)} pairs, {misses} to reject")


if __name__ == "__main__":
    main()
