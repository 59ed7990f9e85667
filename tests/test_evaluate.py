"""evaluate.py: metrics against hand-computed cases, the report, the real entry point."""
import json
import math

import pytest

from hybrid_rl.evaluation.report import ModelReport, markdown_report, win_rate


def test_wilson_interval_by_hand():
    from hybrid_rl.evaluation.heldout import wilson_interval

    # p = 0.5, n = 500: centre 0.5; half-width 1.96 / (1 + 3.8416/500)
    # * sqrt(0.25/500 + 3.8416/(4 * 500^2)) = 1.945055 * 0.0224464 = 0.043659
    low, high = wilson_interval(0.5, 500)
    assert low == pytest.approx(0.456341, abs=1e-6) and high == pytest.approx(0.543659, abs=1e-6)
    # p = 0 on 10 problems: not the empty interval [0, 0] of p +/- 1.96 sqrt(p(1-p)/n)
    low, high = wilson_interval(0.0, 10)
    assert low == 0.0 and high == pytest.approx(0.277540, abs=1e-6)
    assert all(math.isnan(x) for x in wilson_interval(float("nan"), 10))


def test_win_rate_counts_wins_ties_and_losses_by_hand():
    # problems: win, tie, loss, win, tie, unscored by the candidate, unscored by the reference
    result = win_rate([1.0, 0.0, 0.0, 0.7, 1.0, None, 1.0], [0.0, 0.0, 1.0, 0.2, 1.0, 1.0, None])
    assert (result["wins"], result["ties"], result["losses"]) == (2, 2, 1)
    assert result["win_rate"] == pytest.approx((2 + 2 / 2) / 5)
    assert math.isnan(win_rate([None], [1.0])["win_rate"])


def test_markdown_report_puts_models_side_by_side():
    a = ModelReport("step_10", "/a", 0.5, {"correctness": 0.5}, {1: 0.25, 4: 0.75}, 3.0, [3, 3],
                    {"win_rate": 0.6, "wins": 3, "ties": 0, "losses": 2}, preferred_style=0.25)
    b = ModelReport("start", "/b", 0.25, {"correctness": 0.25}, {1: 0.125, 4: 0.5}, 4.5, [4, 5],
                    {"win_rate": 0.5, "wins": 0, "ties": 4, "losses": 0})
    text = markdown_report("math", 4, [a, b], "correctness", "/ref")
    assert "| metric | `step_10` | `start` |" in text
    assert "| greedy accuracy | 0.500 | 0.250 |" in text
    assert "| pass@4 (unbiased, sampled) | 0.750 | 0.500 |" in text
    assert (
        "| win rate vs reference (judged by `correctness`) | 0.600 (3W/0T/2L) | 0.500 (0W/4T/0L) |"
        in text
    )
    assert "| mean completion length (tokens) | 3.0 | 4.5 |" in text
    assert "| share in the rubric's preferred style | 0.250 | n/a |" in text


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from helpers.runs import run_entry

    base = tmp_path_factory.mktemp("evaluate")
    run_entry("train.py", base / "run", "trainer.max_steps=2", "checkpoint.every_steps=1",
              cache=base / "cache")
    return base


def test_evaluate_writes_json_markdown_and_plots_for_two_checkpoints(trained):
    from helpers.runs import run_entry

    out = trained / "eval"
    run_entry("evaluate.py", out, f"evaluate.checkpoint={trained / 'run'}",
              f"evaluate.compare={trained / 'run' / 'checkpoints' / 'step_000001'}",
              "eval.samples_per_prompt=3", "eval.pass_k=[1,3]", cache=trained / "cache")
    results = json.loads((out / "results.json").read_text())
    assert [m["name"] for m in results["models"]] == ["step_000002", "step_000001"]
    assert results["num_problems"] == 8 and results["judge_signal"] == "correctness"
    for model in results["models"]:
        assert (
            0.0 <= model["accuracy"] <= 1.0
            and model["signal_means"]["correctness"] == model["accuracy"]
        )
        assert 0.0 <= model["pass_at_k"]["1"] <= model["pass_at_k"]["3"] <= 1.0
        w = model["win_rate"]
        assert w["wins"] + w["ties"] + w["losses"] == 8
    assert "| metric | `step_000002` | `step_000001` |" in (out / "report.md").read_text()
    assert (out / "metrics.png").stat().st_size > 1000 and (
        out / "lengths.png"
    ).stat().st_size > 1000


def test_evaluate_takes_the_best_checkpoint_by_its_path(trained):
    from helpers.runs import run_entry

    out = trained / "best_eval"
    best = trained / "run" / "checkpoints" / "best"
    run_entry("evaluate.py", out, f"evaluate.checkpoint={best}", "evaluate.reference=null",
              cache=trained / "cache")
    (model,) = json.loads((out / "results.json").read_text())["models"]
    assert model["name"] == "best" and 0.0 <= model["accuracy"] <= 1.0
    assert model["accuracy"] == json.loads((best / "best.json").read_text())["accuracy"]


def test_evaluating_the_reference_against_itself_is_all_ties(trained):
    from helpers.runs import run_entry

    out = trained / "self"
    # no checkpoint: the starting model vs itself
    run_entry("evaluate.py", out, cache=trained / "cache")
    (model,) = json.loads((out / "results.json").read_text())["models"]
    assert (
        model["name"] == "start"
        and model["win_rate"]["ties"] == 8
        and model["win_rate"]["win_rate"] == 0.5
    )
    # evaluate.yaml samples 4 per problem by default
    assert model["pass_at_k"] and "1" in model["pass_at_k"]


def test_bad_paths_and_signals_are_named(trained):
    from helpers.runs import run_entry

    proc = run_entry("evaluate.py", trained / "bad", f"evaluate.checkpoint={trained / 'nowhere'}",
                     cache=trained / "cache", check=False)
    assert (
        proc.returncode != 0 and "is not a model folder" in proc.stderr and "nowhere" in proc.stderr
    )
    proc = run_entry("evaluate.py", trained / "bad2", "evaluate.judge_signal=style",
                     cache=trained / "cache", check=False)
    assert (
        proc.returncode != 0
        and "evaluate.judge_signal: 'style' is not one of the task's signals" in proc.stderr
    )
