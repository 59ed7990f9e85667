"""Task mixtures: prompts drawn by share, per-task completion limits and metrics, the config's
bad input named, and the real train.py on the default mixture (per-task metrics, evaluations,
plot, and a SIGKILL resume that reproduces the uninterrupted run)."""
import json
import random
from collections import Counter

import pytest
import torch
from helpers.runs import (
    TINY_OVERRIDES,
    config_error,
    killed_and_resumed,
    read_jsonl,
    rows_without_timing,
    run_entry,
)

from hybrid_rl.data.mixture import MixedPromptStream, quotas
from hybrid_rl.data.samples import DataError, PromptStream, Sample
from hybrid_rl.rollout import RolloutBatch, generate_by_limit
from hybrid_rl.rollout.scored_groups import SampledRollout, ScoredRollout, task_metrics
from hybrid_rl.tasks.explain import STYLES, explain

TASKS = ("math", "explain_hybrid", "explain")


def samples(task, n):
    return [Sample(f"{task}-{i}", str(i), task) for i in range(n)]


def mixed(seed=0, shares=None, sizes=(50, 30, 20)):
    shares = shares or {"math": 0.5, "explain_hybrid": 0.25, "explain": 0.25}
    return MixedPromptStream({t: samples(t, n) for t, n in zip(TASKS, sizes)}, shares, seed)


# ----------------------------------------------------------------- shares ----
def test_quotas_by_hand():
    rng = random.Random(0)
    assert quotas([0.5, 0.25, 0.25], [0, 0, 0], 4, rng) == [2, 1, 1]
    assert quotas([0.5, 0.25, 0.25], [2, 1, 1], 8, rng) == [4, 2, 2]
    # 3 of 4 slots at 2:1 shares: floors 2 and 1 of the 4 drawn by the end, one already given
    assert quotas([2.0, 1.0], [1, 0], 3, rng) == [2, 1]
    assert quotas([1.0, 0.0], [0, 0], 5, rng) == [5, 0]
    # a task already 2 ahead gets none, and the others' floors (2 each) are trimmed to the 2
    # slots there are, never by taking from the task that has none
    assert quotas([1.0, 1.0, 1.0], [4, 0, 0], 2, rng) == [0, 1, 1]


@pytest.mark.parametrize("shares", [[0.5, 0.25, 0.25], [0.7, 0.2, 0.1], [3.0, 0.0, 1.0]])
def test_every_task_stays_within_one_prompt_of_its_share(shares):
    rng, drawn = random.Random(1), [0, 0, 0]
    for n in [1, 3, 8, 5, 2, 16, 7] * 5:
        for i, q in enumerate(quotas(shares, drawn, n, rng)):
            drawn[i] += q
        total = sum(drawn)
        for share, d in zip(shares, drawn):
            assert abs(d - share / sum(shares) * total) < 1.0 + 1e-9, (drawn, total)


def test_the_stream_draws_by_share_and_is_a_function_of_the_seed():
    a, b, c = mixed(0), mixed(0), mixed(1)
    draws_a = [[s.prompt for s in a.next(8)] for _ in range(10)]
    assert draws_a == [[s.prompt for s in b.next(8)] for _ in range(10)]
    assert draws_a != [[s.prompt for s in c.next(8)] for _ in range(10)]
    counts = Counter(p.split("-")[0] for draw in draws_a for p in draw)
    assert counts == {"math": 40, "explain_hybrid": 20, "explain": 20}
    assert all(len({p.split("-")[0] for p in draw}) == 3 for draw in draws_a)  # mixed per step
    # each task walks its own data: after 40 math prompts of 50, no repeat within the epoch
    math_prompts = [p for draw in draws_a for p in draw if p.startswith("math")]
    assert len(set(math_prompts)) == 40


def test_resume_continues_the_mixture_exactly():
    straight = mixed(3)
    for _ in range(7):
        straight.next(4)
    state = json.loads(json.dumps(straight.state_dict()))  # what a checkpoint stores
    resumed = mixed(3)
    resumed.load_state_dict(state)
    assert [s.prompt for s in resumed.next(12)] == [s.prompt for s in straight.next(12)]


@pytest.mark.parametrize("change", ["shares", "seed", "data"])
def test_resume_refuses_another_mixture(change):
    state = mixed(0).state_dict()
    other = {"shares": lambda: mixed(0, {"math": 0.6, "explain_hybrid": 0.2, "explain": 0.2}),
             "seed": lambda: mixed(1), "data": lambda: mixed(0, sizes=(50, 30, 21))}[change]()
    with pytest.raises(DataError, match="other task data, other shares or another seed"):
        other.load_state_dict(state)


def test_a_single_task_checkpoint_does_not_resume_a_mixture_or_back():
    single = PromptStream(samples("math", 50), 0)
    with pytest.raises(DataError, match="this run mixes"):
        mixed(0).load_state_dict(single.state_dict())
    with pytest.raises(DataError):
        single.load_state_dict(mixed(0).state_dict())


