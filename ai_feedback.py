"""AI feedback: `python ai_feedback.py` (a judge model labels preference pairs against a
constitution). The recipe: hybrid_rl/recipes/ai_feedback.py."""
import hydra
from omegaconf import DictConfig

from hybrid_rl.config.schema import register_configs
from hybrid_rl.recipes import ai_feedback

register_configs()


@hydra.main(config_path="conf", config_name="ai_feedback", version_base="1.3")
def main(dcfg: DictConfig) -> float:
    return ai_feedback.main(dcfg)


if __name__ == "__main__":
    main()
