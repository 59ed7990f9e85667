"""Task data: samples from procedural generators, local files and Hugging Face datasets.

Every source ends as a list of `Sample`s; a `PromptStream` walks the training list in a
seeded order per epoch and can report and restore its position (exact resume).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from verifiers.math import last_boxed


class DataError(ValueError):
    """A dataset problem; the message names the file (or dataset), the row and the field."""


@dataclass
class Sample:
    prompt: str  # text fed to the model (template applied)
    reference: Optional[str]  # gold answer the verifiers compare against
    task: str  # task name; routes the sample to its task's reward weights
    demonstration: Optional[str] = None  # target completion for supervised warm-up
    meta: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------- generators ----
# A generator returns (problem, answer, demonstration) triples, or (problem, answer,
# demonstration, meta) with a dict for Sample.meta, deterministic in `seed`.
Generator = Callable[..., list[tuple[str, str, str]]]
GENERATORS: dict[str, Generator] = {}


def register_generator(name: str):
    def decorate(fn: Generator) -> Generator:
        GENERATORS[name] = fn
        return fn

    return decorate


def _number_with_digits(rng: random.Random, digits: int) -> int:
    return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)


@register_generator("arithmetic")
def arithmetic(
    num: int, seed: int, min_digits: int = 1, max_digits: int = 3, operations: str = "+-"
) -> list[tuple[str, str, str]]:
    """Problems like "347+589=" whose answer is the integer result ("936"); each operand has
    between min_digits and max_digits digits.

    The demonstration is the bare answer: the built-in model learns to answer right after "=".
    """
    if not 1 <= min_digits <= max_digits:
        raise DataError(f"arithmetic generator: need 1 <= min_digits <= max_digits, got {min_digits}, {max_digits}")
    bad_ops = set(operations) - set("+-*")
    if not operations or bad_ops:
        raise DataError(f"arithmetic generator: operations must use + - *, got {operations!r}")
    rng = random.Random(seed)
    out = []
    for _ in range(num):
        a, b = (_number_with_digits(rng, rng.randint(min_digits, max_digits)) for _ in range(2))
        op = rng.choice(operations)
        result = {"+": a + b, "-": a - b, "*": a * b}[op]
        out.append((f"{a}{op}{b}=", str(result), str(result)))
    return out


def _generated_samples(cfg, task: str) -> tuple[list[Sample], list[Sample]]:
    from hybrid_rl import code_tasks  # noqa: F401  (registers the code task's generator)

    if cfg.generator not in GENERATORS:
        raise DataError(f"unknown generator {cfg.generator!r}; registered: {sorted(GENERATORS)}")
    make = GENERATORS[cfg.generator]
    try:
        train = make(cfg.num_train, cfg.seed, **cfg.generator_args)
        # Held-out problems come from other seeds, minus anything seen in training (and duplicates).
        seen, held = {t[0] for t in train}, []
        for offset in range(1, 11):
            for t in make(cfg.num_eval * 2, cfg.seed + offset, **cfg.generator_args):
                if t[0] not in seen and len(held) < cfg.num_eval:
                    seen.add(t[0])
                    held.append(t)
    except TypeError as exc:  # a typo'd generator argument
        raise DataError(f"generator {cfg.generator!r}: {exc}") from exc
    to_sample = lambda t: Sample(cfg.prompt_template.format(prompt=t[0]), t[1], task, t[2], dict(t[3]) if len(t) > 3 else {})  # noqa: E731
    return [to_sample(t) for t in train], [to_sample(t) for t in held[: cfg.num_eval]]


# ---------------------------------------------------------------- files ----
def reference_from(answer: Any, answer_format: str) -> str:
    """The gold answer inside a dataset's answer column."""
    text = str(answer)
    if answer_format == "gsm8k":  # "...reasoning...\n#### 72"
        if "####" not in text:
            raise ValueError("no '####' marker in the answer")
        return text.rsplit("####", 1)[1].strip().replace(",", "")
    if answer_format == "boxed":  # MATH solutions end in \boxed{...}
        boxed = last_boxed(text)
        if boxed is None:
            raise ValueError("no \\boxed{} answer in the solution")
        return boxed
    return text.strip()


def rows_to_samples(rows, where: str, cfg, task: str, skipped: list[str]) -> list[Sample]:
    """Rows (dicts) -> Samples. A bad row raises DataError naming `where` and its row number,
    or is recorded in `skipped` when cfg.on_bad_row == "skip"."""
    samples = []
    for i, row in enumerate(rows, start=1):
        meta = {"source": where, "row": i}
        try:
            if cfg.answer_format == "humaneval":  # prompt, entry_point, test, canonical_solution
                from hybrid_rl.code_tasks import humaneval_row

                problem, reference, demo, extra = humaneval_row(row, where)
                samples.append(Sample(cfg.prompt_template.format(prompt=problem), reference, task, demo, {**extra, **meta}))
                continue
            for name in (cfg.prompt_field, cfg.answer_field):
                if name not in row or row[name] is None:
                    raise ValueError(f"missing field {name!r} (columns: {sorted(row)})")
            problem = row[cfg.prompt_field]
            if not isinstance(problem, str) or not problem.strip():
                raise ValueError(f"field {cfg.prompt_field!r} must be non-empty text, got {problem!r:.60}")
            reference = reference_from(row[cfg.answer_field], cfg.answer_format)
        except ValueError as exc:
            message = f"{where}, row {i}: {exc}"
            if cfg.on_bad_row == "error":
                raise DataError(message + " (set task.data.on_bad_row=skip to drop bad rows)") from None
            skipped.append(message)
            continue
        demo = str(row[cfg.answer_field]).strip()
        samples.append(Sample(cfg.prompt_template.format(prompt=problem), reference, task, demo, meta))
    return samples


