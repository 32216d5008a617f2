"""GRPO with the unlikeliness reward ("Rewarding the Unlikely", He, Fried & Welleck, arXiv
2506.02355): a correct sample's reward shrinks with its likelihood rank in its group,
r' = r·(1 − β·u/n), so rare correct samples get the largest advantages.

  python launch/train.py --config=configs/unlikeliness.py:smollm2 --workdir=runs/unlikeliness

The objective is the preset's (official code): β = 0.25, groups with 0 or n successes dropped,
ε = 0.2, k3 KL 0.1 (so a reference model is held), token-mean loss. The paper's recipe takes two
PPO epochs per rollout batch (`train.num_updates`, mu = 2): its second finding is that more
steps per batch also reduce rank bias, as a likely sample's ratio is clipped once it passes
1 + ε while rare correct samples keep their gradient. The recipe buffers rollouts until enough
groups survive the filter: dynamic sampling here (up to 3 rounds of prompts per batch).
"""
import pathlib

import ml_collections

from jaxrl_llm.objectives import presets
from jaxrl_llm.training.config_files import load_config_module


def _base():
  return load_config_module(pathlib.Path(__file__).with_name("base.py"))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = _base().get_config(arg)
  c.objective = presets.default_config("unlikeliness")
  c.train.num_updates = 2             # the paper's ppo_epochs = 2
  c.train.max_sampling_rounds = 3     # refill the groups the 0-or-n-successes filter drops
  return c
