"""Critique-GRPO (Zhang et al., "Critique-GRPO: Advancing LLM Reasoning with Natural Language and
Numerical Feedback", arXiv 2506.03106): each failed or passed attempt gets a critique, the policy
writes a critique-guided refinement, and one refinement per prompt joins the group as an
off-policy response to the original question, trained with a shaping that favours its
low-probability tokens.

  python launch/train.py --config=configs/critique_grpo.py:smollm2 --workdir=runs/critique_grpo
  python launch/train.py --config=configs/critique_grpo.py --config.hooks.critique.critique_type=model

    groups of n = 8: 7 on-policy responses + 1 selected refinement (the group's last row)
    A_b = r_b − μ_{g(b)} (no std);  on-policy ℓ = −ρA;  refinement ℓ = −A·p/(p + 0.1), p = π_θ(token)
    L = Σ m ℓ / T_max − 0.001·entropy  (seq_mean_token_sum_norm, T_max = the completion budget)

The refinements come from the `critique` hook: "simple_gt" critiques from the reference answer
(the released run's type), one refinement per initial response from the current policy (one
batched sampler call), the first correct refinement of a group (else the best-scoring) replaces
the group's last sampled row; `critique_type="model"` has a critic model (the policy, or
`critic_source`) write the critiques. The trainer recomputes old_logp (train.recompute_old_logp)
so that every row's behaviour logp is taken under the original prompt. Objective (official
code's released switches): γ = 0.1, no clipping, entropy coefficient 0.001, β = 0, mean-only
advantage. Cost: one extra generation per initial response (about twice the sampling).
"""
import pathlib

import ml_collections

from jaxrl_llm.objectives import presets
from jaxrl_llm.training.config_files import load_config_module


def _base():
  return load_config_module(pathlib.Path(__file__).with_name("base.py"))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = _base().get_config(arg)
  c.objective = presets.default_config("critique_grpo")
  c.hooks.critique = ml_collections.ConfigDict(dict(
      critique_type="simple_gt", refine="all", critic_source="", critic_sees_answer=True,
      critique_max_new_tokens=128, success_threshold=1.0))
  c.train.recompute_old_logp = True
  return c
