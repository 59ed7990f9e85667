"""`task`: a task's data and the reward signals that judge its completions."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, Iterator, Optional

from hybrid_rl.config.checks import choice, positive


@dataclass
class DataConfig:
    """Where a task's prompts and reference answers come from."""

    source: str = "generator"  # generator | jsonl | json | parquet | csv | hf
    generator: str = "arithmetic"  # source=generator: a registered generator name
    # keyword arguments of the generator
    generator_args: Dict[str, Any] = field(default_factory=dict)
    path: Optional[str] = None  # files: train file; hf: dataset id or local dataset folder
    eval_path: Optional[str] = None  # files: held-out file (else split off the train file)
    name: Optional[str] = None  # hf: dataset configuration name (e.g. "main" for gsm8k)
    split: str = "train"  # hf: training split
    eval_split: Optional[str] = "test"  # hf: held-out split (None: split off the train split)
    prompt_field: str = "question"  # column holding the problem text
    answer_field: str = "answer"  # column holding the reference answer or solution
    # plain | gsm8k (text after ####) | boxed (last \boxed{} of a solution) | humaneval (rows with
    # prompt, entry_point, test, canonical_solution: code tasks; prompt/answer_field unused)
    answer_format: str = "plain"
    prompt_template: str = "{prompt}"  # how a problem becomes the model's prompt
    num_train: Optional[int] = 20000  # training problems (None: all rows)
    num_eval: Optional[int] = 200  # held-out problems (None: all rows)
    eval_fraction: float = 0.1  # share split off for held-out when no eval file/split exists
    seed: int = 1234  # generator and shuffling seed
    on_bad_row: str = "error"  # error: stop naming file and row | skip: drop and count it

    def problems(self) -> Iterator[str]:
        yield from choice(
            "source", self.source, {"generator", "jsonl", "json", "parquet", "csv", "hf"}
        )
        yield from choice("on_bad_row", self.on_bad_row, {"error", "skip"})
        if self.source != "generator" and not self.path:
            yield f"path: source={self.source} needs task.data.path"
        if "{prompt}" not in self.prompt_template:
            yield "prompt_template: must contain the placeholder {prompt}"
        yield from positive("num_train", self.num_train)
        yield from positive("num_eval", self.num_eval)
        if not 0.0 < self.eval_fraction < 1.0:
            yield f"eval_fraction: must be in (0, 1), got {self.eval_fraction}"


@dataclass
class SignalConfig:
    """One reward signal of a task: what produces it and how it enters the summed reward
    (hybrid_rl/rewards/composition.py: gate, then normalise, then weigh)."""

    # a registered verifier name (e.g. math, code, preference), or a mapping with `_target_`
    # (a factory Hydra instantiates; it must return a verifier)
    verifier: Any = None
    weight: float = 1.0  # multiplier in the summed reward (0 = logged only)
    # none | group (z-score over the prompt's G completions) | running (run-wide z-score)
    normalize: str = "none"
    # another signal of the task: this one counts only where that one passed
    gate: Optional[str] = None
    gate_min: float = 1.0  # the gating signal passes at or above this value
    # verifier: preference with a reward-model ensemble: score = members' mean - this x their
    # standard deviation (0: the mean); README "Ensembles and uncertainty"
    uncertainty_penalty: float = 0.0


