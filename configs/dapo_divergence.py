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
import importlib.util
import pathlib

import ml_collections

from jaxrl_llm.objectives import presets


def _base():
  spec = importlib.util.spec_from_file_location(
      "jaxrl_llm_configs_base", pathlib.Path(__file__).with_name("base.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = _base().get_config(arg)
  c.objective = presets.default_config("dapo_divergence")
  budget = c.sampling.get_ref("max_new_tokens")
  c.objective.max_len = budget.identity()  # one-way tie: setting it leaves the budget
  c.objective.cache_len = budget // 4
  c.train.max_sampling_rounds = 3     # dynamic sampling: up to 3 rounds of prompts per batch
  c.train.num_updates = 2             # the divergence is 0 on the first update: mu >= 2
  return c
