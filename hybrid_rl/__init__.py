"""hybrid-rl: GRPO on a per-task mix of verifiable and learned preference rewards."""

__version__ = "0.1.0"
