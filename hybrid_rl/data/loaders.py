"""Task data: samples from procedural generators, local files and Hugging Face datasets.

Every source ends as a list of `Sample`s. Generators and row formats are plug-ins found by
name (hybrid_rl/plugins.py); the built-in ones live with their tasks in hybrid_rl/tasks/.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Optional

from hybrid_rl.data.samples import DataError, Sample
from hybrid_rl.plugins import ROW_FORMATS, TASK_GENERATORS, PluginError


def _generated_samples(cfg, task: str) -> tuple[list[Sample], list[Sample]]:
    try:
        make = TASK_GENERATORS.get(cfg.generator)
    except PluginError as exc:
        raise DataError(f"task.data.generator: {exc}") from exc
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

    def to_sample(t):
        meta = dict(t[3]) if len(t) > 3 else {}
        return Sample(cfg.prompt_template.format(prompt=t[0]), t[1], task, t[2], meta)

    return [to_sample(t) for t in train], [to_sample(t) for t in held[: cfg.num_eval]]


# ---------------------------------------------------------------- files ----
def rows_to_samples(rows, where: str, cfg, task: str, skipped: list[str]) -> list[Sample]:
    """Rows (dicts) -> Samples through the row format `cfg.answer_format`. A bad row raises
    DataError naming `where` and its row number, or is recorded in `skipped` when
    cfg.on_bad_row == "skip"."""
    try:
        parse = ROW_FORMATS.get(cfg.answer_format)
    except PluginError as exc:
        raise DataError(f"task.data.answer_format: {exc}") from exc
    samples = []
    for i, row in enumerate(rows, start=1):
        try:
            problem, reference, demo, meta = parse(row, where, cfg.prompt_field, cfg.answer_field)
        except ValueError as exc:
            message = f"{where}, row {i}: {exc}"
            if cfg.on_bad_row == "error":
                raise DataError(
                    message + " (set task.data.on_bad_row=skip to drop bad rows)"
                ) from None
            skipped.append(message)
            continue
        meta = {**meta, "source": where, "row": i}
        samples.append(
            Sample(cfg.prompt_template.format(prompt=problem), reference, task, demo, meta)
        )
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
        held_where = (
            cfg.eval_path if cfg.source != "hf" else f"dataset {cfg.path} split {cfg.eval_split}"
        )
        held = rows_to_samples(
            _load_rows(cfg, cfg.eval_path, cfg.eval_split), held_where, cfg, task, skipped
        )
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
        raise DataError(
            f"task {task!r}: no training samples (source={cfg.source}, path={cfg.path})"
        )
    if not held:
        raise DataError(
            f"task {task!r}: no held-out samples (source={cfg.source}, path={cfg.path})"
        )
    return train, held, skipped