# ------------------------------------------------------------ rollouts ----
class RecordingRollout:
    """Completions of `max_new_tokens` tokens that say which prompt and limit made them."""

    max_new_tokens = 4

    def __init__(self):
        self.calls = []

    def generate(self, prompts, n, greedy=False):
        self.calls.append((list(prompts), self.max_new_tokens))
        T, N = self.max_new_tokens, len(prompts) * n
        return RolloutBatch(torch.ones(N, 2, dtype=torch.long), torch.ones(N, 2, dtype=torch.long),
                            torch.ones(N, T, dtype=torch.long), torch.ones(N, T, dtype=torch.long),
                            torch.zeros(N, T), torch.ones(N, dtype=torch.bool),
                            [f"{p}/{T}" for p in prompts for _ in range(n)])


def test_each_completion_limit_gets_a_call_of_its_own_and_groups_stay_whole():
    rollout = RecordingRollout()
    prompts = [Sample("m1", "1", "math"), Sample("e1", "1", "explain"), Sample("m2", "2", "math"),
               Sample("e2", "2", "explain")]
    order, batch = generate_by_limit(rollout, prompts, 2, {"math": None, "explain": 9}, 0)
    assert [s.prompt for s in order] == ["m1", "m2", "e1", "e2"]
    assert rollout.calls == [(["m1", "m2"], 4), (["e1", "e2"], 9)]
    assert batch.texts == ["m1/4", "m1/4", "m2/4", "m2/4", "e1/9", "e1/9", "e2/9", "e2/9"]
    assert batch.completion_ids.shape == (8, 9) and batch.completion_mask[:4, 4:].sum() == 0
    assert rollout.max_new_tokens == 4  # restored after the call


def test_one_limit_keeps_the_order_and_makes_one_call():
    rollout = RecordingRollout()
    prompts = [Sample("b", "1", "math"), Sample("a", "1", "math")]
    order, _ = generate_by_limit(rollout, prompts, 3, {}, 0)
    assert [s.prompt for s in order] == ["b", "a"] and len(rollout.calls) == 1


def test_task_metrics_by_hand():
    # groups of 2: math (1, 0) and (1, 1); explain (0.5 and 0.2 preference, correctness logged)
    sampled = SampledRollout(
        {"correctness": [1.0, 0.0, 1.0, 1.0, 1.0, 0.0], "preference": [None] * 4 + [0.5, 0.2]},
        torch.tensor([1.0, 0.0, 1.0, 1.0, 0.5, 0.2]), {}, torch.ones(6), torch.zeros(6, dtype=bool),
        tasks=["math"] * 4 + ["explain"] * 2)
    scored = ScoredRollout([], None, {}, torch.zeros(0), {}, {}, {}, 0.0, sampled=sampled)
    m = task_metrics(scored, {"math": "correctness", "explain": "correctness"}, 2)
    assert m["task/math/reward"] == pytest.approx(0.75)
    assert m["task/math/accuracy"] == pytest.approx(0.75)
    assert m["task/math/all_equal_fraction"] == pytest.approx(0.5)
    assert m["task/math/share"] == pytest.approx(4 / 6)
    assert "task/math/preference" not in m
    assert m["task/explain/preference"] == pytest.approx(0.35)
    assert m["task/explain/accuracy"] == pytest.approx(0.5)
    assert m["task/explain/all_equal_fraction"] == 0.0
    assert m["accuracy"] == pytest.approx(4 / 6)  # pooled over every completion


# ------------------------------------------------------------ the task ----
def test_explain_demonstrations_vary_in_style_and_are_all_right():
    from hybrid_rl.rewards.learned.rubric import rubric_score
    from verifiers.math import math_verifier

    rows = explain(600, 5)
    styles = Counter(meta["style"] for _, _, _, meta in rows)
    assert set(styles) == set(STYLES) and min(styles.values()) > 60
    assert math_verifier([d for _, _, d, _ in rows], [a for _, a, _, _ in rows]) == [1.0] * 600
    scores = {meta["style"]: rubric_score(d, "answer") for _, _, d, meta in rows}
    assert scores["working"] > scores["marked"] > scores["rambling"]  # something to choose
    assert {p for p, _, _, _ in explain(5, 5)} == {p for p, _, _, _ in explain(5, 5, styles="bare")}
    assert explain(1, 5, verb="Show")[0][0].startswith("Show ")
    with pytest.raises(DataError, match="styles must be some of"):
        explain(1, 5, styles="poetic")


# ------------------------------------------------------------- configs ----
MIX_TINY = [o for o in TINY_OVERRIDES if not o.startswith("task.")] + [
    "mix=reasoning_and_style", *[f"mix.tasks.{t}.data.num_train=64" for t in TASKS],
    *[f"mix.tasks.{t}.data.num_eval=8" for t in TASKS],
    "mix.tasks.explain.max_new_tokens=6", "mix.tasks.explain_hybrid.max_new_tokens=6",
    "reward_model.max_steps=2", "reward_model.batch_size=4", "reward_model.data.num_prompts=8",
    "reward_model.max_length=48", "trainer.max_steps=4", "logging.tensorboard=false",
]


def train(run_dir, *extra, cache, check=True):
    return run_entry("train.py", run_dir, *MIX_TINY, *extra, cache=cache, check=check)


