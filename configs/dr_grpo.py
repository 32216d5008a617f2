"""Dr. GRPO (Liu et al., arXiv 2503.20783): no length or std normalisation, no KL.

  python launch/train.py --config=configs/dr_grpo.py:smollm2 --workdir=runs/dr_grpo
"""
import pathlib

import ml_collections

from jaxrl_llm.objectives import presets
from jaxrl_llm.training.config_files import load_config_module


def _base():
  return load_config_module(pathlib.Path(__file__).with_name("base.py"))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = _base().get_config(arg)
  c.objective = presets.default_config("dr_grpo")
  return c
