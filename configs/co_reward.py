"""Co-Reward: label-free GRPO on cross-question agreement (Zhang et al., arXiv 2508.00410; spec B9).

Every question is paired with a rephrasing (`config.hooks.co_reward`): the data's `rephrased` field
when the examples have one (the authors release TMLR-Group-HF/CoReward-RephrasedMATH), else the
policy's own greedy rewrite. Both are sampled; a rollout is rewarded for agreeing with the
majority answer of the *other* question of its pair. No reference answers are needed
(`co_reward/true_accuracy` logs the verifier when the data has them).

  python launch/train.py --config=configs/co_reward.py:smollm2 --workdir=runs/co_reward

The batch holds 2 x `train.prompts_per_step` groups (originals at even group ids, rephrasings at
odd ones): `prompts_per_step` counts original questions, so 4 here gives the base config's 64 rows.
Defaults [paper Table 4, §4.1]: G = 8, k3 KL 0.005 in the loss, ε = 0.2, seq-mean-token-mean,
temperature 1.0; the paper's 128 questions per step and lr 3e-6 (Qwen3-8B) are scaled to a CPU run
of SmolLM2 (lr stays at the base config's 1e-5).
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
  c.objective.kl_coef = 0.005
  c.sampling.n = 8
  c.sampling.temperature = 1.0
  c.train.prompts_per_step = 4
  c.hooks.co_reward = ml_collections.ConfigDict(dict(field="rephrased", generate=True))
  return c
