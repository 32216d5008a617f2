"""The properties `spec/baselines_and_more.md` lists for each baseline (the "(f) Unit tests")."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import objectives as ob
from tests.objectives.helpers import (WE_LENGTHS, WE_MASK, ctx_of, loss_and_grad, random_batch,
                                      worked_example_ctx)


def _run(transform, ctx):
  out, _ = transform.update(ctx, transform.init(ctx))
  return out


def _adv_rows(transform, ctx):
  out = _run(transform, ctx)
  return np.asarray(out.advantages).sum(1) / np.maximum(np.asarray(ctx.lengths), 1)


def _simple_ctx(rewards, group_size, lengths=None, width=5, logp=None, **kwargs):
  b = len(rewards)
  lengths = np.full(b, width) if lengths is None else np.asarray(lengths)
  mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.float32)
  logp = np.full((b, width), -1.0, np.float32) if logp is None else logp
  return ob.LossContext.create(logp=jnp.asarray(logp), old_logp=jnp.asarray(logp),
                               mask=jnp.asarray(mask), rewards=jnp.asarray(rewards, jnp.float32),
                               group_size=group_size, **kwargs)


# --- GRPO (A1) ------------------------------------------------------------------------------------
@pytest.mark.parametrize("a,c", [(3.0, -2.0), (0.5, 10.0)])
def test_grpo_advantage_is_affine_invariant_within_a_group(a, c):
  batch = random_batch(3)
  ctx = ctx_of(batch)
  rewards = np.array(batch.rewards)
  rewards[:4] = a * rewards[:4] + c                    # group 0 only
  before = _adv_rows(ob.group_advantage(), ctx)
  after = _adv_rows(ob.group_advantage(), ctx.replace(rewards=jnp.asarray(rewards, jnp.float32)))
  np.testing.assert_allclose(after, before, atol=1e-5)


def test_grpo_at_ratio_one_without_kl_is_minus_mean_advantage():
  ctx = worked_example_ctx(old_logp=jnp.asarray(worked_example_ctx().logp))
  loss, _, grad = loss_and_grad(ob.presets.grpo(kl_coef=0.0), ctx)
  adv = _adv_rows(ob.group_advantage(), ctx)
  assert loss == pytest.approx(-adv.mean(), abs=1e-6)
  expected = -adv[:, None] / (8 * WE_LENGTHS[:, None]) * WE_MASK
  np.testing.assert_allclose(grad, expected, atol=1e-7)


def test_zero_variance_and_singleton_groups():
  rewards = [1.0, 1.0, 1.0, 0.0, 2.0, 5.0]
  ids = jnp.asarray([0, 0, 0, 1, 1, 2])                 # ragged groups: 3, 2, 1 rows
  ctx = _simple_ctx(rewards, None, group_ids=ids, num_groups=3)
  adv = _adv_rows(ob.group_advantage(), ctx)
  assert np.all(adv[:3] == 0.0)                        # zero variance: exactly 0
  np.testing.assert_allclose(adv[3:5], [-1 / (np.sqrt(2) + 1e-6), 1 / (np.sqrt(2) + 1e-6)],
                             rtol=1e-6)
  assert adv[5] == 0.0                                  # singleton: spec default
  assert _adv_rows(ob.group_advantage(singleton="verl"), ctx)[5] == 5.0


def test_ragged_segment_path_equals_contiguous_reshape_path():
  batch = random_batch(4)
  contiguous = ctx_of(batch)
  ragged = ctx_of(batch, group_size=None, group_ids=jnp.arange(16) // 4, num_groups=4)
  for tx in (ob.group_advantage(), ob.rloo_advantage(), ob.reinforce_pp_advantage(),
             ob.drop_uniform_groups()):
    a, b = _run(tx, contiguous), _run(tx, ragged)
    np.testing.assert_allclose(a.advantages if a.advantages is not None else a.mask,
                               b.advantages if b.advantages is not None else b.mask, atol=1e-6)


# --- Dr. GRPO (A2) --------------------------------------------------------------------------------
def test_dr_grpo_gives_every_token_the_same_weight():
  """At ratio 1, ∂L/∂logp_{b,t} = −A_b/(N·L_gen) whatever the row's length."""
  ctx = worked_example_ctx(old_logp=jnp.asarray(worked_example_ctx().logp))
  _, _, grad = loss_and_grad(ob.presets.dr_grpo(norm_len=10), ctx)
  adv = _adv_rows(ob.group_advantage("none"), ctx)
  np.testing.assert_allclose(grad, -adv[:, None] / (8 * 10) * WE_MASK, atol=1e-7)


