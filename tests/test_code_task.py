"""The code task's data: the function-writing generator, the HumanEval format, pass@k."""
import math
from itertools import combinations

import pytest

from hybrid_rl.data.samples import DataError
from hybrid_rl.evaluation.heldout import pass_at_k
from hybrid_rl.tasks.functions import functions
from hybrid_rl.tasks.humaneval import humaneval_row


def test_generator_is_deterministic_and_shows_examples_that_fit_the_tests():
    rows = functions(20, seed=7)
    assert rows == functions(20, seed=7) and rows != functions(20, seed=8)
    problem, tests, demo, meta = rows[0]
    assert problem.startswith("# f(") and problem.endswith("def f(x):\n    return ")
    f = eval("lambda x: " + demo)
    for shown in problem.splitlines()[0][2:].split(", "):
        arg, value = shown[2:].split(")=")
        assert f(int(arg)) == int(value)
    exec(tests, {"f": f})  # the hidden tests agree with the rule
    assert meta == {"entry_point": "f", "program_prefix": "def f(x):\n    return "}


def test_generator_rejects_unknown_families():
    with pytest.raises(DataError, match="unknown families.*known"):
        functions(1, seed=0, families="add,div")


def test_humaneval_row_keeps_the_prompt_as_trusted_context():
    row = {"task_id": "T/0", "prompt": "def g(x):\n    '''doc'''\n", "entry_point": "g",
           "canonical_solution": "    return x\n", "test": "def check(c):\n    assert c(1) == 1\n"}
    prompt, tests, demo, meta = humaneval_row(row, "file.jsonl")
    assert tests.endswith("check(g)\n") and demo == "    return x\n"
    assert meta["context"] == row["prompt"] == meta["program_prefix"] and meta["entry_point"] == "g"
    with pytest.raises(ValueError, match="entry_point"):
        humaneval_row(dict(row, entry_point=""), "file.jsonl")


@pytest.mark.parametrize("n, c, k", [(5, 0, 1), (5, 2, 1), (5, 2, 2), (10, 3, 5), (4, 4, 2), (20, 1,
                                                                                              20)])
def test_pass_at_k_matches_its_closed_form_and_enumeration(n, c, k):
    closed = 1 - math.comb(n - c, k) / math.comb(n, k)
    # by enumeration: share of k-subsets of the n samples that contain at least one pass
    subsets = list(combinations([True] * c + [False] * (n - c), k))
    assert (
        pass_at_k(n, c, k)
        == pytest.approx(closed)
        == pytest.approx(sum(any(s) for s in subsets) / len(subsets))
    )


def test_pass_at_1_is_the_pass_rate():
    assert pass_at_k(8, 3, 1) == pytest.approx(3 / 8)
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


# ------------------------------------------------------- the real entry point ----
def test_train_py_task_code_runs_with_sandboxed_rewards_and_pass_at_k(tmp_path):
    from helpers.runs import read_jsonl, run_entry

    run_dir = tmp_path / "run"
    proc = run_entry(
        "train.py", run_dir, "task=code", "trainer.max_steps=2", "rollout.max_new_tokens=6",
        "eval.samples_per_prompt=3", "eval.pass_k=[1,3]", "sandbox.workers=1",
        cache=tmp_path / "cache",
    )
    rows = read_jsonl(run_dir / "metrics.jsonl")
    train_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_rows] == [1, 2]
    for key in ("reward/correctness/mean", "reward/correctness/errors",
                "reward/correctness/timeouts"):
        assert key in train_rows[0]
    evals = [r for r in rows if "eval/pass@3" in r]
    assert len(evals) == 3 and all(
        0.0 <= r["eval/pass@1"] <= r["eval/pass@3"] <= 1.0 for r in evals
    )
    assert "held-out accuracy: start" in proc.stderr + proc.stdout


def test_train_py_task_humaneval_wires_the_packaged_problems(tmp_path):
    from helpers.runs import read_jsonl, run_entry

    run_dir = tmp_path / "run"
    run_entry(
        "train.py", run_dir, "task=humaneval", "trainer.max_steps=1", "rollout.max_new_tokens=4",
        "model.tiny.max_position_embeddings=2048", "task.data.num_train=4", "task.data.num_eval=2",
        "sandbox.workers=1", cache=tmp_path / "cache",
    )
    rows = read_jsonl(run_dir / "metrics.jsonl")
    # scored (not NaN): 4 characters solve nothing
    assert [r["reward/correctness/mean"] for r in rows if "loss" in r] == [0.0]
    assert [r["eval/accuracy"] for r in rows if "eval/accuracy" in r] == [0.0, 0.0]


def test_code_run_without_isolation_says_so_in_the_log_and_the_metrics_at_every_start(tmp_path):
    from helpers.runs import read_jsonl, run_entry

    run_dir = tmp_path / "run"
    common = ["task=code", "rollout.max_new_tokens=4", "sandbox.workers=1",
              "sandbox.backend=unsafe_local", "eval.every_steps=0", "eval.at_start=false",
              "task.data.num_eval=2"]
    run_entry("train.py", run_dir, *common, "trainer.max_steps=1", "checkpoint.every_steps=1",
              cache=tmp_path / "cache")
    run_entry("train.py", run_dir, *common, "trainer.max_steps=2", "checkpoint.resume=auto",
              cache=tmp_path / "cache")
    rows = read_jsonl(run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows if "sandbox/unsafe" in r] == [0, 1]  # fresh start, resume
    assert all(r["sandbox/unsafe"] == 1.0 for r in rows if "sandbox/unsafe" in r)
    log_text = "".join(p.read_text() for p in run_dir.glob("*.log"))
    assert log_text.count("run model-written code WITHOUT isolation") == 2
