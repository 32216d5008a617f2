"""DAPO with divergence-weighted advantages ("Sparse but Critical", arXiv 2603.22446): tokens
where the policy moved away from the behaviour policy (k3 divergence) weigh up to s/2 more,
w = 1 + s·(σ(α·KL) − ½).

  python launch/train.py --config=configs/dapo_divergence.py:smollm2 --workdir=runs/dapo_div
  python launch/train.py --config=configs/dapo_divergence.py --config.objective.alpha=-200.0

s = 0.3, α = 200 (α < 0 boosts low-divergence tokens instead; |α| is a reconstruction). The rest
follows configs/dapo.py: clip-higher ε = (0.2, 0.28), token-mean loss, no KL, dynamic sampling,
and an overlong window that follows the completion budget. The divergence is exactly 0 on the
first update of a rollout batch (π_θ = π_old), where every weight is 1, so each batch is used
for two passes (`train.num_updates`, mu = 2).
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
  c.objective = presets.default_config("dapo_divergence")
  base.dapo_sampling(c)
  c.train.num_updates = 2             # the divergence is 0 on the first update: mu >= 2
  return c
