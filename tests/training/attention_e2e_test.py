"""configs/grpo_attention.py trains end to end on the tiny random model (spec B13).

Shrunk like every seed config (`seed_e2e_test._tiny_of`): 4 prompts x 2 samples, 3 iterations of
mu = 2 passes over 2 minibatches. The rollout phase runs the attention-statistics forward (default
heads: chosen by mean attention distance) and `attention_credit` logs the fraction of the valid
tokens whose advantage it amplified, `attention/amplified_frac`: with q = 0.1 each non-empty row
has ⌈0.1·|o|⌉ = 1 anchor (|o| ≤ 8 tokens) and possibly the preplan token before it, so the
fraction lies in (0, 2/|o|] per row and is never 0 on a batch with any token.
"""
import numpy as np

from tests.training.seed_e2e_test import _run, _tiny_of, _values


def test_grpo_attention_amplifies_a_small_fraction_of_tokens(tmp_path):
  c = _tiny_of("grpo_attention")
  assert c.objective.name == "grpo_attention" and c.objective.q == 0.1
  history, _, _ = _run(tmp_path, "grpo_attention")
  frac = _values(history, "attention/amplified_frac")
  assert np.all(frac > 0.0) and np.all(frac <= 1.0), frac
  waad, fai = _values(history, "attention/waad_mean"), _values(history, "attention/fai_mean")
  assert np.all((waad > 0) & (waad <= 10.0)), waad       # WAAD ∈ [0, W]
  assert np.all((fai >= 0) & (fai <= 1.0)), fai          # FAI ∈ [0, 1]
  assert np.all(np.isfinite(_values(history, "train/loss")))