def _load_rows(cfg, path: Optional[str], split: str):
    """Rows of a local file or a Hugging Face dataset, via the `datasets` library."""
    import datasets

    if cfg.source == "hf":
        return datasets.load_dataset(cfg.path, cfg.name, split=split)
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"dataset file not found: {file}")
    builder = {"jsonl": "json", "json": "json", "parquet": "parquet", "csv": "csv"}[cfg.source]
    try:
        return datasets.load_dataset(builder, data_files=str(file), split="train")
    except Exception as exc:  # the datasets library names the bad line only deep in its chain
        raise DataError(f"{file}: cannot be read as {cfg.source}: {_root_cause(exc)}") from exc


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    return f"{type(exc).__name__}: {exc}"


def _file_samples(cfg, task: str, skipped: list[str]) -> tuple[list[Sample], list[Sample]]:
    where = cfg.path if cfg.source != "hf" else f"dataset {cfg.path} split {cfg.split}"
    train = rows_to_samples(_load_rows(cfg, cfg.path, cfg.split), where, cfg, task, skipped)
    held_source = cfg.eval_path if cfg.source != "hf" else (cfg.eval_split and cfg.eval_split)
    if held_source:
        held_where = cfg.eval_path if cfg.source != "hf" else f"dataset {cfg.path} split {cfg.eval_split}"
        held = rows_to_samples(_load_rows(cfg, cfg.eval_path, cfg.eval_split), held_where, cfg, task, skipped)
    else:  # no held-out file: split a seeded share off the training rows
        order = list(range(len(train)))
        random.Random(cfg.seed).shuffle(order)
        cut = max(1, int(len(train) * cfg.eval_fraction))
        held, train = [train[i] for i in order[:cut]], [train[i] for i in order[cut:]]
    return train[: cfg.num_train], held[: cfg.num_eval]


def load_task_samples(cfg, task: str) -> tuple[list[Sample], list[Sample], list[str]]:
    """(train, held-out, skipped-row messages) for one task's DataConfig."""
    skipped: list[str] = []
    if cfg.source == "generator":
        train, held = _generated_samples(cfg, task)
    else:
        train, held = _file_samples(cfg, task, skipped)
    if not train:
        raise DataError(f"task {task!r}: no training samples (source={cfg.source}, path={cfg.path})")
    if not held:
        raise DataError(f"task {task!r}: no held-out samples (source={cfg.source}, path={cfg.path})")
    return train, held, skipped


class PromptStream:
    """Endless training prompts: a fresh seeded permutation per epoch; position is resumable."""

    def __init__(self, samples: list[Sample], seed: int, shard: int = 0, num_shards: int = 1):
        self.samples, self.seed = samples, seed
        # Under several processes every rank walks the same order and keeps its own slice of
        # each draw, so a checkpoint's position means the same thing at any process count.
        self.shard, self.num_shards = shard, num_shards
        self.epoch, self.index = 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> list[int]:
        order = list(range(len(self.samples)))
        random.Random(f"{self.seed}-{epoch}").shuffle(order)
        return order

    def next(self, n: int) -> list[Sample]:
        """This shard's n prompts of a draw of n x num_shards."""
        drawn = self._draw(n * self.num_shards)
        return drawn[self.shard * n : (self.shard + 1) * n]

    def _draw(self, n: int) -> list[Sample]:
        out = []
        while len(out) < n:
            if self.index == len(self._order):
                self.epoch, self.index = self.epoch + 1, 0
                self._order = self._permutation(self.epoch)
            out.append(self.samples[self._order[self.index]])
            self.index += 1
        return out

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index, "num_samples": len(self.samples)}

    def load_state_dict(self, state: dict) -> None:
        if state["num_samples"] != len(self.samples):
            raise DataError(
                f"checkpoint was taken on {state['num_samples']} training samples, "
                f"this run has {len(self.samples)}: the task data changed"
            )
        self.epoch, self.index = state["epoch"], state["index"]
        self._order = self._permutation(self.epoch)


def drop_overlong(
    samples: list[Sample], prompt_lengths: list[int], limit: int, on_bad_row: str, skipped: list[str]
) -> list[Sample]:
    """Samples whose prompt fits in `limit` tokens. An overlong one raises DataError naming its
    file and row, or is recorded in `skipped` when on_bad_row == "skip"."""
    kept = []
    for sample, n in zip(samples, prompt_lengths):
        if n <= limit:
            kept.append(sample)
            continue
        where = f"{sample.meta.get('source', 'generated data')}, row {sample.meta.get('row', '?')}"
        message = f"{where}: prompt is {n} tokens, more than the {limit} that fit before the completion"
        if on_bad_row == "error":
            raise DataError(message + " (set task.data.on_bad_row=skip to drop such rows)")
        skipped.append(message)
    return kept
