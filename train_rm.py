"""Reward-model training: `python train_rm.py` (Bradley-Terry on preference pairs).
The recipe: hybrid_rl/recipes/reward_model.py."""
import hydra
from omegaconf import DictConfig

from hybrid_rl.config.schema import register_configs
from hybrid_rl.recipes import reward_model

register_configs()


@hydra.main(config_path="conf", config_name="train_rm", version_base="1.3")
def main(dcfg: DictConfig) -> float:
    return reward_model.main(dcfg)


if __name__ == "__main__":
    main()
