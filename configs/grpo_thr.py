"""GRPO with THR reweighting (Token Hidden Reward, Deng et al., arXiv 2510.03669): each token's
influence on the likelihood of the group's correct responses, computed from final-layer hidden
states, keeps (×(1 ± p)) or drops it; p = 0.2 favours exploitation (Pass@1), p < 0 exploration.

  python launch/train.py --config=configs/grpo_thr.py:smollm2 --workdir=runs/grpo_thr
  python launch/train.py --config=configs/grpo_thr.py:smollm2 --config.objective.p=-0.2

The objective is the preset's: p = 0.2, anchor threshold β = 1, GRPO ε = 0.2, no KL. THR
`requires` hidden states: the train step's forward pass returns them and adds the unembedding
(`training.forward_outputs`, `training.train_step`). A correct response is one with reward >= 1
(the reasoning-gym verifier's 1.0). THR scores tokens within a group, so every micro-batch must
hold whole groups: `train.num_micro_batches` must divide the groups per minibatch
(`train.prompts_per_step / train.num_minibatches`). THR reads the current pass's hidden states,
not a ratio, so it acts from the first update of a batch and needs no extra passes (mu = 1).
"""
import pathlib

import ml_collections

from jaxrl_llm.objectives import presets
from jaxrl_llm.training.config_files import load_config_module


def _base():
  return load_config_module(pathlib.Path(__file__).with_name("base.py"))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = _base().get_config(arg)
  c.objective = presets.default_config("grpo_thr")
  return c
