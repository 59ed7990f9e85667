"""The GRPO loop's two reward-hacking watches (README "Reward-hacking watch", "Ensembles and
uncertainty"), built per task and fed by the loop:
- HackingWatch, at each held-out evaluation: the reward model's score rising while verified
  accuracy falls;
- DisagreementWatch, every step, for a task scored by a reward-model ensemble: the members'
  disagreement on the policy's samples rising well above its value on the validation pairs.
"""
from __future__ import annotations

import logging
import math

from hybrid_rl.rewards.hacking import DisagreementWatch, HackingWatch, restore_watches
from hybrid_rl.rewards.learned.signal import DISAGREEMENT, PreferenceSignal

log = logging.getLogger("hybrid_rl")


def hacking_watches(cfg) -> dict[str, HackingWatch]:
    """task -> its watch (tasks that have both the proxy signal and a separate accuracy one)."""
    w = cfg.reward.hacking_watch
    return {name: HackingWatch(w.window, w.min_proxy_rise, w.min_accuracy_drop, w.z)
            for name, task in cfg.tasks().items()
            if w.proxy_signal in task.rewards and w.proxy_signal != task.accuracy_signal}


def disagreement_watches(cfg, scorer) -> dict[str, DisagreementWatch]:
    """task -> its watch (tasks whose proxy signal is scored by a reward-model ensemble)."""
    w = cfg.reward.hacking_watch
    out = {}
    for task, signals in scorer.signals_by_task.items():
        for signal in signals:
            if signal.name == w.proxy_signal and isinstance(signal.verifier, PreferenceSignal):
                baseline = signal.verifier.validation_disagreement()
                if baseline is not None:
                    out[task] = DisagreementWatch(baseline, w.disagreement_ratio,
                                                  w.disagreement_steps)
    return out


def watches_state(run) -> dict:
    """The watches' part of a checkpoint's trainer state."""
    return {"hacking_watches": {name: w.state_dict() for name, w in run.watches.items()},
            "disagreement_watches": {name: w.state_dict()
                                     for name, w in run.disagreement_watches.items()}}


def restore(run, state: dict) -> None:
    """The watches as a checkpoint's trainer state left them."""
    restore_watches(run.watches, state)
    for name, watch in run.disagreement_watches.items():
        watch.load_state_dict(state.get("disagreement_watches", {}).get(name, {}))


def alarm(run, task: str, warning: str, kind: str) -> None:
    """Say it, log it (hacking/<kind>, per task in a mixture), and end the run if configured."""
    if run.cfg.mixed:
        warning = f"task {task}: {warning}"
    log.warning("step %d: %s", run.step, warning)
    run.metrics.log(run.step, {f"hacking/{kind}": 1.0,
                               **({f"hacking/{task}/{kind}": 1.0} if run.cfg.mixed else {})})
    if run.cfg.reward.hacking_watch.stop:
        run.stop_reason = warning + " (reward.hacking_watch.stop=true: training ends here)"


def watch_for_hacking(run, task: str, proxy: list, verified: list) -> None:
    warning = run.watches[task].observe(run.step, proxy, verified)
    if warning is not None:
        alarm(run, task, warning, "alarm")


def watch_disagreement(run, m: dict) -> dict[str, float]:
    """Feed each ensemble-scored task's watch this step's disagreement (from the step's
    metrics `m`); returns hacking/disagreement_ratio (per task in a mixture), the recent
    disagreement in units of the validation value."""
    proxy, out = run.cfg.reward.hacking_watch.proxy_signal, {}
    for task, watch in run.disagreement_watches.items():
        key = (f"task/{task}/{proxy}/{DISAGREEMENT}" if run.cfg.mixed
               else f"reward/{proxy}/{DISAGREEMENT}/mean")
        warning = watch.observe(run.step, m.get(key, math.nan))
        out[f"hacking/{task}/disagreement_ratio" if run.cfg.mixed
            else "hacking/disagreement_ratio"] = watch.level()
        if warning is not None:
            alarm(run, task, warning, "disagreement_alarm")
    return out
