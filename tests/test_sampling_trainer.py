"""Dynamic sampling and the policy update (mu > 1, KL reference) on the built-in model."""
import math

import pytest
import torch

from hybrid_rl.algo import grpo
from hybrid_rl.algo.optim import make_optimizer, make_scheduler
from hybrid_rl.algo.update import UpdateSettings, grpo_update
from hybrid_rl.data.samples import PromptStream, Sample
from hybrid_rl.models.loading import builtin_model_folder, frozen_copy, load_policy, load_tokenizer
from hybrid_rl.rewards.composition import RewardComposer, SignalRule
from hybrid_rl.rewards.scorer import RewardScorer, Signal
from hybrid_rl.rollout import RolloutBatch, build_backend
from hybrid_rl.rollout.scored_groups import sample_groups
from hybrid_rl.runtime.engine import TorchEngine

TINY = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
            max_position_embeddings=64, init_seed=0)


class ScriptedRollout:
    """Returns completions from a script keyed by prompt: group outcomes are chosen by the test."""

    def __init__(self, script):
        self.script = script

    def generate(self, prompts, n, *, greedy=False):
        texts = [self.script[p][i] for p in prompts for i in range(n)]
        N = len(texts)
        ids = torch.ones(N, 2, dtype=torch.long)
        return RolloutBatch(ids, ids.clone(), ids.clone(), ids.clone(), torch.zeros(N, 2),
                            torch.zeros(N, dtype=torch.bool), texts)


def exact(completions, references, **_):
    return [float(c == r) for c, r in zip(completions, references)]


def _setup(dynamic_sampling, fill_rounds=0, reference_logprobs=None):
    # p0 and p2 have mixed outcomes; p1 and p3 all-wrong (no signal).
    prompts = [Sample(f"p{i}", "y", "t") for i in range(4)]
    script = {"p0": ["y", "n"], "p1": ["n", "n"], "p2": ["n", "y"], "p3": ["n", "n"]}
    stream = PromptStream(prompts, seed=0)
    stream._order = [0, 1, 2, 3]  # a known order keeps the expected groups readable
    scorer = RewardScorer({"t": [Signal("ok", exact, 1.0)]})
    return sample_groups(stream, ScriptedRollout(script), scorer,
                         RewardComposer({"t": {"ok": SignalRule(1.0)}}), prompts_per_step=2,
                         group_size=2, pad_token_id=0, dynamic_sampling=dynamic_sampling,
                         max_fill_rounds=fill_rounds, reference_logprobs=reference_logprobs)


def test_off_keeps_every_group():
    out = _setup("off")
    assert [s.prompt for s in out.samples] == ["p0", "p0", "p1", "p1"]
    assert out.reward.tolist() == [1.0, 0.0, 0.0, 0.0] and out.all_equal_fraction == 0.5


def test_drop_removes_groups_without_signal():
    out = _setup("drop")
    assert [s.prompt for s in out.samples] == ["p0", "p0"] and len(out.batch) == 2
    assert out.values["ok"] == [1.0, 0.0]


def test_fill_samples_fresh_prompts_until_the_batch_is_full():
    out = _setup("fill", fill_rounds=3)
    assert [s.prompt for s in out.samples] == ["p0", "p0", "p2", "p2"]
    assert out.all_equal_fraction == 0.5  # 2 of the 4 groups looked at had no signal


@pytest.mark.parametrize("mode, rounds", [("drop", 0), ("fill", 3)])
def test_step_metrics_describe_everything_sampled_not_only_the_kept_groups(mode, rounds):
    """Dropping all-wrong groups must not make the policy look better: accuracy and rewards
    are over every completion sampled (drop: p0 p1 -> 1 of 4 right; fill: p0..p3 -> 2 of 8),
    and the kept share is logged on its own."""
    from hybrid_rl.rollout.scored_groups import rollout_metrics

    out = _setup(mode, fill_rounds=rounds)
    m = rollout_metrics(out, "ok", "preference", group_size=2)
    expected_accuracy, kept = {"drop": (0.25, 0.5), "fill": (0.25, 0.5)}[mode]
    assert m["accuracy"] == m["reward/ok/mean"] == m["reward/total/mean"] == expected_accuracy
    assert m["groups/kept_fraction"] == kept
    assert sum(out.values["ok"]) / len(out.values["ok"]) == 0.5  # what the update sees


