"""What a training run reports of its held-out evaluations: the pooled accuracy of a mixture,
the metric names of one evaluation, a step's closing figures, and the run's last line (with
what to run next)."""
from __future__ import annotations

import math
import time

from hybrid_rl.evaluation.heldout import wilson_interval
from hybrid_rl.runtime.checkpoint import BEST


def pooled(results) -> tuple[float, int]:
    """(accuracy over every problem scored, how many): one task's own figure as it is."""
    results = list(results)
    if len(results) == 1:
        return results[0].accuracy, results[0].num_scored
    scored = sum(r.num_scored for r in results)
    correct = sum(r.accuracy * r.num_scored for r in results if r.num_scored)
    return (correct / scored if scored else math.nan), scored


def eval_metrics(prefix: str, res) -> dict[str, float]:
    low, high = wilson_interval(res.accuracy, res.num_scored)
    return {f"{prefix}/accuracy": res.accuracy, f"{prefix}/accuracy_ci95_low": low,
            f"{prefix}/accuracy_ci95_high": high, f"{prefix}/mean_length": res.mean_length,
            **{f"{prefix}/reward/{name}": v for name, v in res.signal_means.items()}}


def summary(run, final: float, plot, wall_s: float) -> str:
    """The run's last line: start, best and final accuracy with intervals and steps, time, where
    the plot and the best checkpoint are, and what to run next."""
    n = run.eval_problems

    def figure(accuracy) -> str:
        if accuracy is None or math.isnan(accuracy):
            return "n/a"
        low, high = wilson_interval(accuracy, n)
        return f"{accuracy:.3f} [{low:.3f}, {high:.3f}]"

    best = (f" -> best {figure(run.best['accuracy'])} at step {run.best['step']}"
            if run.best else "")
    line = (f"held-out accuracy: start {figure(run.start_accuracy)}{best} -> final "
            f"{figure(final)} after {run.step} steps ({n} problems, 95% intervals); "
            f"{wall_s:.0f} s in this process ({run.elapsed:.0f} s of training steps); plot {plot}")
    if run.best and run.cfg.checkpoint.keep_best:
        where = run.run_dir / "checkpoints" / BEST
        line += (f"; best checkpoint {where}. Next: python evaluate.py {selection()}"
                 f"evaluate.checkpoint={where}")
    return line


def closing_summary(run, final: float) -> dict:
    """The run's closing figures for the experiment trackers (their summary)."""
    best = run.best or {}
    return {"accuracy/start": run.start_accuracy, "accuracy/best": best.get("accuracy"),
            "accuracy/best_step": best.get("step"), "accuracy/final": final, "steps": run.step,
            "training_s": run.elapsed, "eval_problems": run.eval_problems,
            "stop_reason": run.stop_reason or "finished"}


def selection() -> str:
    """The task (or mixture), model and preset this run was started with, as evaluate.py takes
    them ("" outside a Hydra command)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return ""
    choices = HydraConfig.get().runtime.choices
    picked = ([f"mix={choices['mix']}"] if choices.get("mix", "none") != "none"
              else [f"task={choices.get('task')}"])
    preset = choices.get("preset", "none")  # a preset picks its model itself
    picked.append(f"preset={preset}" if preset != "none" else f"model={choices.get('model')}")
    return " ".join(picked) + " "


def closing_figures(run, m: dict, start: float, sampled: float) -> dict:
    """A recipe step's last figures (learning rate, where its time went), its seconds added to
    the run's training time; returns `m` with them."""
    now = time.time()
    m.update({"lr": run.scheduler.get_last_lr()[0], "time/step_s": now - start,
              "time/rollout_s": sampled - start, "time/update_s": now - sampled})
    run.elapsed += now - start
    return m
