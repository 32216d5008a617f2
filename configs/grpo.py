"""GRPO (Shao et al., arXiv 2402.03300) on a reasoning-gym task: the base config as it stands.

  python launch/train.py --config=configs/grpo.py:smollm2 --workdir=runs/grpo
  python launch/train.py --config=configs/grpo.py:qwen2.5-0.5b --config.objective.kl_coef=0.0

The arg picks the model (`base.MODELS`, an HF folder / hub id, or a .gguf).
"""
import pathlib

import ml_collections

from jaxrl_llm.training.config_files import load_config_module


def _base():
  return load_config_module(pathlib.Path(__file__).with_name("base.py"))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = _base().get_config(arg)
  c.objective.name = "grpo"
  return c
