"""A NaN/inf loss or gradient skips the update and is counted; repeated ones stop the run."""
from types import SimpleNamespace

import pytest
import torch

from hybrid_rl.algo.optim import make_optimizer, make_scheduler
from hybrid_rl.algo.update import NonFiniteLoss, UpdateSettings, grpo_update
from hybrid_rl.models.loading import builtin_model_folder, load_policy, load_tokenizer
from hybrid_rl.recipes import grpo as train
from hybrid_rl.rollout import build_backend
from hybrid_rl.runtime.engine import TorchEngine

TINY = dict(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
            max_position_embeddings=32, init_seed=0)


@pytest.fixture
def poisoned(tmp_path):
    """A policy whose output layer holds an infinity: every loss is NaN."""
    folder = builtin_model_folder(TINY, tmp_path)
    model, tok = load_policy(str(folder)), load_tokenizer(str(folder))
    batch = build_backend("hf", model, tok, max_new_tokens=3).generate(["1+1="], n=2)
    with torch.no_grad():
        model.model.norm.weight[0] = float("inf")
    opt = make_optimizer(model, 1e-3, 0.0)
    return model, opt, make_scheduler(opt, "constant", 0, 10), batch


def _settings():
    return UpdateSettings("grpo", 0.2, 0.2, 0.0, 1, 8, 3, 1.0, False)


def test_nonfinite_loss_skips_the_update_and_leaves_weights(poisoned):
    model, opt, sched, batch = poisoned
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(NonFiniteLoss, match="update skipped"):
        grpo_update(
            TorchEngine(model, opt, sched, 1.0), None, batch, torch.tensor([1.0, -1.0]), _settings()
        )
    for a, b in zip(before, model.parameters()):
        assert torch.equal(a, b)  # inf == inf, so the poisoned weight compares equal too
    assert sched.last_epoch == 0  # no optimizer step was taken


def test_repeated_nonfinite_updates_stop_with_a_clear_error(poisoned):
    model, opt, sched, batch = poisoned
    run = SimpleNamespace(engine=TorchEngine(model, opt, sched, 1.0), reference=None,
                          settings=_settings(), step=0, nonfinite_in_a_row=0,
                          cfg=SimpleNamespace(trainer=SimpleNamespace(max_nonfinite_steps=2)))
    adv = torch.tensor([1.0, -1.0])
    assert train.guarded_update(run, batch, adv) == {"skipped_nonfinite": 1.0}
    assert train.guarded_update(run, batch, adv) == {"skipped_nonfinite": 1.0}
    with pytest.raises(train.NonFiniteTraining,
                       match="3 consecutive updates had a non-finite loss"):
        train.guarded_update(run, batch, adv)
