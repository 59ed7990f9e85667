"""Supervised fine-tuning on a task's demonstrations: `python sft.py task=math`.
The recipe: hybrid_rl/recipes/sft.py."""
import hydra
from omegaconf import DictConfig

from hybrid_rl.config.schema import register_configs
from hybrid_rl.recipes import sft

register_configs()


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(dcfg: DictConfig) -> float:
    return sft.main(dcfg)


if __name__ == "__main__":
    main()
