"""GSPO (Zheng et al., arXiv 2507.18071): sequence-level importance ratio and clipping.

  python launch/train.py --config=configs/gspo.py:smollm2 --workdir=runs/gspo

The paper splits each rollout batch into four minibatches (off-policy updates after the first),
which is where its sequence-level clipping matters: four minibatches of whole groups here.
"""
import pathlib

import ml_collections

from jaxrl_llm.objectives import presets
from jaxrl_llm.training.config_files import load_config_module


def _base():
  return load_config_module(pathlib.Path(__file__).with_name("base.py"))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = _base().get_config(arg)
  c.objective = presets.default_config("gspo")
  c.train.num_minibatches = 4
  c.train.num_micro_batches = 1     # 16 rows per minibatch
  return c