def test_reference_logprobs_ride_on_the_batch_through_selection():
    """Computed for each generated batch while the pool scores, then kept for the kept rows."""
    seen = []

    def reference(batch):  # a stand-in whose rows say which completion they belong to
        seen.append(len(batch))
        return torch.tensor([[float(len(seen) * 10 + i)] * 2 for i in range(len(batch))])

    out = _setup("fill", fill_rounds=3, reference_logprobs=reference)
    assert seen == [4, 4]  # once per generated batch: p0 p1, then p2 p3
    # p0's rows, then p2's
    assert out.batch.reference_logprobs[:, 0].tolist() == [10.0, 11.0, 20.0, 21.0]
    assert _setup("off").batch.reference_logprobs is None


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = builtin_model_folder(TINY, tmp_path_factory.mktemp("cache"))
    return load_policy(str(folder)), load_tokenizer(str(folder))


@pytest.mark.parametrize("mu, beta", [(1, 0.0), (2, 0.04)])
def test_grpo_update_moves_the_policy_and_reports_stats(tiny, mu, beta):
    model, tok = tiny
    torch.manual_seed(0)
    reference = frozen_copy(model) if beta else None
    batch = build_backend("hf", model, tok, max_new_tokens=4).generate(["1+2=", "30-4="], n=4)
    adv = grpo.group_advantages(torch.tensor([1.0, 0, 0, 1, 0, 1, 1, 1]), 4)
    opt = make_optimizer(model, 1e-2, 0.0)
    sched = make_scheduler(opt, "constant", 0, 10)
    before = [p.detach().clone() for p in model.parameters()]
    settings = UpdateSettings("grpo", 0.2, 0.28, beta, mu, 3, 4, 1.0, False)
    stats = grpo_update(TorchEngine(model, opt, sched, 1.0), reference, batch, adv, settings)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert sched.last_epoch == mu  # one optimizer step per pass
    assert (
        stats["grad_norm"] > 0 and 0 <= stats["clip_fraction/total"] <= 1 and stats["entropy"] > 0
    )
    if mu == 1:
        assert stats["clip_fraction/total"] == 0  # ratio is exactly 1 on the first pass
    # the drift from the sampling policy, measured before each pass's step: 0 on the first
    assert (stats["approx_kl"] > 0) == (mu > 1)
    if beta:
        # the policy equals the reference on the first pass (k3 = 0); the second pass follows
        # an optimizer step, so the averaged KL is strictly positive
        assert stats["kl"] > 0
    else:
        assert "kl" not in stats


def test_precomputed_reference_logprobs_give_the_same_update(tiny):
    """The KL term from log-probs computed ahead (while the verifiers scored) equals the one
    the update computes itself."""
    import copy
    from dataclasses import replace

    from hybrid_rl.algo.update import reference_logprobs

    model, tok = tiny
    torch.manual_seed(1)
    batch = build_backend("hf", model, tok, max_new_tokens=4).generate(["1+2=", "30-4="], n=4)
    adv = grpo.group_advantages(torch.tensor([1.0, 0, 0, 1, 0, 1, 1, 1]), 4)
    settings = UpdateSettings("grpo", 0.2, 0.28, 0.04, 2, 3, 4, 1.0, False)
    reference = frozen_copy(model)
    results = []
    for ahead in (False, True):
        policy = copy.deepcopy(model)
        opt = make_optimizer(policy, 1e-2, 0.0)
        engine = TorchEngine(policy, opt, make_scheduler(opt, "constant", 0, 10), 1.0)
        given = replace(batch, reference_logprobs=reference_logprobs(reference, batch,
                                                                     settings)) if ahead else batch
        results.append(
            (grpo_update(engine, None if ahead else reference, given, adv, settings), policy)
        )
    (plain, plain_policy), (ahead, ahead_policy) = results
    assert ahead["kl"] > 0 and ahead["kl"] == pytest.approx(plain["kl"], rel=1e-6)
    for a, b in zip(plain_policy.parameters(), ahead_policy.parameters()):
        assert torch.allclose(a, b, atol=1e-7)


