"""Run outputs: metrics.jsonl, TensorBoard events, samples.jsonl and the final plot."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Optional, Sequence

METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.jsonl"
PLOT_FILE = "training_curves.png"


def _truncate_after(path: Path, step: int) -> None:
    """Drop lines logged after `step`: a resumed run re-logs them, so no step appears twice."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError):  # a line torn by a kill mid-write
            continue
    path.write_text("".join(line + "\n" for line in kept))


class MetricsWriter:
    def __init__(self, run_dir: Path, tensorboard: bool = True, resume_step: Optional[int] = None,
                 enabled: bool = True, trackers: Sequence = ()):
        self.run_dir, self.enabled = Path(run_dir), enabled  # disabled: processes other than rank 0
        self._tb = None
        self.trackers = list(trackers)  # hybrid_rl/runtime/trackers.py: W&B, MLflow
        if not enabled:
            return
        self.metrics_path = self.run_dir / METRICS_FILE
        self.samples_path = self.run_dir / SAMPLES_FILE
        if resume_step is not None:
            _truncate_after(self.metrics_path, resume_step)
            _truncate_after(self.samples_path, resume_step)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"),
                                     purge_step=resume_step)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k,
                 v in metrics.items()}
        with open(self.metrics_path, "a") as fh:
            fh.write(json.dumps({"step": step, "time": round(time.time(), 3), **clean}) + "\n")
        if self._tb is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(key, value, step)
        for tracker in self.trackers:
            tracker.log(step, metrics)

    def log_samples(self, step: int, rows: list[dict[str, Any]]) -> None:
        if not self.enabled:
            return
        with open(self.samples_path, "a") as fh:
            for row in rows:
                fh.write(json.dumps({"step": step, **row}) + "\n")

    def close(self, plot: Optional[Path] = None, summary: Optional[dict] = None) -> None:
        """Flush and close; the trackers also get the plot and the run's closing figures."""
        if self._tb is not None:
            self._tb.close()
        for tracker in self.trackers:
            tracker.finish(plot, summary or {})


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_FILE
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line]
        if path.is_file()
        else []
    )


def task_curves(rows: list[dict[str, Any]], pattern: str) -> dict[str, str]:
    """{task: metric key} for the per-task keys of a mixture run ("eval/{}/accuracy")."""
    head, tail = pattern.split("{}")
    names = {k[len(head):-len(tail)] for r in rows for k in r
             if k.startswith(head) and k.endswith(tail) and len(k) > len(head) + len(tail)}
    return {n: pattern.format(n) for n in sorted(names) if "/" not in n}


def plot_training(run_dir: Path, reward_key: str = "reward/total/mean",
                  accuracy_key: str = "eval/accuracy") -> Path:
    """PNG of the training reward and the held-out accuracy over steps; a mixture run also
    gets one curve per task in each panel."""
    import matplotlib

    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    fig, (ax_r, ax_a) = plt.subplots(1, 2, figsize=(11, 4))
    panels = ((ax_r, reward_key, "training reward (mean)", task_curves(rows, "task/{}/reward")),
              (ax_a, accuracy_key, "held-out accuracy", task_curves(rows, "eval/{}/accuracy")))
    for ax, key, title, per_task in panels:
        _curve(ax, rows, key, "all tasks" if per_task else None, smooth_color="C1")
        for i, (task, task_key) in enumerate(per_task.items()):
            _curve(ax, rows, task_key, task, smooth_color=f"C{i + 2}", raw=False)
        if per_task or ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right", fontsize=8)
        ax.set_title(title)
        ax.set_xlabel("GRPO step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(run_dir) / PLOT_FILE
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _curve(ax, rows, key: str, label, smooth_color: str, raw: bool = True) -> None:
    """One metric over steps; a long noisy one (per-step rewards) as a moving average, drawn
    over the faint raw points when `raw`."""
    points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    if not points:
        return
    xs, ys = zip(*points)
    if len(xs) < 30:
        ax.plot(xs, ys, marker="o", label=label, color=None if raw else smooth_color)
        return
    if raw:
        ax.plot(xs, ys, alpha=0.35)
    w = max(5, len(xs) // 30)
    smooth = [sum(ys[max(0, i - w + 1) : i + 1]) / len(ys[max(0, i - w + 1) : i + 1])
              for i in range(len(ys))]
    name = f"{label}, " if label else ""
    ax.plot(xs, smooth, color=smooth_color, label=f"{name}moving average ({w} steps)")