@dataclass
class TaskConfig:
    """A task: its data and the reward signals that judge its completions."""

    name: str = "math"  # task label, stored on every sample
    data: DataConfig = field(default_factory=DataConfig)  # prompts and references
    # signal name -> {verifier, weight} (see SignalConfig). Typed as plain dicts because
    # OmegaConf cannot add a new key to a Dict[str, dataclass] from the command line, and
    # `+task.rewards.style={verifier: x, weight: 0.5}` must work; keys are checked below.
    rewards: Dict[str, Any] = field(default_factory=dict)
    accuracy_signal: str = "correctness"  # signal whose pass rate is reported as accuracy
    # how the default preference-data generator dresses this task's answers: answer (a final
    # answer with optional working: math) | code (a function body)
    response_style: str = "answer"
    # this task's completion limit in tokens (None: rollout.max_new_tokens); in a mixture
    # each limit's prompts are sampled in a call of their own
    max_new_tokens: Optional[int] = None

    def signals(self) -> dict[str, SignalConfig]:
        return {name: SignalConfig(**spec) for name, spec in self.rewards.items()}

    def problems(self) -> Iterator[str]:
        from hybrid_rl.rewards.composition import NORMALIZATIONS

        if not self.rewards:
            yield "rewards: a task needs at least one reward signal"
        allowed = {f.name for f in fields(SignalConfig)}
        for name, spec in self.rewards.items():
            if not isinstance(spec, dict):
                yield f"rewards.{name}: must be a mapping with keys {sorted(allowed)}, got {spec!r}"
                continue
            for key in sorted(set(spec) - allowed):
                yield f"rewards.{name}.{key}: unknown key; a signal takes {sorted(allowed)}"
            verifier = spec.get("verifier")
            if not verifier:
                yield (f"rewards.{name}.verifier: no verifier produces "
                       "this signal; name one (e.g. verifier: math)")
            elif isinstance(verifier, dict) and "_target_" not in verifier:
                yield (f"rewards.{name}.verifier: a mapping needs "
                       "`_target_` (a factory returning a verifier)")
            elif not isinstance(verifier, (str, dict)):
                yield (f"rewards.{name}.verifier: must be a name or "
                       f"a mapping with `_target_`, got {verifier!r}")
            penalty = spec.get("uncertainty_penalty", 0.0)
            if penalty and verifier != "preference":
                yield (f"rewards.{name}.uncertainty_penalty: applies to `verifier: preference` "
                       f"(a reward-model ensemble), not to {verifier!r}")
            for key in ("weight", "gate_min", "uncertainty_penalty"):
                if key in spec and (
                    not isinstance(spec[key], (int, float)) or isinstance(spec[key], bool)
                ):
                    yield f"rewards.{name}.{key}: must be a number, got {spec[key]!r}"
            if isinstance(penalty, (int, float)) and penalty < 0:
                yield f"rewards.{name}.uncertainty_penalty: must be >= 0, got {penalty}"
            if spec.get("normalize", "none") not in NORMALIZATIONS:
                yield (f"rewards.{name}.normalize: must be one of "
                       f"{list(NORMALIZATIONS)}, got {spec['normalize']!r}")
            gate = spec.get("gate")
            if gate is not None and (gate == name or gate not in self.rewards):
                yield (f"rewards.{name}.gate: must name another signal of the task "
                       f"{sorted(set(self.rewards) - {name})}, got {gate!r}")
        yield from choice("response_style", self.response_style, {"answer", "code"})
        yield from positive("max_new_tokens", self.max_new_tokens)
        if self.rewards and self.accuracy_signal not in self.rewards:
            yield (f"accuracy_signal: {self.accuracy_signal!r} is not "
                   f"one of the task's signals {sorted(self.rewards)}")
        yield from (f"data.{p}" for p in self.data.problems())


@dataclass
class MixTaskConfig(TaskConfig):
    """A task inside a mixture: a whole task config (conf/task/<name>.yaml composed under
    mix.tasks.<key>) plus its share of each step's prompts. The key is the task's name."""

    share: float = 1.0  # relative share of the prompts (normalised over the mixture's shares)


@dataclass
class MixConfig:
    """Several tasks trained in one run (conf/mix/<name>.yaml; README "Task mixtures"). Empty:
    the run trains `task` alone."""

    tasks: Dict[str, MixTaskConfig] = field(default_factory=dict)  # task name -> task + share

    def named_tasks(self) -> dict[str, MixTaskConfig]:
        """The tasks, each named by its key (a task file composed twice under two keys is two
        tasks)."""
        out = {}
        for key, task in self.tasks.items():
            task.name = key
            out[key] = task
        return out

    def problems(self) -> Iterator[str]:
        shares = []
        for key, task in self.tasks.items():
            yield from (f"tasks.{key}.{p}" for p in task.problems())
            if not isinstance(task.share, (int, float)) or task.share < 0:
                yield f"tasks.{key}.share: must be a number >= 0, got {task.share!r}"
            else:
                shares.append(task.share)
        if self.tasks and len(shares) == len(self.tasks) and sum(shares) <= 0:
            yield (f"tasks: the shares {dict((k, t.share) for k, t in self.tasks.items())} "
                   "must add up to a positive number")
