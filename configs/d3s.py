"""D3S, Dynamic Dual-Level Down-Sampling (Wang et al.; arXiv 2509.22115): train on the rollouts
of each group whose advantages have the largest variance and, within them, on the tokens with the
largest |advantage| × entropy; a curriculum relaxes both fractions to 1 over training.

  python launch/train.py --config=configs/d3s.py:smollm2 --workdir=runs/d3s
  python launch/train.py --config=configs/d3s.py --config.objective.token_frac=0.5

    rows:   the ⌈κ_s n⌉ rows of each group maximising Var(A) (exact: j largest + rest smallest)
    tokens: top κ_t fraction by |A|·H over the kept rows' tokens;  m' = m·1[row]·1[token]
    κ(τ) = κ_min + (1 − κ_min)·min(1, τ/τ_ramp),  τ = optimizer step

The objective is the preset's: κ_s 0.5 → 1, κ_t 0.2 → 1, GRPO advantages on the full groups,
PPO clip ε = (0.2, 0.28), token_mean over the kept tokens, no KL. τ_ramp is half of training in
optimizer steps, train.num_steps × num_updates × num_minibatches / 2 (field references: it follows
overrides of those). The entropy comes from the rollout forward pass. Uncertain: the paper's
fractions, schedule and intra- vs cross-group default were not found (all reconstructions,
spec §6); `objective.scope="batch"` is the cross-group variant.
"""
import pathlib

import ml_collections

from jaxrl_llm.objectives import presets
from jaxrl_llm.training.config_files import load_config_module


def _base():
  return load_config_module(pathlib.Path(__file__).with_name("base.py"))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = _base().get_config(arg)
  c.objective = presets.default_config("d3s")
  t = c.train
  c.objective.ramp_steps = (t.get_ref("num_steps") * t.get_ref("num_updates")
                            * t.get_ref("num_minibatches")) // 2
  return c
