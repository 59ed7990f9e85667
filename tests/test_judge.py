"""The AI judge: verdicts from label probabilities, both orders, constitutions. The built-in
model judges here (random weights: the mechanism is tested, not the quality)."""
import types
from dataclasses import asdict

import pytest
import torch

from hybrid_rl.config.model import TinyModelConfig
from hybrid_rl.models.loading import builtin_model_folder, load_policy, load_tokenizer
from hybrid_rl.rewards.judge import (
    ConstitutionError,
    Judge,
    Verdict,
    label_token_ids,
    load_constitution,
    position_bias_rate,
)

PAIRS = (["1+2=", "Explain 4+5."], ["3", "4+5=9. Answer: 9"], ["4", "Well... maybe 10?"])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = str(builtin_model_folder(asdict(TinyModelConfig()), tmp_path_factory.mktemp("c")))
    return load_policy(folder), load_tokenizer(folder)


class FirstPositionLover(torch.nn.Module):
    """A judge model that always answers 'A', whatever the responses: pure position bias."""

    def __init__(self, vocab: int, a_ids: list[int]):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.vocab, self.a_ids = vocab, a_ids

    def forward(self, input_ids, attention_mask=None):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        logits[..., self.a_ids] = 5.0
        return types.SimpleNamespace(logits=logits)


def test_a_judge_that_always_prefers_the_first_position_gives_only_ties(tiny):
    _, tokenizer = tiny
    biased = FirstPositionLover(len(tokenizer), label_token_ids(tokenizer, "A"))
    verdicts = Judge(biased, tokenizer, "first-lover").compare(*PAIRS, ["Be right."] * 2)
    assert all(v.p_first_order > 0.99 and v.p_second_order < 0.01 for v in verdicts)
    assert [v.winner for v in verdicts] == ["tie", "tie"]
    assert [v.p_a for v in verdicts] == pytest.approx([0.5, 0.5], abs=1e-6)
    assert position_bias_rate(verdicts) == 1.0


def test_verdicts_by_hand():
    assert Verdict(0.8, 0.7).winner == "a" and Verdict(0.8, 0.7).p_a == pytest.approx(0.75)
    assert Verdict(0.2, 0.4).winner == "b"
    assert Verdict(0.8, 0.3).winner == "tie" and Verdict(0.5, 0.9).winner == "tie"
    assert position_bias_rate([Verdict(0.8, 0.7), Verdict(0.8, 0.3)]) == 0.5


def test_the_probability_is_the_models_next_token_choice_between_the_labels(tiny):
    """P(first) from a batch equals the softmax over the two labels' logits of the question
    alone (padding in the batch changes nothing)."""
    model, tokenizer = tiny
    judge = Judge(model, tokenizer, "tiny", batch_size=2)
    questions = [judge.question(p, a, b, "Be right.") for p, a, b in zip(*PAIRS)]
    batched = judge.p_first(questions)
    for question, p in zip(questions, batched):
        ids = tokenizer(question, return_tensors="pt", add_special_tokens=False).input_ids
        logp = model(ids).logits[0, -1].log_softmax(-1)
        a, b = (logp[label_token_ids(tokenizer, x)].logsumexp(-1) for x in "AB")
        assert p == pytest.approx(torch.stack([a, b]).softmax(-1)[0].item(), abs=1e-5)
    assert 0.0 < min(batched) and max(batched) < 1.0


def test_shipped_constitutions_and_bad_ones(tmp_path):
    assert [p.name for p in load_constitution("math")][0] == "correct"
    assert len(load_constitution("explain")) == 4
    plain = tmp_path / "mine.yaml"
    plain.write_text("- Be kind.\n- Be brief.\n")
    assert [p.text for p in load_constitution(str(plain))] == ["Be kind.", "Be brief."]
    bad = tmp_path / "bad.yaml"
    bad.write_text("- Be kind.\n- {name: x}\n")
    with pytest.raises(ConstitutionError, match=r"bad.yaml, principle 2: needs a text"):
        load_constitution(str(bad))
    with pytest.raises(ConstitutionError, match=r"'nope': no such file.*shipped: \['explain', "):
        load_constitution("nope")
