"""Evaluate models on a task's held-out problems: `python evaluate.py evaluate.checkpoint=PATH`.
The recipe: hybrid_rl/recipes/evaluate.py."""
import hydra
from omegaconf import DictConfig

from hybrid_rl.config.schema import register_configs
from hybrid_rl.recipes import evaluate

register_configs()


@hydra.main(config_path="conf", config_name="evaluate", version_base="1.3")
def main(dcfg: DictConfig) -> float:
    return evaluate.main(dcfg)


if __name__ == "__main__":
    main()
