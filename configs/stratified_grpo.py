"""Stratified GRPO (Zhu, Chen, Yu, Zhao, Jia; arXiv 2510.06214): normalise rewards inside strata
of structurally similar trajectories (the number of search calls) of each prompt, blended with
GRPO's group normalisation, so no stratum inherits another's baseline (cross-stratum bias).

  python launch/train.py --config=configs/stratified_grpo.py:smollm2 --workdir=runs/stratified
  python launch/train.py --config=configs/stratified_grpo.py --config.objective.alpha=1.0

    A_b = α·(r_b − μ_{k,c})/(σ_{k,c} + ε) + (1 − α)·(r_b − μ_k)/(σ_k + ε)
    (c = stratum_b within prompt group k; Bessel stds; a row alone in its stratum has SAN 0)

The objective is the preset's: α = 0.8, Search-R1's GRPO (ε = 0.2, k3 KL β = 0.001,
seq_mean_token_mean). Strata come from the `stratum` rollout hook: the number of `<search>` tags
in each completion, merged above 4 (`hooks.stratum.max_stratum`; Search-R1 allows at most 4
search turns); `hooks.stratum.field=<name>` reads an integer field of the data example instead.
Uncertain (spec §6): α is not in the sources (sweep {0.5, 0.8, 1.0}); singleton strata → 0,
per-prompt strata and the merge of large counts are reconstructions. On a task without tool calls
(the base config's sums) every row has stratum 0 and the method is GRPO exactly.
"""
import pathlib

import ml_collections

from jaxrl_llm.objectives import presets
from jaxrl_llm.training.config_files import load_config_module


def _base():
  return load_config_module(pathlib.Path(__file__).with_name("base.py"))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = _base().get_config(arg)
  c.objective = presets.default_config("stratified_grpo")
  c.hooks.stratum = ml_collections.ConfigDict(dict(pattern=r"<search>", field=None,
                                                   max_stratum=4))
  return c
