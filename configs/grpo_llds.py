"""Search-R1 GRPO + LLDS (Deng et al., "Lazy Likelihood Displacement", arXiv 2512.04220): a
one-sided penalty on the tokens of correct responses whose action lost likelihood since sampling.

  python launch/train.py --config=configs/grpo_llds.py:smollm2 --workdir=runs/grpo_llds
  python launch/train.py --config=configs/grpo_llds.py:qwen2.5-0.5b --config.objective.coef=0.3

The objective is the preset's paper recipe (GRPO ε = 0.2, k3 KL 0.001, so a reference model is
held; λ = 0.2, action gate, the paper's per-response normalisation). LLDS reads
Δ = old_logp − logp, which is exactly 0 on the first update of a rollout batch (π_θ = π_old), so
each batch is used for two passes (`train.num_updates`, mu = 2); the paper's 512-rollout /
256-minibatch setting gives two optimiser steps per batch for the same reason.
"""
import pathlib

import ml_collections

from jaxrl_llm.objectives import presets
from jaxrl_llm.training.config_files import load_config_module


def _base():
  return load_config_module(pathlib.Path(__file__).with_name("base.py"))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = _base().get_config(arg)
  c.objective = presets.default_config("grpo_llds")
  c.train.num_updates = 2     # LLDS is 0 on the first update of a batch: mu >= 2
  return c
