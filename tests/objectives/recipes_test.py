"""Recipes that only a correct preset passes, written from the papers' and official code's own
definitions (not from `spec/`, which is where the recipe errors came from).

Each test names the definition it is written from. The pinned defaults are in
`recipe_defaults_test.py`.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import objectives as ob
from jaxrl_llm.objectives import presets

DAPO_FAMILY = ("dapo", "fipo", "dapo_lowprob", "dapo_divergence", "dapo_nsr", "owpo")


def _rollout_advantages(objective, ctx):
  rctx, _, _ = objective.run(ctx)
  return np.asarray(rctx.advantages)


# --- DAPO's reward scale ---------------------------------------------------------------------------
def _dapo_limit_group():
  """(correct-short, correct-at-the-limit, wrong, wrong) with L_max = 16, L_cache = 4."""
  lengths = np.array([4, 16, 4, 4])
  mask = (np.arange(16)[None, :] < lengths[:, None]).astype(np.float32)
  logp = jnp.full((4, 16), -1.0, jnp.float32)
  ctx = ob.LossContext.create(logp=logp, old_logp=logp, ref_logp=logp, mask=jnp.asarray(mask),
                              rewards=jnp.asarray([1.0, 1.0, 0.0, 0.0]), group_size=4,
                              rng=jax.random.key(0))
  return ctx, lengths


def _dapo_paper_advantages(correct, lengths, max_len, cache_len):
  """DAPO arXiv 2503.14476: R = ±1 (§2.4) plus R_length (Eq. 13), then GRPO's group
  normalisation (Eq. 9, verl's unbiased std); float64."""
  score = np.where(correct, 1.0, -1.0)
  start = max_len - cache_len
  r_len = np.where(lengths <= start, 0.0,
                   np.where(lengths <= max_len, (start - lengths) / cache_len, -1.0))
  r = score + r_len
  return (r - r.mean()) / (r.std(ddof=1) + 1e-6)


@pytest.mark.parametrize("name", DAPO_FAMILY)
def test_dapo_family_keeps_a_correct_answer_at_the_limit_above_the_wrong_ones(name):
  ctx, lengths = _dapo_limit_group()
  adv = _rollout_advantages(presets.build(name, max_len=16, cache_len=4), ctx)[:, 0]
  want = _dapo_paper_advantages(np.array([1, 1, 0, 0], bool), lengths, 16, 4)
  np.testing.assert_allclose(want, [1.306, 0.261, -0.783, -0.783], atol=1e-3)   # the issue's
  np.testing.assert_allclose(adv, want, rtol=1e-5, atol=1e-5)
  assert adv[1] >= 0.0, "a correct answer at the length limit must not be pushed down"


def test_rescale_rewards_identity_recovers_the_old_zero_one_recipe():
  ctx, _ = _dapo_limit_group()
  adv = _rollout_advantages(presets.dapo(max_len=16, cache_len=4, incorrect_reward=0.0), ctx)
  np.testing.assert_allclose(adv[:, 0], [1.5, -0.5, -0.5, -0.5], atol=1e-5)


def test_rescale_rewards_is_affine_and_checks_its_range():
  ctx, _ = _dapo_limit_group()
  out, _ = ob.rescale_rewards(-1.0, 1.0).update(ctx.replace(phase="rollout"), ob.EmptyState())
  np.testing.assert_array_equal(np.asarray(out.rewards), [1.0, 1.0, -1.0, -1.0])
  with pytest.raises(ValueError, match="high > low"):
    ob.rescale_rewards(1.0, 0.0)
