"""Preference pairs: reading TRL's preference formats from local files or Hugging Face datasets.

Accepted rows (the four formats of TRL's preference datasets):
- explicit prompt, plain text:      {"prompt": str, "chosen": str, "rejected": str}
- implicit prompt, plain text:      {"chosen": str, "rejected": str} (the shared beginning is
                                    the prompt)
- explicit prompt, conversational:  {"prompt": [messages], "chosen": [messages],
                                     "rejected": [messages]}
- implicit prompt, conversational:  {"chosen": [messages], "rejected": [messages]}
A message is {"role": str, "content": str}. Optional columns: `margin` (a number added to the
Bradley-Terry margin), `flipped` (true where label noise swapped the pair; used to report
accuracy against the clean labels) and `label` (P(chosen is preferred), 1 when absent: a soft
label, as ai_feedback.py writes for a judge's ties). Other columns are ignored. A bad row
raises PreferenceDataError naming file, row and field.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional


class PreferenceDataError(ValueError):
    """A preference row that cannot be read; the message names the file, the row and the field."""


@dataclass
class PreferencePair:
    prompt: str
    chosen: str  # the preferred response (without the prompt)
    rejected: str
    margin: float = 0.0  # extra Bradley-Terry margin for this pair
    flipped: bool = False  # label noise swapped chosen and rejected
    label: float = 1.0  # P(chosen is preferred): below 1 a soft label (an AI judge's tie)


def render_messages(messages: list) -> str:
    """Conversational turns as plain text, one "role: content" line each. Used for prompts and
    responses alike, so a model trained on conversations scores the same rendering."""
    lines = []
    for m in messages:
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"a message must be {{'role': ..., 'content': ...}}, got {m!r:.80}")
        lines.append(f"{m['role']}: {m['content']}")
    return "\n".join(lines)


def _common_prefix(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def pair_from_row(row: dict) -> PreferencePair:
    """One row in any of the four formats -> PreferencePair (ValueError naming the field)."""
    for name in ("chosen", "rejected"):
        if name not in row or row[name] is None:
            raise ValueError(f"missing field {name!r} (columns: {sorted(row)})")
    chosen, rejected, prompt = row["chosen"], row["rejected"], row.get("prompt")
    conversational = isinstance(chosen, list)
    prompt_mismatch = prompt is not None and isinstance(prompt, list) != conversational
    if conversational != isinstance(rejected, list) or prompt_mismatch:
        raise ValueError(
            "fields 'prompt', 'chosen' and 'rejected' mix plain text and message lists"
        )
    if prompt is None:  # implicit prompt: what both responses share
        cut = _common_prefix(chosen, rejected)
        if conversational:
            prompt, chosen, rejected = chosen[:cut], chosen[cut:], rejected[cut:]
        else:  # cut at a word boundary so a shared first word stays in both responses
            cut = max(chosen.rfind(" ", 0, cut + 1), chosen.rfind("\n", 0, cut + 1),
                      0) if cut < min(len(chosen), len(rejected)) else cut
            prompt, chosen, rejected = chosen[:cut], chosen[cut:], rejected[cut:]
    if conversational:
        prompt, chosen, rejected = (
            render_messages(prompt), render_messages(chosen), render_messages(rejected),
        )
    for name, value in (("prompt", prompt), ("chosen", chosen), ("rejected", rejected)):
        if not isinstance(value, str):
            raise ValueError(f"field {name!r} must be text or a list "
                             f"of messages, got {type(value).__name__}")
    if not chosen.strip() or not rejected.strip():
        raise ValueError("'chosen' and 'rejected' must both be non-empty responses")
    margin = row.get("margin") or 0.0
    if not isinstance(margin, (int, float)) or isinstance(margin, bool):
        raise ValueError(f"field 'margin' must be a number, got {margin!r}")
    label = row.get("label", 1.0)
    if not isinstance(label, (int, float)) or isinstance(label, bool) or not 0 <= label <= 1:
        raise ValueError(f"field 'label' must be a probability in [0, 1], got {label!r}")
    return PreferencePair(prompt, chosen, rejected, float(margin), bool(row.get("flipped", False)),
                          float(label))


def rows_to_pairs(rows, where: str, on_bad_row: str, skipped: list[str]) -> list[PreferencePair]:
    pairs = []
    for i, row in enumerate(rows, start=1):
        try:
            pairs.append(pair_from_row(dict(row)))
        except ValueError as exc:
            message = f"{where}, row {i}: {exc}"
            if on_bad_row == "error":
                raise PreferenceDataError(message + " (set reward_model.data.on_bad_row=skip "
                                                    "to drop bad rows)") from None
            skipped.append(message)
    return pairs


def _read_rows(source: str, path: str, name: Optional[str], split: str):
    if source == "hf":
        import datasets

        local = Path(path).expanduser()
        if local.is_dir() and (local / "dataset_info.json").is_file():
            return datasets.load_from_disk(str(local))
        return datasets.load_dataset(path, name, split=split)
    file = Path(path).expanduser()
    if not file.is_file():
        raise PreferenceDataError(f"preference file not found: {file}")
    if source == "jsonl":  # read line by line so an error names the line, not a pyarrow offset
        rows = []
        for i, line in enumerate(file.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise PreferenceDataError(
                        f"{file}, line {i}: not valid JSON ({exc.msg})"
                    ) from None
        return rows
    if source == "json":
        data = json.loads(file.read_text())
        if not isinstance(data, list):
            raise PreferenceDataError(f"{file}: a JSON preference file must hold a list of rows")
        return data
    import pyarrow.parquet as pq

    return pq.read_table(file).to_pylist()


def load_pairs(
    cfg, skipped: list[str]
) -> tuple[list[PreferencePair], Optional[list[PreferencePair]]]:
    """(train pairs, validation pairs or None when none is given) of a PreferenceDataConfig."""
    where = cfg.path if cfg.source != "hf" else f"dataset {cfg.path} split {cfg.split}"
    train = rows_to_pairs(_read_rows(cfg.source, cfg.path, cfg.name, cfg.split), where,
                          cfg.on_bad_row, skipped)
    held = None
    if cfg.source != "hf" and cfg.eval_path:
        held = rows_to_pairs(_read_rows(cfg.source, cfg.eval_path, None, "train"), cfg.eval_path,
                             cfg.on_bad_row, skipped)
    elif cfg.source == "hf" and cfg.eval_split:
        held = rows_to_pairs(_read_rows("hf", cfg.path, cfg.name, cfg.eval_split),
                             f"dataset {cfg.path} split {cfg.eval_split}", cfg.on_bad_row, skipped)
    if not train:
        raise PreferenceDataError(f"{where}: no usable preference pairs")
    return train, held


def split_pairs(pairs: list[PreferencePair], eval_fraction: float, seed: int) -> tuple[list, list]:
    """Seeded split by prompt, so no validation prompt was seen in training."""
    prompts = sorted({p.prompt for p in pairs})
    random.Random(seed).shuffle(prompts)
    held_prompts = set(prompts[: max(1, int(len(prompts) * eval_fraction))])
    return [p for p in pairs if p.prompt not in held_prompts], [
        p for p in pairs if p.prompt in held_prompts
    ]


def write_pairs(pairs: list[PreferencePair], path: Path) -> None:
    """JSONL in the explicit-prompt format (readable back with source=jsonl)."""
    tmp = Path(f"{path}.tmp")
    with open(tmp, "w") as fh:
        for p in pairs:
            fh.write(json.dumps(asdict(p)) + "\n")
    os.replace(tmp, path)

