"""DAPO with low-probability reweighting, from "On the Direction of RLVR Updates" (Δlog p,
arXiv 2603.22117): A' = (1 + α(1 − p_old))·Â, so tokens the sampler found unlikely weigh more.

  python launch/train.py --config=configs/dapo_lowprob.py:smollm2 --workdir=runs/dapo_lowprob
  python launch/eval.py --model=runs/dapo_lowprob/hf --base_model=smollm2-135m-instruct --gamma=0.5

The paper's other half, test-time extrapolation along the RL update (logits (1 + γ)·z_RL −
γ·z_base), needs no training: `sampling.extrapolation(rl_model, base_model, gamma)` in code, or
`launch/eval.py --base_model=... --gamma=...` as above.

α = 0.2 (the sources give [0.1, 0.2]). The rest follows configs/dapo.py: clip-higher ε = (0.2,
0.28), token-mean loss, no KL, dynamic sampling, and an overlong window that follows the
completion budget. The weight reads only the behaviour policy's probabilities, so it acts from
the first update of a batch and needs no extra passes (mu = 1).
"""
import pathlib

import ml_collections

from jaxrl_llm.objectives import presets
from jaxrl_llm.training.config_files import load_config_module


def _base():
  return load_config_module(pathlib.Path(__file__).with_name("base.py"))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  base = _base()
  c = base.get_config(arg)
  c.objective = presets.default_config("dapo_lowprob")
  base.dapo_sampling(c)
  return c
