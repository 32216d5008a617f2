"""MM-UPT: label-free GRPO on majority-vote pseudo-rewards (Wei et al., arXiv 2505.22453; spec B10).

Each completion's reward is 1 when its extracted answer is the most frequent answer of its group
(`config.hooks.majority_vote`, mode "mm_upt"), so the run needs no reference answers; when the data
has them, the verifier's accuracy is still logged as `majority/true_accuracy` (for logging only).

  python launch/train.py --config=configs/mm_upt.py:smollm2 --workdir=runs/mm_upt

Defaults [code `examples/config.yaml`, EasyR1]: G = 10 samples at temperature 0.7, top-p 0.99,
k3 KL 0.01 in the loss, ε = (0.2, 0.3), token-mean loss. The paper's lr 1e-6 (Qwen2.5-VL-7B) stays
at the base config's 1e-5 for SmolLM2 on CPU. A majority needs 2 agreeing votes (the hook's
`min_votes`): a group whose answers all differ gives no signal; `min_votes=1` is the released
code's rule (the first answer wins such a group).
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
  c.objective.kl_coef = 0.01
  c.objective.eps_high = 0.3
  c.objective.aggregation = "token_mean"
  c.sampling.n = 10
  c.sampling.temperature = 0.7
  c.sampling.top_p = 0.99
  c.hooks.majority_vote = ml_collections.ConfigDict(dict(mode="mm_upt"))
  return c
