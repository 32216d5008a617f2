"""DAPO with Near-boundary Stochastic Rescue ("Clipping Bottleneck", arXiv 2605.22703), token
level: a clipped token whose ratio is close to the trust region is rescued (keeps its unclipped
gradient) when a uniform multiplicative perturbation of its ratio falls back inside.

  python launch/train.py --config=configs/dapo_nsr.py:smollm2 --workdir=runs/dapo_nsr

The rest follows configs/dapo.py: clip-higher ε = (0.2, 0.28), token-mean loss, no KL, dynamic
sampling, and an overlong window that follows the completion budget (`max_len` is
`sampling.max_new_tokens` by reference, the soft penalty starts a quarter of it earlier). The
rescue band is u_min = 1/(1+ε_high) (a reconstruction). NSR only changes clipped tokens, and the
ratio is exactly 1 on the first update of a rollout batch (π_θ = π_old), so each batch is used
for two passes (`train.num_updates`, mu = 2). The noise comes from the train step's key, a fresh
one per optimiser step and micro-batch.
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
  c.objective = presets.default_config("dapo_nsr")
  budget = c.sampling.get_ref("max_new_tokens")
  c.objective.max_len = budget.identity()  # one-way tie: setting it leaves the budget
  c.objective.cache_len = budget // 4
  c.train.max_sampling_rounds = 3     # dynamic sampling: up to 3 rounds of prompts per batch
  c.train.num_updates = 2             # ratios are 1 on the first update of a batch: mu >= 2
  return c
