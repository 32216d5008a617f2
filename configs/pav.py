"""Rewarding Progress (Setlur et al., "Rewarding Progress: Scaling Automated Process Verifiers for
LLM Reasoning", arXiv 2410.08146): each reasoning step is credited with its progress, the change
in a prover's probability of reaching a correct answer before vs after the step, on top of the
outcome advantage.

  python launch/train.py --config=configs/pav.py:smollm2 --workdir=runs/pav
  python launch/train.py --config=configs/pav.py --config.objective.alpha=3.0 \
      --config.hooks.pav_prover.prover_source=smollm2-135m-instruct

    steps = newline-separated spans of the completion; s_0 = prompt, s_h = prompt + h steps
    V̂(s_h) = BoK_K(mean verifier score of n_mc continuations from s_h),  V̂(s_H) = r_b
    A_{b,t} = RLOO(r)_b + α (V̂(s_{h(t)+1}) − V̂(s_{h(t)})),  PPO clip, seq_mean_token_mean

The prover values come from the `pav_prover` hook: n_mc = 4 Monte-Carlo continuations per step
boundary from the current policy, turned into a Best-of-4 prover (spec B11 (d): a prover
complementary to π without a second model), at most 8 boundaries per row (a random subset
beyond that; the steps between kept boundaries merge), all prefixes of an iteration in one
sampler call. `hooks.pav_prover.prover_source` names another prover model (same tokenizer).
Uncertain [reconstruction, spec §6]: α (grid {1, 3, 5}; 1 here), K = 4, the RLOO baseline.
Cost: about (P + B·steps)·n_mc extra continuations per iteration.
"""
import pathlib

import ml_collections

from jaxrl_llm.objectives import presets
from jaxrl_llm.training.config_files import load_config_module


def _base():
  return load_config_module(pathlib.Path(__file__).with_name("base.py"))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = _base().get_config(arg)
  c.objective = presets.default_config("pav")
  c.hooks.pav_prover = ml_collections.ConfigDict(dict(
      n_mc=4, max_steps=8, delimiter="\n", bok_k=4, prover_source="", max_new_tokens=0,
      seed=0))
  return c
