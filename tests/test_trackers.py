"""logging.trackers: W&B (offline) and MLflow (a file store) get the config, every metric the
JSONL has, the plot and the closing summary; a sweep is one W&B group and one MLflow
experiment; a tracker that is unknown or not installed is refused at start. The sweep runs
through Hydra's submitit launcher on this machine (hydra/launcher=local, the README's way to
try a cluster sweep first): each point is a process of its own, as a SLURM job is."""
import importlib.util
import os
import subprocess
import sys

import pytest
from helpers.runs import ROOT, TINY_OVERRIDES, read_jsonl
from helpers.wandb_records import read_run

from hybrid_rl.config.run import LoggingConfig
from hybrid_rl.runtime.trackers import numbers

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("wandb") is None or importlib.util.find_spec("mlflow") is None,
    reason="wandb and mlflow-skinny are in the dev set-up (bash scripts/setup.sh --dev)")


def test_a_sweep_sends_every_metric_to_wandb_and_mlflow_grouped_as_one(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # to read it here too
    sweep, store = tmp_path / "sweep", f"file:{tmp_path / 'mlruns'}"
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", "hydra/launcher=local", *TINY_OVERRIDES,
           "trainer.beta=0,0.04",
           "trainer.max_steps=2", "logging.tensorboard=false", "logging.trackers=[wandb,mlflow]",
           "logging.wandb_mode=offline", f"logging.mlflow_uri={store}",
           f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HYBRID_RL_CACHE": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(store)
    [experiment] = [e for e in client.search_experiments() if e.name == str(sweep)]
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["0: trainer.beta=0", "1: trainer.beta=0.04"]
    for job in ("0", "1"):
        jsonl = read_jsonl(sweep / job / "metrics.jsonl")
        [wandb_file] = (sweep / job / "wandb").glob("offline-run-*/run-*.wandb")
        wandb = read_run(wandb_file)
        assert wandb["run"].run_group == str(sweep) and wandb["run"].display_name.startswith(job)
        history = {row["_step"]: row for row in wandb["history"]}
        mlflow = runs[f"{job}: trainer.beta={'0' if job == '0' else '0.04'}"]
        for row in jsonl:  # every number of every row, at its step, in both
            for key, value in numbers(row).items():
                if key in ("step", "time"):
                    continue
                assert history[row["step"]][key] == pytest.approx(value), (job, key)
                points = {m.step: m.value for m in client.get_metric_history(
                    mlflow.info.run_id, key)}
                assert points[row["step"]] == pytest.approx(value), (job, key)
        beta = 0.0 if job == "0" else 0.04
        assert wandb["config"]["trainer"]["beta"] == beta
        assert float(mlflow.data.params["trainer.beta"]) == beta
        final = [r for r in jsonl if "eval/accuracy" in r][-1]["eval/accuracy"]
        assert wandb["summary"]["accuracy/final"] == pytest.approx(final)
        assert mlflow.data.metrics["summary/accuracy/final"] == pytest.approx(final)
        assert "training_curves.png" in wandb["files"]
        assert [a.path for a in client.list_artifacts(mlflow.info.run_id)] == \
            ["training_curves.png"]
    # submitit's own records: each point ran as its own submitted job
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 2


def test_an_unknown_or_missing_tracker_is_named(monkeypatch):
    assert "trackers: must be one of" in " ".join(LoggingConfig(trackers=["neptune"]).problems())
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else real(name, *a))
    [problem] = LoggingConfig(trackers=["wandb"]).problems()
    assert "wandb is not installed: pip install -e '.[wandb]'" in problem


def test_two_sweep_jobs_racing_to_create_the_experiment_share_it(tmp_path, monkeypatch):
    """A sweep's jobs start at once: the one whose create_experiment loses the race (MLflow:
    'already exists') uses the winner's experiment instead of failing its job."""
    from mlflow.tracking import MlflowClient

    from hybrid_rl.runtime.trackers import MlflowTracker

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = f"file:{tmp_path / 'mlruns'}"
    winner = MlflowClient(uri).create_experiment("sweep")
    loser = MlflowTracker.__new__(MlflowTracker)
    loser.client = MlflowClient(uri)
    looked = []
    real = loser.client.get_experiment_by_name

    def get(name):  # the loser's first look came before the winner created it
        looked.append(name)
        return real(name) if len(looked) > 1 else None

    loser.client.get_experiment_by_name = get
    assert loser._experiment("sweep") == winner and len(looked) == 2
