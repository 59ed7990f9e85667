"""GRPO training: `python train.py task=math` (any config value can be overridden; see
README). The recipe itself, top to bottom: hybrid_rl/recipes/grpo.py; with a critic
(`trainer=ppo`, trainer.advantage=gae) its step is hybrid_rl/recipes/ppo.py's."""
import hydra
from omegaconf import DictConfig

from hybrid_rl.config.schema import register_configs
from hybrid_rl.recipes import grpo, ppo

register_configs()


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(dcfg: DictConfig) -> float:
    return grpo.main(dcfg, ppo.LOOP if dcfg.trainer.advantage == "gae" else None)


if __name__ == "__main__":
    main()