@pytest.mark.parametrize("override, named", [
    (["mix.tasks.math.share=0", "mix.tasks.explain.share=0", "mix.tasks.explain_hybrid.share=0"],
     "mix.tasks: the shares"),
    (["mix.tasks.explain.share=-1"], "mix.tasks.explain.share: must be a number >= 0"),
    (["mix.tasks.explain_hybrid.rewards.preference.gate=style"],
     "mix.tasks.explain_hybrid.rewards.preference.gate: must name another signal"),
])
def test_bad_mixture_settings_are_named(override, named):
    assert named in config_error("config", *MIX_TINY, *override)


@pytest.mark.parametrize("override, named", [  # found when the run builds its parts
    (["mix.tasks.math.rewards.correctness.verifier=no_such_verifier"],
     "mix.tasks.math.rewards.correctness.verifier"),
    (["mix.tasks.explain.max_new_tokens=300"],
     "mix.tasks.explain.max_new_tokens=300 does not fit the model's context of 256"),
])
def test_bad_mixtures_are_named(tmp_path, override, named):
    proc = train(tmp_path / "run", *override, cache=tmp_path / "cache", check=False)
    assert proc.returncode != 0
    assert named in proc.stdout + proc.stderr


def test_an_unknown_task_in_a_mixture_file_is_named(tmp_path):
    (tmp_path / "mix").mkdir()
    (tmp_path / "mix" / "mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - /task@mix.tasks.math: math\n"
        "  - /task@mix.tasks.poetry: no_such_task\n  - _self_\n")
    proc = run_entry("train.py", tmp_path / "run", f"hydra.searchpath=[file://{tmp_path}]",
                     "mix=mine", cache=tmp_path / "cache", check=False)
    assert proc.returncode != 0 and "no_such_task" in proc.stderr


@pytest.mark.slow
def test_the_default_mixture_trains_with_per_task_metrics_evaluations_and_plot(tmp_path):
    # Every completion scored by the gated preference too, so each step logs it (by default
    # it scores what passed its gate and a quarter of the groups: tests/test_rewards.py).
    proc = train(tmp_path / "run", "reward.gate_failures_scored=1", cache=tmp_path / "cache")
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    for r in steps:  # 4 prompts a step: 2 math, 1 of each explain task
        assert r["task/math/share"] == 0.5 and r["task/explain/share"] == 0.25
        assert {"task/explain/preference", "task/explain/correctness",
                "task/explain_hybrid/preference", "task/math/all_equal_fraction"} <= set(r)
        assert "task/math/preference" not in r
    evals = [r for r in rows if "eval/accuracy" in r]
    assert [r["step"] for r in evals] == [0, 1, 2, 3, 4]
    for r in evals:
        per_task = [r[f"eval/{t}/accuracy"] for t in TASKS]
        assert r["eval/accuracy"] == pytest.approx(sum(per_task) / 3)  # 8 problems each
        assert "eval/explain/reward/preference" in r
    assert (tmp_path / "run" / "training_curves.png").stat().st_size > 10_000
    out = proc.stdout + proc.stderr
    assert "explain held-out accuracy" in out and "explain_hybrid held-out accuracy" in out
    assert "Next: python evaluate.py mix=reasoning_and_style model=tiny evaluate.checkpoint=" in out
    # evaluate.py on the mixture: one report per task, each judged by its own signals
    from dataclasses import fields

    from hybrid_rl.config.schema import EvaluateRecipeConfig

    sections = {f.name for f in fields(EvaluateRecipeConfig)}
    run_entry("evaluate.py", tmp_path / "eval", f"evaluate.checkpoint={tmp_path / 'run'}",
              "eval.samples_per_prompt=0",
              *[o for o in MIX_TINY if o.split("=")[0].split(".")[0] in sections],
              cache=tmp_path / "cache")
    judges = {"math": "correctness", "explain": "preference", "explain_hybrid": "preference"}
    for task, judge in judges.items():
        result = json.loads((tmp_path / "eval" / task / "results.json").read_text())
        assert result["task"] == task and result["judge_signal"] == judge
        (model,) = result["models"]
        assert model["name"] == "step_000004" and sum(
            model["win_rate"][k] for k in ("wins", "ties", "losses")) == 8
        assert 0.0 <= model["preferred_style"] <= 1.0
        assert model["accuracy"] == model["signal_means"]["correctness"]
        assert (tmp_path / "eval" / task / "report.md").is_file()


@pytest.mark.slow
def test_sigkill_resume_of_a_mixture_run_matches_the_uninterrupted_run(tmp_path):
    extra = ["trainer.max_steps=6", "checkpoint.every_steps=2", "checkpoint.keep_last=5",
             "eval.every_steps=0", "logging.samples_every_steps=0"]
    train(tmp_path / "whole", *extra, cache=tmp_path / "cache")  # also fills the caches
    resumed = killed_and_resumed("train.py", tmp_path / "killed", *MIX_TINY, *extra,
                                 cache=tmp_path / "cache", kill_at_step=2, total_steps=6)
    assert resumed == rows_without_timing(tmp_path / "whole")
