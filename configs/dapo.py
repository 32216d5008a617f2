"""DAPO (Yu et al., arXiv 2503.14476): clip-higher, token-mean loss, overlong shaping, no KL, and
dynamic sampling (over-sample prompts until the batch holds groups with unequal rewards).

  python launch/train.py --config=configs/dapo.py:smollm2 --workdir=runs/dapo

At CPU scale the overlong window follows the completion budget: `max_len` is
`sampling.max_new_tokens` (a field reference, so overriding the budget moves it) and the soft
penalty starts a quarter of the budget before it (the paper: 20480 and 4096 of a 20480 budget).
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
  c.objective = presets.default_config("dapo")
  budget = c.sampling.get_ref("max_new_tokens")
  c.objective.max_len = budget.identity()  # one-way tie: setting max_len leaves the budget
  c.objective.cache_len = budget // 4
  c.train.max_sampling_rounds = 3     # dynamic sampling: up to 3 rounds of prompts per batch
  return c
