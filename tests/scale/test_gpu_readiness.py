"""What a first CUDA run needs that a CPU run does not show (issue 26), checked on the CPU:
collectives on the backend's device, the GPU a process takes, EOS ids, vLLM's context length,
checkpoint loading onto the CPU, bf16 settings and master weights."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from hybrid_rl.runtime import distributed


@pytest.fixture
def two_ranks_on(monkeypatch):
    """A pretend 2-process group on `backend`; all-reduces are recorded, not run."""
    reduced = []

    def on(backend):
        monkeypatch.setattr(dist, "is_initialized", lambda: True)
        monkeypatch.setattr(dist, "get_world_size", lambda: 2)
        monkeypatch.setattr(dist, "get_backend", lambda: backend)
        monkeypatch.setattr(dist, "all_reduce", lambda t, op=None: reduced.append(t.device))
        monkeypatch.setattr(dist, "all_gather_object",
                            lambda box, obj: box.__setitem__(slice(None), [obj] * len(box)))
        return reduced

    return on


def test_collectives_use_the_backends_device(two_ranks_on, monkeypatch):
    """NCCL takes only CUDA tensors: every helper builds its tensor on collective_device()."""
    reduced = two_ranks_on("gloo")
    distributed.mean_over_ranks({"a": 1.0})
    distributed.sum_over_ranks(3.0)
    distributed.all_ranks_true(True)
    assert reduced == [torch.device("cpu")] * 3
    monkeypatch.setattr(distributed, "device", lambda: torch.device("cuda", 1))
    two_ranks_on("nccl")
    assert distributed.collective_device() == torch.device("cuda", 1)
    chosen = []
    monkeypatch.setattr(distributed, "collective_device",
                        lambda: chosen.append(1) or torch.device("cpu"))
    distributed.mean_over_ranks({"a": 1.0})
    distributed.sum_over_ranks(3.0)
    distributed.all_ranks_true(True)
    assert len(chosen) == 3


@pytest.mark.parametrize("local_rank, visible, gpu", [(3, 8, 3), (3, 1, 0), (5, 4, 1)])
def test_a_process_takes_a_gpu_it_can_see(monkeypatch, local_rank, visible, gpu):
    """Where a scheduler gives each task one GPU, LOCAL_RANK 3 still means the only GPU."""
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: visible)
    assert distributed.local_gpu() == gpu


def test_every_eos_id_of_the_generation_config_ends_a_completion():
    """Qwen2.5-Instruct's generation config stops on <|im_end|> and on <|endoftext|> (its pad);
    a stop on either must end the mask there, not be read as truncation with padding after."""
    from test_fast_llama import TOK, llama

    from hybrid_rl.rollout import build_backend
    from hybrid_rl.rollout.hf import completion_mask_from, eos_token_ids

    model = llama()
    torch.manual_seed(0)
    free = build_backend("hf", model, TOK, max_new_tokens=24).generate(["12+3=", "x"], 8)
    common = int(torch.mode(free.completion_ids[free.completion_mask.bool()]).values)
    model.generation_config.eos_token_id = [TOK.eos_token_id, common]
    assert eos_token_ids(model, TOK) == sorted({TOK.eos_token_id, common})
    torch.manual_seed(0)
    out = build_backend("hf", model, TOK, max_new_tokens=24).generate(["12+3=", "x"], 8)
    ends = out.completion_mask.sum(1) - 1
    last = out.completion_ids[torch.arange(len(out)), ends]
    finished = ~out.truncated
    assert finished.any() and torch.isin(last[finished], torch.tensor([2, common])).all()
    mask, truncated = completion_mask_from(torch.tensor([[7, 5, 3, 0], [7, 7, 7, 7]]), [2, 5])
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]] and truncated.tolist() == [False, True]


def test_a_models_own_generation_settings_do_not_change_what_is_sampled():
    """generate() would apply a generation config's repetition_penalty and top_k: the
    rollout switches every processor off but its own, so its log-probs stay the trainer's."""
    from test_fast_llama import TOK, llama

    from hybrid_rl.algo.logprobs import completion_logprobs
    from hybrid_rl.rollout import build_backend

    model = llama(attention_bias=True)  # not the lean path: transformers' generate()
    model.generation_config.repetition_penalty, model.generation_config.top_k = 1.8, 3
    torch.manual_seed(1)
    out = build_backend("hf", model, TOK, max_new_tokens=12).generate(["12+3=", "7-1="], 4)
    got = completion_logprobs(model, out.prompt_ids, out.prompt_mask, out.completion_ids,
                              out.completion_mask)
    m = out.completion_mask.bool()
    assert torch.allclose(got.logp[m], out.rollout_logprobs[m], atol=1e-4)


def test_refilled_batches_pad_reference_logprobs_on_their_own_device():
    from hybrid_rl.rollout import RolloutBatch, concat_batches

    def batch(width):
        ids = torch.ones(1, width, dtype=torch.long)
        return RolloutBatch(ids, ids, ids, ids, torch.zeros(1, width), torch.zeros(1, dtype=bool),
                            ["x"], reference_logprobs=torch.zeros(1, width, device="meta"))

    joined = concat_batches([batch(2), batch(3)], pad_token_id=0)
    assert joined.reference_logprobs.device.type == "meta"
    assert joined.reference_logprobs.shape == (2, 3)


