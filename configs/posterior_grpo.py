"""Posterior-GRPO (Fan, Zhang, Chen, Liu, arXiv 2508.05170): the reasoning is rewarded by a
reasoning reward model, but only on rollouts whose answer is correct, so the policy cannot farm
reasoning reward without solving the task.

  python launch/train.py --config=configs/posterior_grpo.py:smollm2 --workdir=runs/posterior_grpo
  python launch/train.py --config=configs/posterior_grpo.py \
      --config.objective.think_norm=minmax \
      --config.hooks.process_judge.judge_source=smollm2-135m-instruct

    r^think_b = P_judge(Yes | rubric, question, reasoning_b)   (only rows with r^out_b = 1)
    r_b = r^out_b + 1[r^out_b = 1] · r^think_b,  A = GRPO's,  PPO clip,  seq_mean_token_mean

The reasoning scores come from the `process_judge` hook (unit="response"): the `<think>` part of
each correct completion (the whole completion when it has none) is judged by the current policy
under a fixed principle rubric (`judge_source` names a fixed judge model instead); incorrect rows
are never judged. Uncertain [reconstruction, spec §6]: the exact reward (format term, off here:
`objective.format_coef` with `hooks.process_judge.format_regex` turns it on) and the score's
normalisation (`objective.think_norm`); the paper's reasoning RM (trained on LCB-RB) is not
available, a prompted judge stands in for it.
"""
import pathlib

import ml_collections

from jaxrl_llm.objectives import presets
from jaxrl_llm.training.config_files import load_config_module


def _base():
  return load_config_module(pathlib.Path(__file__).with_name("base.py"))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = _base().get_config(arg)
  c.objective = presets.default_config("posterior_grpo")
  c.hooks.process_judge = ml_collections.ConfigDict(dict(
      unit="response", judge_source="",
      success_threshold=c.objective.get_ref("success_threshold"),   # the objective's gate
      batch_size=64))
  return c
