"""DAPO (Yu et al., arXiv 2503.14476): clip-higher, token-mean loss, overlong shaping, no KL, and
dynamic sampling (over-sample prompts until the batch holds groups with unequal rewards).

  python launch/train.py --config=configs/dapo.py:smollm2 --workdir=runs/dapo

At CPU scale the overlong window follows the completion budget: `max_len` is
`sampling.max_new_tokens` (a field reference, so overriding the budget moves it) and the soft
penalty starts a quarter of the budget before it (the paper: 20480 and 4096 of a 20480 budget).
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
  c.objective = presets.default_config("dapo")
  base.dapo_sampling(c)
  return c