def test_a_nonfinite_later_pass_keeps_the_finished_passes_and_says_so(tiny, monkeypatch):
    """mu=3: pass 2's loss is NaN. Pass 1 stands (a whole, finite step, exactly the mu=1
    update), passes 2 and 3 are skipped and counted; nothing half-applied."""
    import copy

    model, tok = tiny
    torch.manual_seed(4)
    batch = build_backend("hf", model, tok, max_new_tokens=4).generate(["1+2=", "30-4="], n=4)
    adv = grpo.group_advantages(torch.tensor([1.0, 0, 0, 1, 0, 1, 1, 1]), 4)

    def engine_for(policy):
        opt = make_optimizer(policy, 1e-2, 0.0)
        return TorchEngine(policy, opt, make_scheduler(opt, "constant", 0, 10), 1.0)

    once = engine_for(copy.deepcopy(model))
    grpo_update(once, None, batch, adv, UpdateSettings("grpo", 0.2, 0.28, 0.0, 1, 8, 4, 1.0, False))
    real_loss, calls = grpo.policy_loss, []

    def nan_from_the_second_pass(*args, **kwargs):
        loss, stats = real_loss(*args, **kwargs)
        calls.append(1)
        return (loss * float("nan") if len(calls) > 1 else loss), stats

    monkeypatch.setattr(grpo, "policy_loss", nan_from_the_second_pass)
    thrice = engine_for(copy.deepcopy(model))
    stats = grpo_update(thrice, None, batch, adv,
                        UpdateSettings("grpo", 0.2, 0.28, 0.0, 3, 8, 4, 1.0, False))
    assert stats["skipped_passes"] == 2.0 and math.isfinite(stats["loss"])
    assert thrice.scheduler.last_epoch == 1  # one optimizer step taken
    for a, b in zip(once.module.parameters(), thrice.module.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_mask_truncated_completions_drops_exactly_the_truncated_rows(tiny):
    """With trainer.mask_truncated_completions the truncated rows teach nothing: the update
    equals one where their advantages are 0 (loss_type=grpo: a row's loss is its own mean),
    and differs from the unmasked update."""
    import copy
    from dataclasses import replace

    model, tok = tiny
    torch.manual_seed(5)
    batch = build_backend("hf", model, tok, max_new_tokens=4).generate(["1+2=", "30-4="], n=2)
    batch = replace(batch, truncated=torch.tensor([True, False, True, False]))
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])

    def updated(mask_truncated, advantages):
        policy = copy.deepcopy(model)
        opt = make_optimizer(policy, 1e-2, 0.0)
        engine = TorchEngine(policy, opt, make_scheduler(opt, "constant", 0, 10), 1.0)
        grpo_update(engine, None, batch, advantages,
                    UpdateSettings("grpo", 0.2, 0.28, 0.0, 1, 8, 4, 1.0, mask_truncated))
        return list(policy.parameters())

    masked = updated(True, adv)
    zeroed = updated(False, adv * torch.tensor([0.0, 1.0, 0.0, 1.0]))
    plain = updated(False, adv)
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(masked, zeroed))
    assert any(not torch.allclose(a, b, atol=1e-5) for a, b in zip(masked, plain))


def test_the_reference_pass_skips_the_samplers_truncation(tiny, monkeypatch):
    """The KL needs only the reference's whole distribution: with top-p set the reference
    pass must not sort its vocabulary (the policy's pass does), and its values are `full`."""
    from dataclasses import replace

    from hybrid_rl.algo import logprobs
    from hybrid_rl.algo.update import reference_logprobs

    model, tok = tiny
    torch.manual_seed(2)
    batch = build_backend("hf", model, tok, max_new_tokens=4).generate(["1+2="], n=2)
    settings = replace(UpdateSettings("grpo", 0.2, 0.2, 0.04, 1, 8, 4, 1.0, False), top_p=0.9)
    full = logprobs.completion_logprobs(model, batch.prompt_ids, batch.prompt_mask,
                                        batch.completion_ids, batch.completion_mask).full

    def no_truncation(*args, **kwargs):
        raise AssertionError("the reference pass applied top-k/top-p")

    monkeypatch.setattr(logprobs, "process_logits", no_truncation)
    assert torch.allclose(reference_logprobs(model, batch, settings), full)
