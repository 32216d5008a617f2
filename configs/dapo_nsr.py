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
import pathlib

import ml_collections

from jaxrl_llm.objectives import presets
from jaxrl_llm.training.config_files import load_config_module


def _base():
  return load_config_module(pathlib.Path(__file__).with_name("base.py"))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  base = _base()
  c = base.get_config(arg)
  c.objective = presets.default_config("dapo_nsr")
  base.dapo_sampling(c)
  c.train.num_updates = 2             # ratios are 1 on the first update of a batch: mu >= 2
  return c
