"""Experiment trackers beside metrics.jsonl: Weights & Biases and MLflow (`logging.trackers`).

Each run sends its resolved config, every metric the JSONL gets (the same step numbers), the
training-curve plot and a closing summary. A Hydra multirun sweep is one W&B group and one
MLflow experiment (named after the sweep folder); a single run goes to `logging.project`. A
resumed run continues the same tracker run: its id comes from the run folder. Only the main
process logs (like the JSONL). The packages are optional extras: a missing one stops the run at
start with the command that installs it.
"""
from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

RUN_ID_TAG = "hybrid_rl.run_id"  # an MLflow run's tag that finds it again on resume


@dataclass(frozen=True)
class RunIdentity:
    name: str  # the run folder, or in a sweep "<job number>: <overrides>"
    group: Optional[str]  # the sweep folder; None for a single run
    run_id: str  # stable per run folder: a resumed run logs to the same tracker run
    config: dict  # the resolved config (W&B nests it; MLflow gets dotted keys)


def identity(run_dir: Path, config: dict) -> RunIdentity:
    """Who this run is, read from Hydra's runtime config (a plain name outside Hydra)."""
    group, name = None, str(run_dir)
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:
            group = str(Path(hc.sweep.dir))
            swept = swept_keys(Path(hc.sweep.dir))
            chosen = [o for o in hc.overrides.task if o.split("=", 1)[0].lstrip("+~") in swept]
            name = f"{hc.job.num}: {','.join(chosen) or 'job'}"
    except (ImportError, ValueError):  # not under Hydra (a test, a script)
        pass
    run_id = hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]
    return RunIdentity(name, group, run_id, config)


def swept_keys(sweep_dir: Path) -> set[str]:
    """The keys a sweep varies (`trainer.beta=0,0.04`), from the multirun.yaml Hydra writes in
    the sweep folder for every launcher (a SLURM job runs in a process of its own)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return set()
    overrides = OmegaConf.load(path).hydra.overrides.task
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return {o.key_or_group for o in parsed if o.is_sweep_override()}


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def numbers(metrics: dict) -> dict[str, float]:
    """The finite numbers of a metrics row (None, NaN, strings are the JSONL's alone)."""
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def _import(name: str):
    try:
        return __import__(name)
    except ImportError as exc:
        raise ImportError(f"logging.trackers names {name}, which is not installed: "
                          f"pip install -e '.[{name}]' (or pip install {name})") from exc


class WandbTracker:
    def __init__(self, who: RunIdentity, run_dir: Path, project: str, mode: Optional[str]):
        wandb = _import("wandb")
        self.run = wandb.init(project=project, group=who.group, name=who.name, id=who.run_id,
                              dir=str(run_dir), config=who.config, resume="allow", mode=mode,
                              reinit="create_new")

    def log(self, step: int, metrics: dict) -> None:
        self.run.log(numbers(metrics), step=step)

    def finish(self, plot: Optional[Path], summary: dict) -> None:
        if plot is not None and Path(plot).is_file():
            self.run.save(str(plot), base_path=str(Path(plot).parent), policy="now")
        self.run.summary.update(summary)
        self.run.finish()


class MlflowTracker:
    def __init__(self, who: RunIdentity, run_dir: Path, project: str, uri: Optional[str]):
        _import("mlflow")
        from mlflow.tracking import MlflowClient

        uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or f"file:{Path('mlruns').resolve()}"
        if uri.startswith("file:"):  # MLflow 3 keeps its file store behind this switch
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(uri)
        name = who.group or project
        experiment = self._experiment(name)
        previous = self.client.search_runs([experiment],
                                           f"tags.`{RUN_ID_TAG}` = '{who.run_id}'")
        if previous:  # a resumed run
            self.run_id = previous[0].info.run_id
        else:
            self.run_id = self.client.create_run(
                experiment, run_name=who.name, tags={RUN_ID_TAG: who.run_id,
                                                     "hybrid_rl.run_dir": str(run_dir)}
            ).info.run_id
            self._params(flatten(who.config))

    def _experiment(self, name: str) -> str:
        """The experiment's id, created if missing. A sweep's jobs start at once and race to
        create it: the loser reads the winner's."""
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name)
        except MlflowException:
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def _params(self, config: dict) -> None:
        from mlflow.entities import Param

        params = [Param(k, str(v)[:6000]) for k, v in config.items()]
        for start in range(0, len(params), 100):  # MLflow's batch limit
            self.client.log_batch(self.run_id, params=params[start : start + 100])

    def log(self, step: int, metrics: dict) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        rows = [Metric(k, v, now, step) for k, v in numbers(metrics).items()]
        for start in range(0, len(rows), 1000):
            self.client.log_batch(self.run_id, metrics=rows[start : start + 1000])

    def finish(self, plot: Optional[Path], summary: dict) -> None:
        if plot is not None and Path(plot).is_file():
            self.client.log_artifact(self.run_id, str(plot))
        for key, value in summary.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and math.isfinite(value):
                self.client.log_metric(self.run_id, f"summary/{key}", float(value))
            else:
                self.client.set_tag(self.run_id, f"summary/{key}", str(value))
        self.client.set_terminated(self.run_id)


def open_trackers(settings, run_dir: Path, config: dict) -> list:
    """The trackers `settings` (the logging section) names, started for this run."""
    who = identity(run_dir, config)
    made = []
    for name in settings.trackers:
        if name == "wandb":
            made.append(WandbTracker(who, run_dir, settings.project, settings.wandb_mode))
        else:
            made.append(MlflowTracker(who, run_dir, settings.project, settings.mlflow_uri))
    return made
