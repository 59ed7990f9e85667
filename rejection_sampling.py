"""Rejection-sampling fine-tuning: `python rejection_sampling.py task=math`: rounds of best-of-N
by the task's composed reward, then SFT on the kept answers. The recipe:
hybrid_rl/recipes/rejection_sampling.py."""
import hydra
from omegaconf import DictConfig

from hybrid_rl.config.schema import register_configs
from hybrid_rl.recipes import rejection_sampling

register_configs()


@hydra.main(config_path="conf", config_name="rejection_sampling", version_base="1.3")
def main(dcfg: DictConfig) -> float:
    return rejection_sampling.main(dcfg)


if __name__ == "__main__":
    main()
