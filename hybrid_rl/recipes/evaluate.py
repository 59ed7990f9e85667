"""Evaluation, the recipe behind `python evaluate.py evaluate.checkpoint=<path>`: a model on
a task's held-out problems.

Several lenses at once, each model side by side: greedy accuracy, the mean of every reward
signal, unbiased pass@k from sampled completions, mean completion length, and the win rate
against a reference policy judged by a chosen signal. Writes results.json, report.md,
metrics.png and lengths.png into the run folder (outputs/evaluate/<task>/<time>/).
"""
from __future__ import annotations

import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from hybrid_rl.config.schema import ConfigError
from hybrid_rl.evaluation.heldout import greedy_scores
from hybrid_rl.evaluation.report import evaluate_model, win_rate, write_outputs
from hybrid_rl.models.loading import load_policy, load_tokenizer
from hybrid_rl.recipes import build
from hybrid_rl.recipes.reward_model import prepare_reward_model
from hybrid_rl.rollout import completion_limit
from hybrid_rl.runtime.checkpoint import MANIFEST, find_checkpoint, verify_manifest

log = logging.getLogger("hybrid_rl")


def model_folder(path: str) -> str:
    """A Hugging Face model folder, a checkpoint's policy (checkpoints/best included), or a run
    folder's latest checkpoint."""
    folder = Path(path).expanduser()
    if (folder / "config.json").is_file():
        return str(folder)
    if (folder / "policy" / "config.json").is_file() and (folder / MANIFEST).is_file():
        verify_manifest(folder)  # checkpoints/best: a policy with a manifest, no trainer state
        return str(folder / "policy")
    checkpoint = find_checkpoint(folder) if folder.is_dir() else None
    if checkpoint is not None and (checkpoint / "policy" / "config.json").is_file():
        verify_manifest(checkpoint)  # a corrupt checkpoint is named, not evaluated
        return str(checkpoint / "policy")
    raise ConfigError(f"evaluate: {path} is not a model folder (config.json), a checkpoint folder "
                      "or a run folder with checkpoints")


def judge_signal(cfg, name: str, task) -> str:
    judge = cfg.evaluate.judge_signal or (
        "preference" if "preference" in task.rewards else task.accuracy_signal
    )
    if judge not in task.rewards:
        where = f" (task {name!r})" if cfg.mixed else ""
        raise ConfigError(f"evaluate.judge_signal: {judge!r} is not one of the task's signals "
                          f"{sorted(task.rewards)}{where}")
    return judge


def labelled(locations: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Short distinct labels: the folder name (a checkpoint's step), numbered if repeated."""
    out, seen = [], {}
    for role, location in locations:
        name = (
            Path(location).parent.name if Path(location).name == "policy" else Path(location).name
        )
        name = name if role != "start" else "start"
        seen[name] = seen.get(name, 0) + 1
        out.append((name if seen[name] == 1 else f"{name}#{seen[name]}", location))
    return out


def main(dcfg: DictConfig) -> float:
    """Every model on every task of the run (a mixture's tasks each get their own report, in
    <out>/<task>/); returns the first model's accuracy (pooled over a mixture's problems)."""
    cfg = build.to_config(dcfg)
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    build.seed_everything(cfg.seed, cfg.num_threads)
    train, held = build.task_samples(cfg)
    start, tokenizer, train, held = build.prepare_start(cfg, train, held)
    tasks, held = cfg.tasks(), build.by_task(held)
    e = cfg.evaluate
    judges = ({name: judge_signal(cfg, name, task) for name, task in tasks.items()}
              if e.reference is not None else {})
    roles = [("checkpoint" if e.checkpoint else "start",
              model_folder(e.checkpoint) if e.checkpoint else start)]
    if e.compare:
        roles.append(("compare", model_folder(e.compare)))
    reference = (
        None
        if e.reference is None
        else (start if e.reference == "start" else model_folder(e.reference))
    )
    scorer = build.build_scorer(cfg, out_dir)
    build.report_isolation(scorer)
    # the `preference` judge, when a task has it
    prepare_reward_model(cfg, start, tokenizer, train, scorer)
    try:
        reference_values = (None if reference is None
                            else greedy_values(cfg, reference, tasks, held, scorer))
        reports = {name: [] for name in tasks}  # task -> one report per model
        for name, location in labelled(roles):
            for task, (report, values) in model_reports(cfg, name, location, tasks, held,
                                                        scorer).items():
                if reference_values is not None:
                    judge = judges[task]
                    report.win_rate = win_rate(values[judge], reference_values[task][judge])
                reports[task].append(report)
                log.info(
                    "%s%s: greedy accuracy %.3f, %s, mean length %.1f, preferred style %.3f%s",
                    name, f" on {task}" if cfg.mixed else "", report.accuracy,
                    ", ".join(f"pass@{k} {v:.3f}" for k, v in report.pass_at_k.items())
                    or "no sampling", report.mean_length, report.preferred_style,
                    f", win rate {report.win_rate['win_rate']:.3f}" if report.win_rate else "",
                )
    finally:
        scorer.close()
    for task, task_reports in reports.items():
        paths = write_outputs(out_dir / task if cfg.mixed else out_dir, task, len(held[task]),
                              task_reports, judges.get(task), reference)
        log.info("report: %s", paths["markdown"])
    firsts = [(task_reports[0].accuracy, len(held[task])) for task, task_reports in
              reports.items()]
    return sum(a * n for a, n in firsts) / max(sum(n for _, n in firsts), 1)


def model_reports(cfg, name: str, location: str, tasks: dict, held: dict, scorer) -> dict:
    """task -> (report, per-problem greedy scores) of one model; every model samples from the
    same RNG state, and each task at its own completion limit."""
    build.seed_everything(cfg.seed, cfg.num_threads)
    rollout = policy_rollout(cfg, location, held)
    ev, out = cfg.eval, {}
    for task_name, task in tasks.items():
        with completion_limit(rollout, task.max_new_tokens):
            out[task_name] = evaluate_model(
                name, location, rollout, held[task_name], scorer,
                accuracy_signal=task.accuracy_signal, samples_per_prompt=ev.samples_per_prompt,
                pass_k=ev.pass_k, batch_size=ev.batch_size, response_style=task.response_style,
            )
    return out


def greedy_values(cfg, location: str, tasks: dict, held: dict, scorer) -> dict:
    """task -> signal -> per-problem greedy scores of the reference policy."""
    rollout = policy_rollout(cfg, location, held)
    out = {}
    for task_name, task in tasks.items():
        with completion_limit(rollout, task.max_new_tokens):
            _, out[task_name], _ = greedy_scores(rollout, held[task_name], scorer,
                                                 cfg.eval.batch_size)
    return out


def policy_rollout(cfg, location: str, held: dict):
    policy = load_policy(location, dtype=cfg.model.dtype)
    return build.build_rollout(cfg, policy, load_tokenizer(location),
                               prompts=[s.prompt for samples in held.values() for s in samples])