def test_dr_grpo_loss_does_not_depend_on_the_group_std():
  """Spreading a group's rewards (σ grows, centred rewards fixed up to scale) scales Dr. GRPO's
  loss linearly, while GRPO's standardised loss does not move."""
  ctx = worked_example_ctx()
  spread = worked_example_ctx(rewards=jnp.asarray(3.0 * np.asarray(ctx.rewards) + 1.0))
  dr, _, _ = loss_and_grad(ob.presets.dr_grpo(eps_low=10.0, eps_high=10.0), ctx)
  dr3, _, _ = loss_and_grad(ob.presets.dr_grpo(eps_low=10.0, eps_high=10.0), spread)
  assert dr3 == pytest.approx(3.0 * dr, rel=1e-5)
  g, _, _ = loss_and_grad(ob.presets.grpo(kl_coef=0.0), ctx)
  g3, _, _ = loss_and_grad(ob.presets.grpo(kl_coef=0.0), spread)
  assert g3 == pytest.approx(g, abs=1e-5)
  # and its advantage is GRPO's times (σ_g + ε): it never divides by the std
  grpo_adv = _adv_rows(ob.group_advantage(), ctx)
  sigma = np.repeat([np.std([1, 0, 0, 1], ddof=1), np.std([0, 1, 1, 1], ddof=1)], 4)
  np.testing.assert_allclose(_adv_rows(ob.group_advantage("none"), ctx),
                             grpo_adv * (sigma + 1e-6), atol=1e-6)


# --- DAPO (A3) ------------------------------------------------------------------------------------
def test_clip_higher_asymmetry():
  logp = np.full((2, 1), 0.0, np.float32)
  old = np.array([[-np.log(1.25)], [-np.log(0.75)]], np.float32)   # ρ = 1.25 and 0.75
  adv = jnp.asarray([[1.0], [-1.0]])
  ctx = ob.LossContext.create(logp=jnp.asarray(logp), old_logp=jnp.asarray(old),
                              mask=jnp.ones((2, 1)), rewards=jnp.zeros(2), advantages=adv)

  def grad(eps_high):
    tx = ob.chain(ob.ppo_clip(0.2, eps_high), ob.aggregate("token_mean"))
    return np.asarray(jax.grad(lambda lp: _run(tx, ctx.replace(logp=lp)).loss.value())(ctx.logp))

  np.testing.assert_allclose(grad(0.28)[0], [-1.25 / 2], rtol=1e-6)   # −ρA/Σm: active
  assert grad(0.2)[0, 0] == 0.0                                       # frozen at (0.2, 0.2)
  assert grad(0.28)[1, 0] == 0.0 and grad(0.2)[1, 0] == 0.0           # A<0, ρ<0.8: frozen


def test_dynamic_sampling_filter_fixture():
  rewards = [1, 0, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1]
  rng = np.random.default_rng(0)
  logp = -rng.random((12, 5)).astype(np.float32)
  old = logp + 0.1 * rng.normal(size=(12, 5)).astype(np.float32)
  full = ob.LossContext.create(logp=jnp.asarray(logp), old_logp=jnp.asarray(old),
                               mask=jnp.ones((12, 5)), rewards=jnp.asarray(rewards, jnp.float32),
                               group_size=4)
  kept = _run(ob.drop_uniform_groups(), full)
  np.testing.assert_array_equal(np.asarray(kept.mask)[:, 0], [1] * 8 + [0] * 4)
  part = ob.LossContext.create(logp=jnp.asarray(logp[:8]), old_logp=jnp.asarray(old[:8]),
                               mask=jnp.ones((8, 5)),
                               rewards=jnp.asarray(rewards[:8], jnp.float32), group_size=4)
  objective = ob.presets.dapo()
  assert float(objective(full)[0]) == pytest.approx(float(objective(part)[0]), abs=1e-7)


def test_overlong_shaping_fixture():
  np.testing.assert_allclose(ob.overlong_reward(jnp.asarray([10., 12, 13, 14, 16, 17]), 16, 4),
                             [0, 0, -0.25, -0.5, -1, -1])


