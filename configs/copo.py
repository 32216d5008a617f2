"""COPO, Consistency-Aware Policy Optimization (Han, Chen, Shao et al.; arXiv 2508.04138): when a
group's answers agree (all right or all wrong) GRPO's local advantage vanishes; COPO adds a global
advantage, the group's accuracy normalised across the batch's prompts, and blends the two clipped
losses per prompt by the entropy of its answers.

  python launch/train.py --config=configs/copo.py:smollm2 --workdir=runs/copo
  python launch/train.py --config=configs/copo.py --config.objective.gate=only_soft

    H_k = entropy (bits) of group k's answers;  w = sigmoid(κ(H_k − h0)), 0 where A^l = 0
    A^g = (R^g_k − mean R^g)/(std R^g + ε), R^g_k = group accuracy;  A^l = GRPO's advantage
    ℓ = (1 − w)·ℓ^clip(ρ, A^g) + w·ℓ^clip(ρ, A^l),  L = seq_mean_token_mean

The objective is the preset's (official code and scripts): κ = 20, h0 = 0.5 bits, no consistency
discount, gate "soft_with_forced", ε = 0.2 with verl's dual clip c = 3, β = 0. The answers come
from the `answers` hook (the run's extractor, `reward.extract`; compared by exact string
equality; a row without an answer is its own class). Uncertain: which gate variant the paper's
tables use (the code has five; "soft_with_forced" is the spec's reconstruction) and β (0 or 0.001
in the scripts). The paper's runs take 512 prompts per step, so the global normalisation is over
many prompts; at CPU scale (8 prompts) A^g is noisier.
"""
import pathlib

import ml_collections

from jaxrl_llm.objectives import presets
from jaxrl_llm.training.config_files import load_config_module


def _base():
  return load_config_module(pathlib.Path(__file__).with_name("base.py"))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = _base().get_config(arg)
  c.objective = presets.default_config("copo")
  c.hooks.answers = ml_collections.ConfigDict()
  return c
