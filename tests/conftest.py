import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # entry scripts (train.py, sft.py) live at the repository root


# Tiny settings that make the real entry points finish in seconds.
TINY_OVERRIDES = [
    "model.tiny.hidden_size=32", "model.tiny.num_layers=2", "model.tiny.num_heads=2",
    "model.tiny.intermediate_size=64", "sft.steps=4", "sft.batch_size=8", "sft.log_every=2",
    "task.data.num_train=64", "task.data.num_eval=8",
    "trainer.prompts_per_step=4", "trainer.num_generations=2", "rollout.max_new_tokens=4",
    "logging.progress_bar=false", "logging.samples_every_steps=1", "logging.num_samples=2",
    "eval.every_steps=1", "num_threads=1",
]
