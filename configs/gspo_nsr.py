"""GSPO with Near-boundary Stochastic Rescue (arXiv 2605.22703), sequence level: the rescue rule
on GSPO's sequence ratio s_b (Zheng et al., arXiv 2507.18071), one draw per row, so a clipped
response is rescued whole or not at all.

  python launch/train.py --config=configs/gspo_nsr.py:smollm2 --workdir=runs/gspo_nsr

The objective is the preset's: GSPO's ε = (3e-4, 4e-4), seq_mean_token_mean, u_min = 1/(1+ε_high)
(a reconstruction). The sequence ratio is exactly 1 on the first update of a rollout batch
(π_θ = π_old), where nothing is clipped and so nothing is rescued: each batch is used for two
passes (`train.num_updates`, mu = 2).
"""
import pathlib

import ml_collections

from jaxrl_llm.objectives import presets
from jaxrl_llm.training.config_files import load_config_module


def _base():
  return load_config_module(pathlib.Path(__file__).with_name("base.py"))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = _base().get_config(arg)
  c.objective = presets.default_config("gspo_nsr")
  c.train.num_updates = 2     # ratios are 1 on the first update of a batch: mu >= 2
  return c
