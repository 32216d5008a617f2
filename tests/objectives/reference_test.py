"""Each transform against an independent float64 NumPy reference of its spec formula.

Random batches with ragged lengths, an empty row, a uniform group and finite junk on padded
positions (`helpers.random_batch`). jax runs in float32; tolerances are float32's.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import objectives as ob
from tests.objectives import reference as ref
from tests.objectives.helpers import ctx_of, random_batch

MODES = ob.AGGREGATION_MODES
RTOL, ATOL = 2e-5, 2e-6
SEEDS = (0, 1, 2)


def _run(transform, ctx):
  out, _ = transform.update(ctx, transform.init(ctx))
  return out


def _loss_grad(loss_chain, ctx, wrt="logp"):
  """Value and gradient of the loss phase w.r.t. `logp` (or `entropy`)."""
  def f(x):
    out = _run(loss_chain, ctx.replace(**{wrt: x}))
    return out.loss.value()
  value, grad = jax.value_and_grad(f)(getattr(ctx, wrt))
  return float(value), np.asarray(grad)


# --- advantages -----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("scale", ob.SCALES)
@pytest.mark.parametrize("ddof,eps", [(1, 1e-6), (0, 1e-4)])
def test_group_advantage(seed, scale, ddof, eps):
  batch = random_batch(seed)
  out = _run(ob.group_advantage(scale, eps=eps, ddof=ddof), ctx_of(batch))
  expected = ref.group_advantage(batch.rewards, batch.group_size, scale, eps, ddof)
  np.testing.assert_allclose(out.advantages, expected[:, None] * batch.mask, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_rloo_advantage(seed):
  batch = random_batch(seed)
  out = _run(ob.rloo_advantage(), ctx_of(batch))
  expected = ref.rloo_advantage(batch.rewards, batch.group_size)
  np.testing.assert_allclose(out.advantages, expected[:, None] * batch.mask, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_reinforce_pp_advantage(seed):
  batch = random_batch(seed)
  out = _run(ob.reinforce_pp_advantage(), ctx_of(batch))
  expected = ref.reinforce_pp_advantage(batch.rewards, batch.mask, batch.group_size)
  np.testing.assert_allclose(out.advantages, expected, rtol=1e-4, atol=1e-5)


# --- ratio rules × aggregation --------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("eps_low,eps_high,dual_clip", [(0.2, 0.2, None), (0.2, 0.28, None),
                                                         (0.1, 0.3, 1.5)])
def test_ppo_clip(seed, mode, eps_low, eps_high, dual_clip):
  batch = random_batch(seed)
  weights = np.random.default_rng(seed + 10).uniform(0.5, 1.5, batch.mask.shape)
  ctx = ctx_of(batch, with_advantages=True, weights=jnp.asarray(weights, jnp.float32))
  norm = 5.0 if mode == "seq_mean_token_sum_norm" else None
  value, grad = _loss_grad(ob.chain(ob.ppo_clip(eps_low, eps_high, dual_clip),
                                    ob.aggregate(mode, norm=norm)), ctx)
  loss_t, grad_t = ref.ppo_clip(batch.logp, batch.old_logp, batch.advantages, batch.mask,
                                eps_low, eps_high, dual_clip)
  w_agg = ref.aggregate_weights(batch.mask, mode, norm)
  assert value == pytest.approx(np.sum(w_agg * weights * loss_t), rel=RTOL, abs=ATOL)
  np.testing.assert_allclose(grad, w_agg * weights * grad_t, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("level", ob.GSPO_LEVELS)
def test_gspo_clip(seed, mode, level):
  batch = random_batch(seed)
  adv_row = np.random.default_rng(seed).normal(size=batch.mask.shape[0])
  ctx = ctx_of(batch, advantages=jnp.asarray(adv_row[:, None] * batch.mask, jnp.float32))
  eps_low, eps_high = 0.05, 0.08
  value, grad = _loss_grad(ob.chain(ob.gspo_clip(eps_low, eps_high, level), ob.aggregate(mode)),
                           ctx)
  row_loss, row_grad = ref.gspo_row_loss(batch.logp, batch.old_logp, adv_row, batch.mask,
                                         eps_low, eps_high)
  w_agg = ref.aggregate_weights(batch.mask, mode)
  assert value == pytest.approx(np.sum(w_agg * row_loss[:, None]), rel=RTOL, abs=ATOL)
  if level == "sequence":   # every token's term depends on the whole row through s_b
    expected = w_agg.sum(1, keepdims=True) * row_grad
  else:                     # GSPO-token: token t's term depends on logp_t only, with slope s_b
    expected = w_agg * row_grad * batch.mask.sum(1, keepdims=True)
  np.testing.assert_allclose(grad, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", MODES)
def test_reinforce(seed, mode):
  batch = random_batch(seed)
  ctx = ctx_of(batch, with_advantages=True)
  value, grad = _loss_grad(ob.chain(ob.reinforce(), ob.aggregate(mode)), ctx)
  w_agg = ref.aggregate_weights(batch.mask, mode)
  logp = np.where(batch.mask > 0, batch.logp, 0.0)
  assert value == pytest.approx(np.sum(w_agg * -batch.advantages * logp), rel=RTOL, abs=ATOL)
  np.testing.assert_allclose(grad, -w_agg * batch.advantages, rtol=RTOL, atol=ATOL)


# --- regularisers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("estimator", ob.KL_ESTIMATORS)
def test_kl_penalty(seed, mode, estimator):
  batch = random_batch(seed)
  coef = 0.3
  value, grad = _loss_grad(ob.chain(ob.kl_penalty(coef, estimator), ob.aggregate(mode)),
                           ctx_of(batch))
  k, dk = ref.kl(batch.logp, batch.ref_logp, estimator)
  w_agg = ref.aggregate_weights(batch.mask, mode)
  assert value == pytest.approx(np.sum(w_agg * coef * k), rel=RTOL, abs=ATOL)
  np.testing.assert_allclose(grad, w_agg * coef * dk, rtol=1e-4, atol=ATOL)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", MODES)
def test_entropy_bonus(seed, mode):
  batch = random_batch(seed)
  coef = 0.01
  value, grad = _loss_grad(ob.chain(ob.entropy_bonus(coef), ob.aggregate(mode)), ctx_of(batch),
                           wrt="entropy")
  w_agg = ref.aggregate_weights(batch.mask, mode)
  assert value == pytest.approx(np.sum(-coef * w_agg * batch.entropy), rel=RTOL, abs=ATOL)
  np.testing.assert_allclose(grad, -coef * w_agg, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_kl_in_reward(seed):
  batch = random_batch(seed)
  out = _run(ob.kl_in_reward(0.2), ctx_of(batch))
  kl_row = ((batch.old_logp - batch.ref_logp) * batch.mask).sum(1)
  np.testing.assert_allclose(out.rewards, batch.rewards - 0.2 * kl_row, rtol=RTOL, atol=ATOL)


# --- shaping, filters and weights -----------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("max_len,cache_len", [(6, 3), (5, 1), (7, 7)])
def test_overlong_penalty(seed, max_len, cache_len):
  batch = random_batch(seed)
  out = _run(ob.overlong_penalty(max_len, cache_len, coef=0.5), ctx_of(batch))
  expected = batch.rewards + 0.5 * ref.overlong(batch.mask.sum(1), max_len, cache_len)
  np.testing.assert_allclose(out.rewards, expected, rtol=RTOL, atol=ATOL)


def test_overlong_penalty_reads_token_lengths_from_extras():
  batch = random_batch(0)
  lengths = np.arange(batch.mask.shape[0]) + 3.0          # beyond the buffer width
  out = _run(ob.overlong_penalty(12, 4, lengths_key="lengths"),
             ctx_of(batch, extras={"lengths": jnp.asarray(lengths)}))
  np.testing.assert_allclose(out.rewards, batch.rewards + ref.overlong(lengths, 12, 4),
                             rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_drop_uniform_groups(seed):
  batch = random_batch(seed)
  batch.rewards[8:12] = 0.0                                  # group 2 uniform too
  out = _run(ob.drop_uniform_groups(), ctx_of(batch))
  keep = ref.uniform_group_keep(batch.rewards, batch.group_size)
  np.testing.assert_array_equal(out.mask, batch.mask * keep[:, None])
  np.testing.assert_array_equal(out.weights, np.ones_like(batch.mask))


@pytest.mark.parametrize("seed", SEEDS)
def test_drop_truncated(seed):
  batch = random_batch(seed)
  out = _run(ob.drop_truncated(), ctx_of(batch))
  np.testing.assert_array_equal(out.mask, batch.mask * (~batch.truncated)[:, None])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("cap", [1.0, 2.0])
def test_tis_weights(seed, cap):
  batch = random_batch(seed)
  out = _run(ob.tis_weights(cap), ctx_of(batch))
  ratio = np.exp(batch.old_logp - batch.sampler_logp)
  expected = np.where(batch.mask > 0, np.minimum(ratio, cap), 1.0)
  np.testing.assert_allclose(out.weights, expected, rtol=RTOL, atol=ATOL)
  mismatch = np.sum(np.abs(batch.old_logp - batch.sampler_logp) * batch.mask) / batch.mask.sum()
  assert float(out.metrics["tis/abs_logp_diff"].value()) == pytest.approx(mismatch, rel=RTOL)
  clip = np.sum((ratio > cap) * batch.mask) / batch.mask.sum()
  assert float(out.metrics["tis/clip_frac"].value()) == pytest.approx(clip, rel=RTOL)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("frac", [0.05, 0.2, 0.5, 1.0])
def test_top_entropy(seed, frac):
  batch = random_batch(seed)
  out = _run(ob.top_entropy(frac), ctx_of(batch))
  keep = ref.top_entropy_keep(batch.entropy, batch.mask, frac)
  np.testing.assert_array_equal(out.mask, keep)
  assert keep.sum() == np.ceil(frac * batch.mask.sum())     # no ties in random data


@pytest.mark.parametrize("seed", SEEDS)
def test_dapo_pipeline(seed):
  """Filter + ±1 rewards + overlong shaping + group advantage + clip-higher + token-mean."""
  batch = random_batch(seed)
  objective = ob.presets.dapo(max_len=6, cache_len=3)
  ctx = ctx_of(batch)
  value, grad = jax.value_and_grad(lambda lp: objective(ctx.replace(logp=lp))[0])(ctx.logp)
  keep = ref.uniform_group_keep(batch.rewards, batch.group_size)
  mask = batch.mask * keep[:, None]
  rewards = (2.0 * batch.rewards - 1.0) + ref.overlong(batch.mask.sum(1), 6, 3)   # ±1 scale
  adv = ref.group_advantage(rewards, batch.group_size)[:, None] * mask
  loss_t, grad_t = ref.ppo_clip(batch.logp, batch.old_logp, adv, mask, 0.2, 0.28)
  w_agg = ref.aggregate_weights(mask, "token_mean")
  assert float(value) == pytest.approx(np.sum(w_agg * loss_t), rel=RTOL, abs=ATOL)
  np.testing.assert_allclose(grad, w_agg * grad_t, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("mode", ["seq_mean_token_mean", "seq_mean_token_sum"])
def test_count_empty_rows(mode):
  batch = random_batch(0)
  ctx = ctx_of(batch, with_advantages=True)
  out = _run(ob.chain(ob.ppo_clip(), ob.aggregate(mode, count_empty_rows=True)), ctx)
  assert float(out.loss.count) == batch.mask.shape[0]
  out = _run(ob.chain(ob.ppo_clip(), ob.aggregate(mode)), ctx)
  assert float(out.loss.count) == np.sum(batch.mask.sum(1) > 0) == batch.mask.shape[0] - 1
