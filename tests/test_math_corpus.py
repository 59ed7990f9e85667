"""The labelled answer corpus (tests/data/math_corpus/): whole completions in the styles real
models write, checked end to end through verify_math. The held-out part was written before
the rules it measures; see the README's "Math verifier" for how it was kept out of their
development."""
import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

from verifiers.math import verify_math

CORPUS = Path(__file__).parent / "data" / "math_corpus"
_spec = importlib.util.spec_from_file_location("math_corpus_build", CORPUS / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)


def test_the_stored_corpus_is_what_its_sources_build():
    for part in build.PARTS:
        stored = (CORPUS / f"{part}.jsonl").read_text(encoding="utf-8").splitlines()
        assert [json.loads(line) for line in stored] == build.build(part), (
            f"{part}.jsonl is stale: run python tests/data/math_corpus/build.py")


def test_size_near_misses_and_styles():
    rows = build.load("dev") + build.load("heldout")
    assert len(rows) >= 1000
    assert sum(not r["label"] for r in rows) >= 150
    styles = Counter(r["style"] for r in rows)
    assert set(styles) >= {"boxed", "minerva", "qwen_final", "gsm8k", "bare", "sentence",
                           "inline_paren", "whole"}
    assert min(styles.values()) >= 15
    dev_golds = {r["gold"] for r in build.load("dev")}
    heldout_golds = {r["gold"] for r in build.load("heldout")}
    assert len(heldout_golds - dev_golds) >= 0.8 * len(heldout_golds)  # mostly new answers


@pytest.mark.parametrize("row", build.load("dev"),
                         ids=lambda r: f"{r['kind']}/{r['style']}:{r['gold']}")
def test_development_pair(row):
    assert (verify_math(row["completion"], row["gold"]) == 1.0) is row["label"]


def test_held_out_part_meets_the_bar():
    """At least 99% right with no wrong accept (the issue's bar). A drop here means a rule
    change broke answers it was never shown: fix the rule, never the held-out labels."""
    rows = build.load("heldout")
    verdicts = [verify_math(r["completion"], r["gold"]) == 1.0 for r in rows]
    wrong_accepts = [r for v, r in zip(verdicts, rows) if v and not r["label"]]
    correct = sum(v is r["label"] for v, r in zip(verdicts, rows))
    assert not wrong_accepts
    assert correct / len(rows) >= 0.99
