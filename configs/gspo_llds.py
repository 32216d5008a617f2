"""GSPO + LLDS (arXiv 2512.04220, the GSPO variant): the LLDS likelihood-preserving penalty added
unchanged to GSPO's sequence-ratio loss (Zheng et al., arXiv 2507.18071).

  python launch/train.py --config=configs/gspo_llds.py:smollm2 --workdir=runs/gspo_llds

The objective is the preset's: GSPO's ε = (3e-4, 4e-4), no KL, seq_mean_token_mean; LLDS λ = 0.2,
action gate. LLDS reads Δ = old_logp − logp, exactly 0 on the first update of a rollout batch
(π_θ = π_old), and GSPO's sequence clipping only binds off-policy, so each batch is used for two
passes (`train.num_updates`, mu = 2).
"""
import pathlib

import ml_collections

from jaxrl_llm.objectives import presets
from jaxrl_llm.training.config_files import load_config_module


def _base():
  return load_config_module(pathlib.Path(__file__).with_name("base.py"))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = _base().get_config(arg)
  c.objective = presets.default_config("gspo_llds")
  c.train.num_updates = 2     # LLDS is 0 on the first update of a batch: mu >= 2
  return c
