"""TTRV: test-time RL on answer-frequency rewards with an entropy penalty (arXiv 2510.06783;
spec B10).

Each completion's reward is the frequency of its extracted answer among the group's N_vote samples
minus λ times the group's normalised answer entropy (`config.hooks.majority_vote`, mode "ttrv");
the first N_train samples of each group are trained on, the others only vote. No reference
answers are needed (`majority/true_accuracy` logs the verifier when the data has them).

  python launch/train.py --config=configs/ttrv.py:smollm2 --workdir=runs/ttrv

Defaults [code `examples/ttrv/run.sh`]: N_vote = 32 (`sampling.n`), N_train = 16, λ = 0.75,
temperature 1.0, k3 KL 0.001 in the loss; the paper trains on single test prompts (mini-batch 1),
here 2 prompts per step. lr stays at the base config's 1e-5 (the paper: 5e-7 on InternVL3).
λ·H̄ is constant within a group, so with GRPO's group-centred advantage it changes no gradient
(spec B10); it shows in `majority/reward_mean` and `ttrv/entropy_mean`.
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
  c.objective.kl_coef = 0.001
  c.sampling.n = 32
  c.sampling.temperature = 1.0
  c.train.prompts_per_step = 2
  c.hooks.majority_vote = ml_collections.ConfigDict(dict(mode="ttrv", entropy_coef=0.75,
                                                         n_train=16))
  return c
