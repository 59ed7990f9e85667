"""PPO's critic: a scalar head on a transformer trunk, one value per position.

By default the trunk is a copy of the policy's own (its starting weights); `critic.model`
names another Hugging Face folder instead. Where a reward model of the policy's architecture
exists, trunk and head start from it, as in the classic RLHF recipe (InstructGPT).
"""
from __future__ import annotations

import copy
import logging
from typing import Optional

import torch
from torch import nn

log = logging.getLogger("hybrid_rl")


class ValueModel(nn.Module):
    """values[b, i]: the expected return from position i on (the state after token i)."""

    def __init__(self, trunk: nn.Module, hidden_size: int):
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.head.weight)  # every value starts at 0: GAE's plain return
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids, attention_mask, position_ids=None) -> torch.Tensor:
        hidden = self.trunk(input_ids=input_ids, attention_mask=attention_mask,
                            position_ids=position_ids).last_hidden_state
        return self.head(hidden.float()).squeeze(-1)


def completion_values(critic: ValueModel, prompt_ids, prompt_mask, completion_ids,
                      completion_mask) -> torch.Tensor:
    """[S, T] V of the state each completion token is sampled from (aligned with the token's
    log-prob: the position before it), positions from the attention mask as generate() has."""
    device = next(critic.parameters()).device
    input_ids = torch.cat([prompt_ids, completion_ids], 1).to(device)
    attention = torch.cat([prompt_mask, completion_mask], 1).to(device)
    position_ids = (attention.cumsum(1) - 1).clamp(min=0)
    values = critic(input_ids, attention, position_ids)
    return values[:, prompt_ids.shape[1] - 1 : -1] * completion_mask.to(device)


def critic_from_policy(policy) -> ValueModel:
    critic = ValueModel(copy.deepcopy(policy.base_model), policy.config.hidden_size)
    for p in critic.parameters():
        p.requires_grad_(True)
    return critic.train()


def critic_from_folder(location: str) -> ValueModel:
    from transformers import AutoModel

    trunk = AutoModel.from_pretrained(location)
    return ValueModel(trunk, trunk.config.hidden_size).train()


def start_from_reward_model(critic: ValueModel, reward_model: Optional[nn.Module]) -> bool:
    """Copy a reward model's trunk and scalar head into the critic when the architectures
    match (same trunk class and parameter shapes); False, with the reason logged, otherwise."""
    if reward_model is None:
        return False
    trunk = reward_model.base_model
    head = next((m for m in (getattr(reward_model, "score", None),
                             getattr(reward_model, "classifier", None))
                 if isinstance(m, nn.Linear) and m.out_features == 1), None)
    mine = critic.trunk.state_dict()
    theirs = trunk.state_dict()
    if (type(trunk) is not type(critic.trunk) or head is None or mine.keys() != theirs.keys()
            or any(mine[k].shape != theirs[k].shape for k in mine)):
        log.info("[critic] the reward model's architecture differs from the policy's: the "
                 "critic starts from the policy's trunk")
        return False
    critic.trunk.load_state_dict(theirs)
    with torch.no_grad():
        critic.head.weight.copy_(head.weight)
        critic.head.bias.copy_(head.bias if head.bias is not None else torch.zeros(1))
    log.info("[critic] trunk and head start from the reward model")
    return True
