"""Knapsack RL (Li et al., ByteDance Seed, arXiv 2509.25849; spec B3): per-prompt rollout budgets.

  python launch/train.py --config=configs/knapsack.py:smollm2 --workdir=runs/knapsack

The `knapsack` hook keeps each prompt's reward history and, once a prompt has been seen with
enough rollouts, allocates the step's K·N_def rollouts (N_def = `sampling.n`) by an exact integer
DP on V(N, p) = (1 − p^N − (1 − p)^N)·p(1 − p)²: prompts that are always or never solved get
N_min, hard-but-solvable ones up to N_max (`training/hooks_knapsack.py`). The loss is the
paper's verl recipe, i.e. GRPO advantages on the groups of unequal size (segment statistics),
clipped to [−5, 5], with DAPO's clip-higher ε = (0.2, 0.28), dual clip c = 10, token-mean, β = 0:
the `grpo` preset with those arguments and `adv_clip = 5` (no group filter, no overlong shaping).

Paper defaults kept: N_def = 8, N_min = 2 (also for p = 0 and p = 1), N_max = 128, α = 0.9,
history window 16, min history 8, temperature 1. What differs at CPU scale: 8 prompts per step
(the paper 256), so the budget is 64 rollouts and N_max = 128 can never bind (one prompt gets at
most 64 − 7·2 = 50); `train.num_minibatches` = 2 optimizer steps per rollout batch (the paper 8);
the base config's learning rate, completion budget and data (chain_sum, not DAPO-Math-17K). The
history only acts on revisits, so the allocation stays uniform during the first epoch (2000
prompts / 8 = 250 steps here): shrink the source (`?size=`) for budgets from the second step on.
"""
import pathlib

import ml_collections

from jaxrl_llm.objectives import presets
from jaxrl_llm.training.config_files import load_config_module


def _base():
  return load_config_module(pathlib.Path(__file__).with_name("base.py"))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = _base().get_config(arg)
  c.objective = presets.default_config("grpo")
  c.objective.eps_low, c.objective.eps_high = 0.2, 0.28
  c.objective.dual_clip = 10.0
  c.objective.kl_coef = 0.0
  c.objective.aggregation = "token_mean"
  c.objective.adv_clip = 5.0
  c.sampling.n = 8                    # N_def
  c.sampling.temperature = 1.0
  c.train.max_sampling_rounds = 1     # budgets and dynamic sampling do not combine
  c.hooks.knapsack = ml_collections.ConfigDict(dict(
      n_min=2, n_max=128, alpha=0.9, window=16, min_history=8, success_threshold=1.0,
      code_quirk=False))
  return c