# --- GSPO (A4) ------------------------------------------------------------------------------------
def test_sequence_ratio_is_the_geometric_mean_of_token_ratios():
  batch = random_batch(5)
  s = np.exp(np.asarray(ob.sequence_log_ratio(ctx_of(batch))))
  for b in range(len(s)):
    valid = batch.mask[b] > 0
    if valid.any():
      ratios = np.exp(batch.logp[b, valid] - batch.old_logp[b, valid])
      assert s[b] == pytest.approx(np.prod(ratios) ** (1 / valid.sum()), rel=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("eps", [(3e-4, 4e-4), (0.05, 0.1)])
def test_gspo_equals_gspo_token_with_per_sequence_advantages(seed, eps):
  ctx = ctx_of(random_batch(seed))
  seq = loss_and_grad(ob.presets.gspo(*eps), ctx)
  tok = loss_and_grad(ob.presets.gspo(*eps, level="token"), ctx)
  assert seq[0] == pytest.approx(tok[0], abs=1e-7)
  np.testing.assert_allclose(seq[2], tok[2], atol=1e-7)


def test_gspo_rows_with_negative_advantage_never_freeze_above_one():
  ctx = worked_example_ctx()
  s = np.exp(np.asarray(ob.sequence_log_ratio(ctx)))
  adv = _adv_rows(ob.group_advantage(), ctx)
  _, _, grad = loss_and_grad(ob.presets.gspo(), ctx)
  rows = (adv < 0) & (s > 1)
  assert rows.any()
  assert np.all(np.abs(grad[rows]).sum(1) > 0)


# --- RLOO (A5) ------------------------------------------------------------------------------------
def test_rloo_properties():
  ctx = _simple_ctx(random_batch(6).rewards, 4, width=3)
  adv = _adv_rows(ob.rloo_advantage(), ctx)
  np.testing.assert_allclose(adv.reshape(4, 4).sum(1), 0.0, atol=1e-6)
  pair = _adv_rows(ob.rloo_advantage(), _simple_ctx([0.3, 1.0], 2))
  np.testing.assert_allclose(pair, [0.3 - 1.0, 1.0 - 0.3], rtol=1e-6)

  # A is stop-gradient by construction, so the sensitivities ∂A_b/∂r_j are taken by differences
  # (A is linear in r: a step of 0.5 is exact up to float32 rounding).
  jac = np.stack([(_adv_rows(ob.rloo_advantage(), ctx.replace(rewards=ctx.rewards.at[j].add(0.5)))
                   - adv) / 0.5 for j in range(16)], axis=1)
  n = 4
  block = np.full((n, n), -1 / (n - 1)) + np.eye(n) * (1 + 1 / (n - 1))
  np.testing.assert_allclose(jac, np.kron(np.eye(4), block), atol=1e-6)


# --- REINFORCE++-baseline (A6) --------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 7])
def test_reinforce_pp_whitening(seed):
  batch = random_batch(seed)
  out = _run(ob.reinforce_pp_advantage(), ctx_of(batch))
  a, m = np.asarray(out.advantages, np.float64), batch.mask
  mean = (a * m).sum() / m.sum()
  var = ((a - mean) ** 2 * m).sum() / (m.sum() - 1)
  assert mean == pytest.approx(0.0, abs=1e-6)
  assert var == pytest.approx(1.0, abs=1e-5)
  rows = m.sum(1) > 0
  per_row = [np.unique(np.round(a[b, m[b] > 0], 6)) for b in np.nonzero(rows)[0]]
  assert all(len(u) == 1 for u in per_row)              # constant within a row
  centred = batch.rewards - np.repeat(batch.rewards.reshape(4, 4).mean(1), 4)
  order = np.argsort(np.array([u[0] for u in per_row]), kind="stable")
  assert np.all(np.diff(centred[rows][order]) >= -1e-9)


# --- aggregation ----------------------------------------------------------------------------------
def test_equal_lengths_make_token_mean_equal_seq_means():
  batch = random_batch(8)
  ctx = ctx_of(batch, mask=jnp.ones_like(ctx_of(batch).mask), with_advantages=False,
               advantages=jnp.asarray(np.random.default_rng(1).normal(size=(16, 7)), jnp.float32))
  values = {m: float(_run(ob.chain(ob.ppo_clip(), ob.aggregate(m)), ctx).loss.value())
            for m in ob.AGGREGATION_MODES}
  assert values["token_mean"] == pytest.approx(values["seq_mean_token_mean"], rel=1e-6)
  assert values["seq_mean_token_sum"] / 7 == pytest.approx(values["token_mean"], rel=1e-6)


@pytest.mark.parametrize("mode", ob.AGGREGATION_MODES)
def test_filters_change_denominators_weights_do_not(mode):
  ctx = ctx_of(random_batch(9), with_advantages=True)
  agg = ob.chain(ob.ppo_clip(), ob.aggregate(mode))
  base = _run(agg, ctx).loss
  row = 3
  weighted = _run(agg, ctx.replace(weights=ctx.weights.at[row].set(0.0))).loss
  filtered = _run(agg, ctx.replace(mask=ctx.mask.at[row].set(0.0))).loss
  assert float(weighted.count) == float(base.count)
  assert float(weighted.total) == pytest.approx(float(filtered.total), abs=1e-6)
  if mode == "seq_mean_token_sum_norm":           # the constant normaliser counts all N rows
    assert float(filtered.count) == float(base.count)
  else:
    expected = {"token_mean": float(ctx.lengths[row])}.get(mode, 1.0)
    assert float(base.count - filtered.count) == expected


def _accumulated(objective, ctx, k):
  """Loss of `objective` accumulated over k micro-batches (Σ totals / Σ counts)."""
  rctx, _, _ = objective.run(ctx)
  size = ctx.batch_size // k
  means = []
  for i, part in enumerate(ob.split_rows(rctx, k)):
    lctx = ob.LossContext.from_batch(part, logp=ctx.logp[i * size:(i + 1) * size])
    means.append(objective.loss.update(lctx, objective.loss.init(lctx))[0].loss)
  return float(ob.sum_means(means).value())


def test_trl_bnpo_is_per_micro_batch_and_dapo_is_global():
  ctx = ctx_of(random_batch(10))
  bnpo, dapo = (ob.presets.trl_compatible(loss_type=t) for t in ("bnpo", "dapo"))
  full = float(dapo(ctx)[0])
  assert float(bnpo(ctx)[0]) == pytest.approx(full, rel=1e-6)    # one micro-batch: identical
  assert _accumulated(dapo, ctx, 2) == pytest.approx(full, rel=1e-6)
  assert abs(_accumulated(bnpo, ctx, 2) - full) > 1e-4            # TRL's bnpo depends on the split


# --- coefficients and the remaining transforms ----------------------------------------------------
def test_schedule_is_evaluated_at_the_step():
  ctx = worked_example_ctx(advantages=jnp.zeros((8, 6)))
  tx = ob.chain(ob.kl_penalty(lambda step: 0.01 * step), ob.aggregate("token_mean"))
  at = {s: float(_run(tx, ctx.replace(step=jnp.asarray(s))).loss.value()) for s in (0, 2, 4)}
  fixed = float(_run(ob.chain(ob.kl_penalty(0.04), ob.aggregate("token_mean")), ctx).loss.value())
  assert at[0] == 0.0
  assert at[4] == pytest.approx(fixed, rel=1e-6) and at[2] == pytest.approx(fixed / 2, rel=1e-6)


def test_k3_is_nonnegative_and_kl_estimators_agree_near_zero():
  logp = jnp.linspace(-3, 0, 50)
  for d in (1e-3, 0.5, -0.5):
    k3 = ob.kl_estimate(logp, logp + d, "k3")
    assert np.all(np.asarray(k3) >= 0)
  k2 = ob.kl_estimate(logp, logp + 1e-2, "k2")
  k3 = ob.kl_estimate(logp, logp + 1e-2, "k3")
  np.testing.assert_allclose(k2, k3, rtol=1e-2)


def test_ppo_clip_at_ratio_one_has_the_reinforce_gradient():
  batch = random_batch(11)
  ctx = ctx_of(batch, with_advantages=True)
  ctx = ctx.replace(old_logp=ctx.logp)
  for mode in ob.AGGREGATION_MODES:
    def grad(pg):
      tx = ob.chain(pg, ob.aggregate(mode))
      return np.asarray(jax.grad(lambda lp: _run(tx, ctx.replace(logp=lp)).loss.value())(
          ctx.logp))
    np.testing.assert_allclose(grad(ob.ppo_clip()), grad(ob.reinforce()), atol=1e-7)


def test_entropy_bonus_raises_entropy_and_top_entropy_keeps_the_top_fraction():
  batch = random_batch(12)
  ctx = ctx_of(batch, with_advantages=True)
  out = _run(ob.top_entropy(0.25), ctx.replace(phase="loss"))
  kept = np.asarray(out.mask) > 0
  valid = batch.mask > 0
  assert kept.sum() == np.ceil(0.25 * valid.sum())
  assert batch.entropy[kept].min() >= batch.entropy[valid & ~kept].max()
  tx = ob.chain(ob.entropy_bonus(0.1), ob.aggregate("token_mean"))
  g = jax.grad(lambda h: _run(tx, ctx.replace(entropy=h)).loss.value())(ctx.entropy)
  assert np.all(np.asarray(g)[valid] < 0)          # descending the loss raises entropy


def test_tis_is_identity_without_mismatch():
  ctx = ctx_of(random_batch(13))
  ctx = ctx.replace(extras={**ctx.extras, "sampler_logp": ctx.old_logp})
  out = _run(ob.tis_weights(), ctx)
  np.testing.assert_array_equal(out.weights, ctx.weights)
  assert float(out.metrics["tis/abs_logp_diff"].value()) == 0.0
