"""An objective composed in the config from transform names (`presets.custom`), no preset needed.

Here: DAPO's in-batch filter of all-equal groups, GRPO advantages, clip-higher (0.2 / 0.28), an
entropy bonus and token-mean aggregation; no KL, so no reference model. Edit the tuples (the order
is the chain's) and `args` (each transform's keyword arguments) to try another combination:

  python launch/train.py --config=configs/custom.py:smollm2 --workdir=runs/custom \\
      --config.objective.args.entropy_bonus.coef=0.003
"""
import pathlib

import ml_collections

from jaxrl_llm.objectives import presets
from jaxrl_llm.training.config_files import load_config_module


def _base():
  return load_config_module(pathlib.Path(__file__).with_name("base.py"))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = _base().get_config(arg)
  c.objective = presets.default_config("custom")
  c.objective.rollout = ("group_advantage", "drop_uniform_groups")
  c.objective.loss = ("ppo_clip", "entropy_bonus", "aggregate")
  c.objective.args = ml_collections.ConfigDict({
      "ppo_clip": {"eps_low": 0.2, "eps_high": 0.28},
      "entropy_bonus": {"coef": 0.001},
      "aggregate": {"mode": "token_mean"},
  })
  return c
