"""FIPO, Future-KL Influenced Policy Optimization (arXiv 2603.19835), on DAPO: each token's
advantage is scaled by f = clip(exp(F_t), 0.8, 1.2), F_t the discounted sum of the log-ratios
of the token and those after it (half-life 32 tokens), with DAPO's loss and dual clip c = 10.

  python launch/train.py --config=configs/fipo.py:smollm2 --workdir=runs/fipo

The rest follows configs/dapo.py: clip-higher ε = (0.2, 0.28), token-mean loss, no KL, dynamic
sampling, and an overlong window that follows the completion budget. The log-ratios are exactly
0 on the first update of a rollout batch (π_θ = π_old), where FIPO is DAPO, so each batch is used
for two passes (`train.num_updates`, mu = 2; the official port asserts multi-step training).
"""
import pathlib

import ml_collections

from jaxrl_llm.objectives import presets
from jaxrl_llm.training.config_files import load_config_module


def _base():
  return load_config_module(pathlib.Path(__file__).with_name("base.py"))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  base = _base()
  c = base.get_config(arg)
  c.objective = presets.default_config("fipo")
  base.dapo_sampling(c)
  c.train.num_updates = 2             # the log-ratios are 0 on the first update: mu >= 2
  return c
