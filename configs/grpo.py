"""GRPO (Shao et al., arXiv 2402.03300) on a reasoning-gym task: the base config as it stands.

  python launch/train.py --config=configs/grpo.py:smollm2 --workdir=runs/grpo
  python launch/train.py --config=configs/grpo.py:qwen2.5-0.5b --config.objective.kl_coef=0.0

The arg picks the model (`base.MODELS`, an HF folder / hub id, or a .gguf).
"""
import importlib.util
import pathlib

import ml_collections


def _base():
  spec = importlib.util.spec_from_file_location(
      "jaxrl_llm_configs_base", pathlib.Path(__file__).with_name("base.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = _base().get_config(arg)
  c.objective.name = "grpo"
  return c
