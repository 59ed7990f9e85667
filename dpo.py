"""Direct preference optimisation: `python dpo.py task=math` (online DPO on the task's composed
reward) or `dpo.pairs=offline` (preference files or rubric-labelled pairs); losses dpo, ipo,
simpo, orpo (`dpo.loss`). The recipe: hybrid_rl/recipes/dpo.py."""
import hydra
from omegaconf import DictConfig

from hybrid_rl.config.schema import register_configs
from hybrid_rl.recipes import dpo

register_configs()


@hydra.main(config_path="conf", config_name="dpo", version_base="1.3")
def main(dcfg: DictConfig) -> float:
    return dpo.main(dcfg)


if __name__ == "__main__":
    main()
