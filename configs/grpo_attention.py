"""GRPO with preplan-and-anchor credit (Attention Illuminates LLM Reasoning, Li et al., arXiv
2510.13554; spec B13): the old policy's attention over each response marks "preplan" tokens
(long look-back, WAAD of local heads) and "anchor" tokens (attended by many later tokens, FAI of
global heads); their token advantages are amplified, A' = A·(1 + γ) (γ = 1), coupled strategy.

  python launch/train.py --config=configs/grpo_attention.py:smollm2 --workdir=runs/grpo_attention
  python launch/train.py --config=configs/grpo_attention.py:smollm2 \
      --config.objective.strategy=anchor --config.objective.local_heads=3.1,7.4

The objective is the preset's (reconstruction, spec §6): W = 10, q = 0.1 of each response's tokens
per set, γ = 1, 4 local and 4 global heads chosen on each batch by mean attention distance (or the
"layer.head" lists), GRPO ε = 0.2, no KL. The rollout phase runs the statistics forward on the whole
batch (`training.rollout`; its cost is one forward with attention reductions plus, without head
lists, one more to measure the heads); the train steps are plain GRPO steps, so mu = 1 suffices.
"""
import pathlib

import ml_collections

from jaxrl_llm.objectives import presets
from jaxrl_llm.training.config_files import load_config_module


def _base():
  return load_config_module(pathlib.Path(__file__).with_name("base.py"))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = _base().get_config(arg)
  c.objective = presets.default_config("grpo_attention")
  return c
