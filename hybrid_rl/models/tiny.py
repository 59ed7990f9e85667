"""The built-in default model: a small Llama with an offline character-level tokenizer.

Everything here is created locally (no hub), so the default run and the tests work on a
machine with no network. The folder it writes is an ordinary Hugging Face folder, so every
other code path (loading, checkpoints, export) treats it like any downloaded model.
"""
from __future__ import annotations

import string
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
# Printable ASCII plus newline and tab: enough for math and Python code.
CHARACTERS = [c for c in string.printable if c not in "\r\x0b\x0c"]


def build_char_tokenizer() -> PreTrainedTokenizerFast:
    """One token per character; whitespace survives the round trip (decoder Fuse)."""
    vocab = {tok: i for i, tok in enumerate([PAD, BOS, EOS, UNK] + CHARACTERS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        padding_side="left",  # decoder-only generation needs prompts flush right
    )


def build_tiny_llama(
    vocab_size: int, *, hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int,
    max_position_embeddings: int, init_seed: int, pad_token_id: int = 0, bos_token_id: int = 1,
    eos_token_id: int = 2,
) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, num_key_value_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings, tie_word_embeddings=True,
        pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(init_seed)
        model = LlamaForCausalLM(config)
    return model


def write_tiny_model_folder(folder: str | Path, **model_kwargs) -> Path:
    """Create the random-init built-in model and its tokenizer as a Hugging Face folder."""
    folder = Path(folder)
    tokenizer = build_char_tokenizer()
    model = build_tiny_llama(
        len(tokenizer), pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, **model_kwargs,
    )
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
