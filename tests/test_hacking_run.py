"""A constructed run in which the proxy climbs while verified accuracy falls: the watch must
warn, log the alarm and, with stop=true, end training early with a checkpoint."""
import pytest
from helpers.runs import ROOT, read_jsonl, run_entry


@pytest.mark.slow
def test_watch_stops_a_run_that_games_its_proxy(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_entry(
        "train.py", run_dir,
        "task.rewards.correctness.verifier={_target_:watch_helpers.no_seven}",
        "task.rewards.correctness.weight=0",
        "+task.rewards.proxy={verifier:{_target_:watch_helpers.contains_seven},weight:1.0}",
        "reward.hacking_watch.proxy_signal=proxy",
        "reward.hacking_watch.stop=true", "trainer.max_steps=40", "trainer.learning_rate=0.01",
        "trainer.prompts_per_step=8", "trainer.num_generations=4", "checkpoint.every_steps=0",
        "task.data.num_eval=64",
        cache=tmp_path / "cache", env={"PYTHONPATH": str(ROOT / "tests" / "helpers")},
    )
    out = proc.stdout + proc.stderr
    assert "possible reward hacking" in out and "stopped early" in out
    rows = read_jsonl(run_dir / "metrics.jsonl")
    alarm = [r["step"] for r in rows if r.get("hacking/alarm")]
    trained = [r["step"] for r in rows if "loss" in r]
    assert alarm and max(trained) == alarm[0] < 40  # stopped at the evaluation that raised it
    evals = [r for r in rows if "eval/accuracy" in r]
    assert evals[-1]["eval/reward/proxy"] > evals[0]["eval/reward/proxy"]
    assert evals[-1]["eval/accuracy"] < evals[0]["eval/accuracy"]
    assert list((run_dir / "checkpoints").glob("step_*"))  # the final checkpoint is still written
