"""PPR with ReNorm (Xu, Li et al., "Hybrid Reward Normalization for Process-supervised
Non-verifiable Agentic Tasks", arXiv 2509.25598): a judge LLM scores every reasoning step against
a fixed principle rubric, and ReNorm calibrates the step scores with the outcome so that process
quality can never outrank the final answer.

  python launch/train.py --config=configs/ppr.py:smollm2 --workdir=runs/ppr
  python launch/train.py --config=configs/ppr.py:qwen2.5-0.5b \
      --config.hooks.process_judge.judge_source=Qwen/Qwen2.5-1.5B-Instruct

    p_{b,j} = P_judge(Yes | rubric, question, step j)   (a teacher-forced forward, no sampling)
    r_{b,j} = p_{b,j} + o_b − 1;  r̃ = normalised over all steps of the group
    A_{b,t} = Σ_{j ≥ j(t)} r̃_{b,j},  PPO clip + k3 KL (β = 0.001),  seq_mean_token_mean

The step scores come from the `process_judge` hook (unit="step"): steps are the completion's
newline-separated spans (`split="tags"` splits after `</think>` / `</search>` turns, the paper's
agent setting), at most 8 per row, each judged by the current policy (`judge_source` names a
fixed judge model instead; its scores are then cached across iterations by (question, step)).
Uncertain [reconstruction, spec §6]: the ReNorm rule and the process-supervision advantage are
the spec's readings; the paper's rubric and PPRM were not available (our rubric: relevance,
correctness, groundedness). Cost: one judge forward per distinct step per iteration.
"""
import pathlib

import ml_collections

from jaxrl_llm.objectives import presets
from jaxrl_llm.training.config_files import load_config_module


def _base():
  return load_config_module(pathlib.Path(__file__).with_name("base.py"))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = _base().get_config(arg)
  c.objective = presets.default_config("ppr")
  c.hooks.process_judge = ml_collections.ConfigDict(dict(
      unit="step", judge_source="", split="newline", tags="think,search", max_steps=8,
      batch_size=64))
  return c
