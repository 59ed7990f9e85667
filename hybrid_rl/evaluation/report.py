"""What `evaluate.py` measures about one model, and how it writes the results down.

`evaluate_model` looks through several lenses at once: greedy accuracy (the task's accuracy
signal), the mean of every reward signal, unbiased pass@k from sampled completions, the mean
completion length, the share of completions in the rubric's preferred style (the written
rubric that labels the default reward model's data), and a win rate against a reference policy
judged by a chosen signal. The proxy reward alone is what gets gamed, so no single number is
reported on its own.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from hybrid_rl.data.samples import Sample
from hybrid_rl.evaluation.heldout import greedy_scores, mean_applicable, sampled_pass_at_k
from hybrid_rl.rewards.learned.rubric import preferred_style
from hybrid_rl.rewards.scorer import RewardScorer
from hybrid_rl.rollout import RolloutBackend


@dataclass
class ModelReport:
    name: str  # label in the report
    location: str  # the folder the weights came from
    accuracy: float  # greedy, task's accuracy signal
    signal_means: dict[str, float]  # every reward signal, greedy completions
    pass_at_k: dict[int, float]  # sampled; empty when eval.samples_per_prompt = 0
    mean_length: float  # completion tokens, greedy
    lengths: list[int] = field(default_factory=list)  # per problem, for the plot
    win_rate: Optional[dict] = None  # against the reference policy (see `win_rate`)
    # greedy completions with the rubric's top mark (one answer, brief working, no fault)
    preferred_style: float = math.nan


def win_rate(candidate: Sequence[Optional[float]], reference: Sequence[Optional[float]]) -> dict:
    """Per problem, the candidate's score against the reference's under the judging signal:
    a win counts 1, a tie 1/2, a loss 0. Problems either side left unscored are not counted."""
    wins = ties = losses = 0
    for c, r in zip(candidate, reference):
        if c is None or r is None:
            continue
        wins += c > r
        ties += c == r
        losses += c < r
    judged = wins + ties + losses
    return {"win_rate": (wins + ties / 2) / judged if judged else math.nan,
            "wins": wins, "ties": ties, "losses": losses}


def evaluate_model(
    name: str, location: str, rollout: RolloutBackend, samples: Sequence[Sample],
        scorer: RewardScorer, *,
        accuracy_signal: str, samples_per_prompt: int, pass_k: Sequence[int], batch_size: int,
        response_style: str = "answer",
) -> tuple[ModelReport, dict[str, list]]:
    """The report of one model, and its per-problem greedy scores (for win rates)."""
    texts, values, lengths = greedy_scores(rollout, samples, scorer, batch_size)
    passes = {}
    if samples_per_prompt:
        passes = sampled_pass_at_k(rollout, samples, scorer, accuracy_signal, samples_per_prompt,
                                   pass_k, batch_size)
    report = ModelReport(
        name, location, mean_applicable(values[accuracy_signal]), {k: mean_applicable(v) for k,
                                                                   v in values.items()}, passes,
        sum(lengths) / max(len(lengths), 1), lengths,
        preferred_style=sum(preferred_style(t, response_style) for t in texts) / max(len(texts), 1),
    )
    return report, values


# ---------------------------------------------------------------- output ----
def markdown_report(task: str, num_problems: int, reports: Sequence[ModelReport],
                    judge: Optional[str], reference: Optional[str]) -> str:
    """A side-by-side table: one column per model."""
    def fmt(x: float) -> str:
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"

    rows = [("greedy accuracy", [fmt(r.accuracy) for r in reports])]
    for signal in sorted({s for r in reports for s in r.signal_means}):
        rows.append(
            (f"mean `{signal}` score", [fmt(r.signal_means.get(signal, math.nan)) for r in reports])
        )
    for k in sorted({k for r in reports for k in r.pass_at_k}):
        rows.append(
            (f"pass@{k} (unbiased, sampled)", [fmt(r.pass_at_k.get(k, math.nan)) for r in reports])
        )
    rows.append(("mean completion length (tokens)", [f"{r.mean_length:.1f}" for r in reports]))
    rows.append(("share in the rubric's preferred style",
                 [fmt(r.preferred_style) for r in reports]))
    if judge is not None:
        rows.append((f"win rate vs reference (judged by `{judge}`)",
                     [f"{fmt(r.win_rate['win_rate'])} "
                      f"({r.win_rate['wins']}W/{r.win_rate['ties']}T/{r.win_rate['losses']}L)"
                      if r.win_rate else "n/a" for r in reports]))
    lines = [f"# Evaluation: task `{task}`, {num_problems} held-out problems", ""]
    lines += ["| metric | " + " | ".join(f"`{r.name}`" for r in reports) + " |",
              "|---|" + "---|" * len(reports)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    lines += ["", "Models:"] + [f"- `{r.name}`: {r.location}" for r in reports]
    if reference is not None:
        lines.append(f"- reference policy for win rates: {reference}")
    return "\n".join(lines) + "\n"


def write_outputs(out_dir: Path, task: str, num_problems: int, reports: Sequence[ModelReport],
                  judge: Optional[str], reference: Optional[str]) -> dict[str, Path]:
    """results.json, report.md, metrics.png and lengths.png in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "results.json", "markdown": out_dir / "report.md",
             "metrics_plot": out_dir / "metrics.png", "lengths_plot": out_dir / "lengths.png"}
    payload = {"task": task, "num_problems": num_problems, "judge_signal": judge,
               "reference": reference,
               "models": [{k: v for k, v in asdict(r).items() if k != "lengths"} for r in reports]}
    paths["json"].write_text(json.dumps(payload, indent=2, default=str))
    paths["markdown"].write_text(markdown_report(task, num_problems, reports, judge, reference))
    _plot(reports, paths["metrics_plot"], paths["lengths_plot"])
    return paths


def _plot(reports: Sequence[ModelReport], metrics_path: Path, lengths_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ["accuracy"] + [f"pass@{k}" for k in sorted({k for r in reports for k in r.pass_at_k})]
    fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(labels) * len(reports)), 3.5))
    width = 0.8 / len(reports)
    for j, r in enumerate(reports):
        heights = [r.accuracy] + [r.pass_at_k.get(int(label[5:]), math.nan) for label in labels[1:]]
        ax.bar([i + j * width for i in range(len(labels))], heights, width, label=r.name)
    ax.set_xticks([i + width * (len(reports) - 1) / 2 for i in range(len(labels))], labels)
    ax.set_ylim(0, 1)
    ax.set_ylabel("held-out")
    ax.legend()
    fig.tight_layout()
    fig.savefig(metrics_path, dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for r in reports:
        ax.hist(r.lengths, bins=20, alpha=0.5, label=r.name)
    ax.set_xlabel("completion length (tokens), greedy")
    ax.set_ylabel("problems")
    ax.legend()
    fig.tight_layout()
    fig.savefig(lengths_path, dpi=100)
    plt.close(fig)