def test_checkpoints_load_onto_the_cpu(monkeypatch, tmp_path):
    from hybrid_rl.runtime import checkpoint

    seen = {}
    monkeypatch.setattr(checkpoint, "verify_manifest", lambda folder: None)
    monkeypatch.setattr(checkpoint.torch, "load", lambda *a, **kw: seen.update(kw) or {})
    checkpoint.load_trainer_state(tmp_path)
    assert seen["map_location"] == "cpu"


def test_a_fused_optimizers_step_is_restored_on_the_parameters_device():
    from hybrid_rl.runtime.engine import step_tensor

    shard = torch.zeros(4, device="meta")
    assert step_tensor(3.0, shard, on_device=True).device.type == "meta"
    assert step_tensor(3.0, shard, on_device=False).device.type == "cpu"


def test_half_precision_training_needs_fp32_master_weights():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from hybrid_rl.config.schema import ConfigError, register_configs
    from hybrid_rl.runtime.engine import DeepSpeedSettings, deepspeed_config

    register_configs()
    conf = str(distributed.__file__).rsplit("/hybrid_rl/", 1)[0] + "/conf"

    def validate(*overrides):
        with initialize_config_dir(config_dir=conf, version_base="1.3"):
            return OmegaConf.to_object(compose(config_name="config", overrides=list(overrides)))

    for bad in (["model.dtype=bfloat16"], ["model.dtype=float16", "deepspeed=zero2"],
                ["model.dtype=bfloat16", "deepspeed=zero2"]):
        with pytest.raises(ConfigError, match="model.dtype: training .* fp32 master weights"):
            validate(*bad)
    validate("model.dtype=bfloat16", "deepspeed=zero2", "deepspeed.bf16=true")
    with pytest.raises(ConfigError, match="deepspeed.bf16: deepspeed=ddp .* no fp32 master"):
        validate("model.dtype=bfloat16", "deepspeed=ddp", "deepspeed.bf16=true")
    config = deepspeed_config(DeepSpeedSettings(2, bf16=True), 4, 1.0)
    assert config["data_types"] == {"grad_accum_dtype": "fp32"}
    assert config["bf16"]["check_grad_overflow"]


def test_the_sync_check_tolerates_bf16_rounding_and_catches_stale_weights():
    """The probe statistic against the bf16 tolerance (0.1): a bf16 copy of the policy (its
    largest token gap is well above 0.1) passes; weights one small update stale fail."""
    import copy

    from test_fast_llama import TOK, llama

    from hybrid_rl.rollout.vllm_backend import PROBE_TEXT, probe_statistic

    ids = torch.tensor([TOK(PROBE_TEXT, add_special_tokens=False)["input_ids"]])

    def logp(model):
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1].float()
        return torch.log_softmax(logits, -1).gather(-1, ids[0, 1:, None]).squeeze(-1)

    policy = llama()
    bf16 = copy.deepcopy(policy).to(torch.bfloat16)
    stale = copy.deepcopy(policy)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in stale.parameters():
            p.add_(torch.randn_like(p) * 0.02 * p.abs().mean())
    assert (logp(policy) - logp(bf16)).abs().max() > 0.1  # the old max-based check failed here
    assert probe_statistic(logp(bf16), logp(policy)) < 0.1
    assert probe_statistic(logp(stale), logp(policy)) > 0.1


def test_bf16_checkpoints_keep_the_fp32_master_weights():
    """ZeRO-2 and ZeRO-3: three steps too small for bf16 to show, saved and resumed: the
    masters come back exactly and the next step continues exactly; without them the resume is
    measurably off (tests/helpers/bf16_master_resume.py)."""
    helper = Path(__file__).parents[1] / "helpers" / "bf16_master_resume.py"
    proc = subprocess.run([sys.executable, str(helper), "2", "3"], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "DS_ACCELERATOR": "cpu"})
    for stage in (2, 3):
        assert f"STAGE {stage} MASTERS OK" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-4000:]


def test_a_plain_fp32_resume_takes_the_master_weights_over_the_bf16_policy():
    """A bf16 ZeRO checkpoint resumed in one plain fp32 process: its weights become the fp32
    masters, not the saved policy's rounded bf16 values."""
    from hybrid_rl.algo.optim import make_scheduler
    from hybrid_rl.runtime.engine import MASTER_WEIGHTS, TorchEngine

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    engine = TorchEngine(model, optimizer, make_scheduler(optimizer, "constant", 0, 10), 1.0)
    masters = [torch.full((2, 3), 1.0 + 2**-12), torch.full((2,), -1.0 - 2**-11)]
    assert masters[0].to(torch.bfloat16).float().ne(masters[0]).all()  # finer than bf16
    state = {**optimizer.state_dict(), MASTER_WEIGHTS: masters}
    engine.load_optimizer_state(state)
    assert torch.equal(model.weight, masters[0]) and torch.equal(model.bias, masters[1])
    assert MASTER_WEIGHTS in state  # the caller's checkpoint dict is left as it was


def test_the_cpu_thread_setting_leaves_gpu_machines_at_torchs_default(monkeypatch):
    from hybrid_rl.recipes.build import seed_everything

    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    seed_everything(0, 2)
    assert calls == [2]  # this CPU machine
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    seed_everything(0, 2)
    assert calls == [2]  # a GPU machine: offloaded Adam keeps every core
