"""Hostile or broken inputs fail early with a message naming the file, row or field."""
import json

import pytest
from helpers.runs import ROOT, TINY_OVERRIDES, run_entry
from hydra import compose, initialize_config_dir

from hybrid_rl.config.schema import ConfigError, register_configs
from hybrid_rl.data.samples import DataError
from hybrid_rl.recipes import build
from hybrid_rl.runtime.checkpoint import CheckpointError

register_configs()


def _config(tmp_path, *overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = build.to_config(
            compose("config", [*TINY_OVERRIDES, f"cache_dir={tmp_path}", *overrides])
        )
    return cfg


def _long_prompt_file(tmp_path):
    rows = [{"question": "1+1=", "answer": "2"}] * 5 + [{"question": "9" * 300, "answer": "1"}]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_prompt_longer_than_the_context_names_file_and_row(tmp_path):
    path = _long_prompt_file(tmp_path)
    cfg = _config(tmp_path, "task.data.source=jsonl", f"task.data.path={path}",
                  "task.data.eval_fraction=0.2",
                  "model.tiny.max_position_embeddings=64", "model.warmup_sft=false")
    train, held = build.task_samples(cfg)
    with pytest.raises(DataError, match=rf"{path}, row 6: prompt is 300 tokens, more than the 60"):
        build.fit_context(cfg, build.base_location(cfg),
                          build.load_tokenizer(build.base_location(cfg)), train, held)


def test_overlong_prompts_can_be_skipped(tmp_path):
    path = _long_prompt_file(tmp_path)
    cfg = _config(tmp_path, "task.data.source=jsonl", f"task.data.path={path}",
                  "task.data.eval_fraction=0.2",
                  "model.tiny.max_position_embeddings=64", "task.data.on_bad_row=skip")
    train, held = build.task_samples(cfg)
    location = build.base_location(cfg)
    kept_train, kept_held = build.fit_context(
        cfg, location, build.load_tokenizer(location), train, held
    )
    assert len(kept_train) + len(kept_held) == 5


def test_completion_budget_larger_than_the_context_is_a_config_error(tmp_path):
    cfg = _config(tmp_path, "model.tiny.max_position_embeddings=16", "rollout.max_new_tokens=16")
    train, held = build.task_samples(cfg)
    location = build.base_location(cfg)
    with pytest.raises(ConfigError, match="rollout.max_new_tokens=16 does "
                                          "not fit the model's context of 16"):
        build.fit_context(cfg, location, build.load_tokenizer(location), train, held)


def test_corrupt_checkpoint_stops_resume_with_its_name(tmp_path):
    run_dir = tmp_path / "run"
    run_entry("train.py", run_dir, "trainer.max_steps=1", cache=tmp_path / "cache")
    ckpt = run_dir / "checkpoints" / "step_000001"
    (ckpt / "trainer_state.pt").write_bytes(b"garbage")
    proc = run_entry("train.py", tmp_path / "resumed", f"checkpoint.resume={ckpt}",
                     cache=tmp_path / "cache", check=False)
    assert proc.returncode != 0
    assert "trainer_state.pt does not match its checksum (corrupt)" in proc.stderr
    assert CheckpointError.__name__ in proc.stderr


def test_resume_on_changed_data_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_entry("train.py", run_dir, "trainer.max_steps=1", cache=tmp_path / "cache")
    proc = run_entry("train.py", tmp_path / "resumed", f"checkpoint.resume={run_dir}",
                     "task.data.num_train=32", cache=tmp_path / "cache", check=False)
    assert proc.returncode != 0 and "the task data changed" in proc.stderr


def test_resume_from_nowhere_is_named(tmp_path):
    proc = run_entry("train.py", tmp_path / "r", f"checkpoint.resume={tmp_path}/missing",
                     cache=tmp_path, check=False)
    assert (
        proc.returncode != 0
        and f"checkpoint.resume={tmp_path}/missing: no checkpoint found" in proc.stderr
    )
