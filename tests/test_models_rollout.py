"""Built-in model and tokenizer, model loading errors, and the hf rollout backend."""
import pytest
import torch

from hybrid_rl.algo.logprobs import completion_logprobs
from hybrid_rl.models.loading import (
    ModelLoadError,
    builtin_model_folder,
    load_policy,
    load_tokenizer,
    resolve_model_location,
)
from hybrid_rl.models.tiny import build_char_tokenizer
from hybrid_rl.plugins import PluginError
from hybrid_rl.rollout import build_backend
from hybrid_rl.rollout.hf import completion_mask_from

TINY = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
            max_position_embeddings=64, init_seed=0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = builtin_model_folder(TINY, tmp_path_factory.mktemp("cache"))
    return load_policy(str(folder)), load_tokenizer(str(folder)), folder


def test_char_tokenizer_round_trips_whitespace_and_code():
    tok = build_char_tokenizer()
    text = "def f(x):\n\treturn x  +  1  # ok"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text) and tok.decode(ids) == text
    assert tok.padding_side == "left" and tok.eos_token_id != tok.pad_token_id


def test_builtin_folder_is_cached_and_reloads_the_same_weights(tiny, tmp_path):
    model, tok, folder = tiny
    assert builtin_model_folder(TINY, folder.parents[1]) == folder
    again = load_policy(str(folder))
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    assert load_tokenizer(str(folder)).decode(tok("a b")["input_ids"]) == "a b"


def test_bad_model_paths_give_clear_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="model path not found"):
        resolve_model_location("hf", str(tmp_path / "missing"), None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_model_location("hf", str(tmp_path / "empty"), None)
    with pytest.raises(ModelLoadError, match="not installed"):
        resolve_model_location("gguf", None, "no_such_model_package_xyz")
    # hub id, loaded when online
    assert resolve_model_location("hf", "org/model", None) == "org/model"


def test_completion_mask_stops_after_first_eos():
    ids = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8]])
    mask, truncated = completion_mask_from(ids, eos_ids=2)
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert truncated.tolist() == [False, True]


def test_hf_rollout_groups_masks_and_logprobs_match_the_trainer(tiny):
    model, tok, _ = tiny
    torch.manual_seed(0)
    rollout = build_backend("hf", model, tok, max_new_tokens=6, temperature=1.0)
    prompts = ["12+3=", "7-100="]  # different lengths: exercises left padding
    batch = rollout.generate(prompts, n=3)
    assert len(batch) == 6 and batch.completion_ids.shape[1] <= 6
    assert batch.prompt_ids[0].tolist() == batch.prompt_ids[2].tolist()  # a group shares its prompt
    assert (batch.prompt_mask[3:].sum(1) == 6).all() and (batch.prompt_mask[:3].sum(1) == 5).all()
    for i, text in enumerate(batch.texts):
        n = int(batch.completion_mask[i].sum()) - (0 if batch.truncated[i] else 1)
        assert text == tok.decode(batch.completion_ids[i, :n], skip_special_tokens=True)
    logp = completion_logprobs(model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                               batch.completion_mask, temperature=1.0).logp
    m = batch.completion_mask.bool()
    assert torch.allclose(logp[m], batch.rollout_logprobs[m], atol=1e-4)


def test_greedy_rollout_is_deterministic(tiny):
    model, tok, _ = tiny
    rollout = build_backend("hf", model, tok, max_new_tokens=5)
    assert rollout.generate(["1+1="], 1, greedy=True).texts == rollout.generate(["1+1="], 1,
                                                                                greedy=True).texts


def test_unknown_backend_is_named(tiny):
    model, tok, _ = tiny
    with pytest.raises(PluginError, match="unknown rollout backend 'tgi'; registered: .*'hf'"):
        build_backend("tgi", model, tok, max_new_tokens=2)


def test_sft_warm_up_is_cached_by_its_demonstrations_not_only_its_settings(tiny, tmp_path):
    from hybrid_rl.data.samples import Sample
    from hybrid_rl.models.warm_start import warm_start

    _, _, folder = tiny
    settings = dict(
        cache_dir=tmp_path, key_parts={"task": "t"}, steps=1, batch_size=2, learning_rate=1e-3,
        lr_schedule="constant", weight_decay=0.0, seed=0, log_every=1, log=lambda _: None,
    )
    demos = [Sample("1+1=", "2", "t", "2"), Sample("2+2=", "4", "t", "4")]
    first = warm_start(folder, demos, **settings)
    assert warm_start(folder, demos, **settings) == first  # same demonstrations: reused
    # e.g. a generator changed
    changed = [Sample("1+1=", "2", "t", "2"), Sample("2+2=", "5", "t", "5")]
    assert warm_start(folder, changed, **settings) != first
