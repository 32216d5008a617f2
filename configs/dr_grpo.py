"""Dr. GRPO (Liu et al., arXiv 2503.20783): no length or std normalisation, no KL.

  python launch/train.py --config=configs/dr_grpo.py:smollm2 --workdir=runs/dr_grpo
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
  c.objective = presets.default_config("dr_grpo")
  return c
