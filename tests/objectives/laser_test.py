"""LaSeR (spec B8): the self-reward score, the auxiliary loss, its gradient, the advantage
integration; fixtures of section (f) and a float64 NumPy reference written here."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import objectives as ob
from jaxrl_llm.objectives import presets

MODES = ob.AGGREGATION_MODES
FIX_SR_LOGP = np.array([-13.0, -22.5, -16.0, -25.0])
FIX_REWARDS = np.array([1.0, 0.0, 1.0, 0.0])


# --- float64 reference ----------------------------------------------------------------------------

def ref_weights(rewards, truncated, lengths, balanced=True):
  """u_b w_b (spec B8 (b)): balanced over the rows that finished and have tokens."""
  u = (~truncated & (lengths > 0)).astype(np.float64)
  correct = (rewards >= 0.5) * u
  incorrect = u - correct
  if not balanced:
    return u
  n_u, n_c, n_i = u.sum(), correct.sum(), incorrect.sum()
  return (correct * n_u / (2 * max(n_c, 1)) + incorrect * n_u / (2 * max(n_i, 1)))


def ref_sr_loss(sr_logp, rewards, truncated, lengths, beta_v=0.1, c_ref=-23.0, tau=1.0,
                balanced=True):
  s = beta_v * (tau * sr_logp - c_ref)
  w = ref_weights(rewards, truncated, lengths, balanced)
  return float(np.sum(w * (s - rewards) ** 2) / len(rewards)), s, w


def ref_grpo(rewards, group_size, eps=1e-6):
  r = rewards.reshape(-1, group_size)
  a = (r - r.mean(1, keepdims=True)) / (r.std(1, ddof=1, keepdims=True) + eps)
  return a.reshape(-1)


def ref_integration(adv, sr_logp, truncated, group_size, omega, tau_f, beta_v=0.1, c_ref=-23.0,
                    eps=1e-6):
  s = np.where(truncated, 0.0, np.clip(beta_v * (sr_logp - c_ref), 0.0, 1.0)).reshape(-1,
                                                                                       group_size)
  std = s.std(1, ddof=1, keepdims=True)
  sr_adv = np.where(std > tau_f, (s - s.mean(1, keepdims=True)) / (std + eps),
                    adv.reshape(-1, group_size))
  return (1 - omega) * adv + omega * sr_adv.reshape(-1)


# --- contexts -------------------------------------------------------------------------------------

def _ctx(rewards, lengths, truncated, group_size, width=5, seed=0, step=0):
  rng = np.random.default_rng(seed)
  b = len(rewards)
  mask = (np.arange(width)[None, :] < np.asarray(lengths)[:, None]).astype(np.float32)
  logp = np.where(mask > 0, -rng.uniform(0.5, 2.0, (b, width)), 30.0)
  old = np.where(mask > 0, logp + 0.1 * rng.normal(size=(b, width)), -30.0)
  return ob.LossContext.create(
      mask=mask, rewards=jnp.asarray(rewards, jnp.float32), logp=jnp.asarray(logp, jnp.float32),
      old_logp=jnp.asarray(old, jnp.float32), group_size=group_size, step=step,
      extras={"truncated": jnp.asarray(truncated)})


def _loss_with_sr(objective, ctx, sr_logp, rollout_sr_logp=None):
  """The objective's loss with a differentiable `sr_logp` in the loss-phase extras (as the train
  step puts it there); `rollout_sr_logp` is the rollout pass's."""
  rctx = ctx.replace(phase="rollout")
  if rollout_sr_logp is not None:
    rctx = rctx.replace(extras={**rctx.extras, "sr_logp": jnp.asarray(rollout_sr_logp)})
  rctx, _ = objective.rollout.update(rctx, objective.rollout.init(rctx))

  def loss(sr, logp, part=rctx):
    lctx = ob.LossContext.from_batch(part, logp=logp)
    lctx = lctx.replace(extras={**lctx.extras, "sr_logp": sr})
    lctx, _ = objective.loss.update(lctx, objective.loss.init(lctx))
    return lctx.loss.total, (lctx.loss.count, lctx.metrics)
  return rctx, loss


def _sr_only(mode, balanced=True, norm=None, **kwargs):
  """Self-reward weights + the SR term + aggregation: the loss is α_SR·L_SR alone."""
  return ob.Objective(
      rollout=ob.chain(ob.self_reward_weights(balanced, mode)),
      loss=ob.chain(ob.self_reward_loss(aggregation=mode, norm=norm, **kwargs),
                    ob.aggregate(mode, norm=norm))).check()


# --- fixtures (f) ---------------------------------------------------------------------------------

def test_fixture_scores():
  s = ob.self_reward_score(jnp.asarray(FIX_SR_LOGP, jnp.float32), 0.1, -23.0)
  np.testing.assert_allclose(s, [1.0, 0.05, 0.7, -0.2], atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_fixture_loss_in_every_aggregation(mode):
  """L_SR = 0.033125 (balanced weights are all 1 here); α_SR·L_SR is the whole loss."""
  norm = 7.0 if mode == "seq_mean_token_sum_norm" else None
  ctx = _ctx(FIX_REWARDS, [3, 5, 1, 4], np.zeros(4, bool), group_size=2)
  _, loss = _loss_with_sr(_sr_only(mode, norm=norm), ctx, None)
  total, (count, metrics) = loss(jnp.asarray(FIX_SR_LOGP, jnp.float32), ctx.logp)
  assert float(total / count) == pytest.approx(0.1 * 0.033125, rel=1e-5)
  assert float(metrics["laser/sr_mse"].value()) == pytest.approx(0.033125, rel=1e-5)
  assert float(metrics["laser/sr_accuracy"].value()) == 1.0   # s > ½ exactly where r = 1
  ref, _, w = ref_sr_loss(FIX_SR_LOGP, FIX_REWARDS, np.zeros(4, bool), np.array([3, 5, 1, 4]))
  assert ref == pytest.approx(0.033125) and np.all(w == 1.0)


@pytest.mark.parametrize("balanced", [True, False])
def test_gradient_formula_and_truncated_rows(balanced):
  """∂(α L_SR)/∂sr_logp_b = 2 α β_v τ w_b u_b (s_b − r_b) / N; truncated and empty rows give 0.
  Unbalanced classes (3 correct, 1 incorrect finished rows) make w_b differ from 1."""
  rewards = np.array([1.0, 1.0, 1.0, 1.0, 0.0, 1.0])
  lengths = np.array([2, 4, 3, 0, 5, 5])
  truncated = np.array([False, False, False, False, False, True])
  sr = np.array([-14.0, -20.0, -17.5, -19.0, -24.0, -11.0])
  alpha, beta, tau = 0.3, 0.2, 0.7
  obj = _sr_only("seq_mean_token_mean", balanced, coef=alpha, beta_v=beta, temperature=tau)
  ctx = _ctx(rewards, lengths, truncated, group_size=3)
  _, loss = _loss_with_sr(obj, ctx, None)

  def value(s):
    total, (count, _) = loss(s, ctx.logp)
    return total / count
  grad = jax.grad(value)(jnp.asarray(sr, jnp.float32))
  # N = 6 rows although seq_mean_token_mean's count is N' = 5: sr_weight carries C/N = 5/6
  s = beta * (tau * sr + 23.0)
  w = ref_weights(rewards, truncated, lengths, balanced)
  if balanced:
    np.testing.assert_allclose(w, [4 / 6, 4 / 6, 4 / 6, 0, 4 / 2, 0])  # 3 correct, 1 incorrect
  expected = 2 * alpha * beta * tau * w * (s - rewards) / 6
  np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-8)
  assert grad[3] == 0.0 and grad[5] == 0.0


def test_balanced_weights_when_classes_differ():
  rewards = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
  truncated = np.array([False, False, False, False, True, False])
  ctx = _ctx(rewards, [2] * 6, truncated, group_size=3).replace(phase="rollout")
  tx = ob.self_reward_weights(True, "seq_mean_token_mean")
  out, _ = tx.update(ctx, tx.init(ctx))
  w = ref_weights(rewards, truncated, np.full(6, 2))
  np.testing.assert_allclose(w, [2.5, 5 / 8, 5 / 8, 5 / 8, 0, 5 / 8])
  np.testing.assert_allclose(out.extras["sr_weight"], w, rtol=1e-6)
  np.testing.assert_array_equal(out.extras["sr_target"], rewards)


@pytest.mark.parametrize("mode", MODES)
def test_micro_batches_add_up_to_the_full_batch_with_the_pg_loss(mode):
  """GRPO + α L_SR: Σ_k totals / Σ_k counts and the summed gradients (logp and sr_logp) equal
  the full batch's for every aggregation mode, and the full value is L_pg + α L_SR."""
  norm = 6.0 if mode == "seq_mean_token_sum_norm" else None
  rng = np.random.default_rng(3)
  rewards = rng.integers(0, 2, 8).astype(np.float64)
  lengths = np.array([1, 5, 3, 0, 2, 5, 4, 1])
  truncated = np.array([False, True, False, False, False, False, True, False])
  sr = rng.uniform(-25, -12, 8)
  ctx = _ctx(rewards, lengths, truncated, group_size=2, width=5, seed=4)
  obj = ob.Objective(
      rollout=ob.chain(ob.self_reward_weights(True, mode), ob.group_advantage()),
      loss=ob.chain(ob.ppo_clip(), ob.self_reward_loss(0.5, aggregation=mode, norm=norm),
                    ob.aggregate(mode, norm=norm))).check()
  rctx, loss = _loss_with_sr(obj, ctx, None)
  sr32 = jnp.asarray(sr, jnp.float32)
  grad_fn = jax.value_and_grad(lambda s, lp, part: loss(s, lp, part), argnums=(0, 1),
                               has_aux=True)
  (total, (count, _)), (g_sr, g_lp) = grad_fn(sr32, ctx.logp, rctx)
  full = float(total / count)
  for k in (2, 4):
    size = 8 // k
    totals, counts, gs, gl = [], [], [], []
    for i, part in enumerate(ob.split_rows(rctx, k)):
      rows = slice(i * size, (i + 1) * size)
      (t, (c, _)), (a, b) = grad_fn(sr32[rows], ctx.logp[rows], part)
      totals.append(t)
      counts.append(c)
      gs.append(a)
      gl.append(b)
    c = float(sum(counts))
    assert float(sum(totals)) / c == pytest.approx(full, rel=1e-5, abs=1e-7)
    np.testing.assert_allclose(np.concatenate(gs) / c, g_sr / count, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(np.concatenate(gl) / c, g_lp / count, rtol=1e-5, atol=1e-8)
  # the full value is L_pg + α·L_SR with L_SR over all N rows
  pg_only = ob.Objective(rollout=ob.chain(ob.group_advantage()),
                         loss=ob.chain(ob.ppo_clip(), ob.aggregate(mode, norm=norm)))
  l_pg, _ = pg_only(ctx)
  l_sr, _, _ = ref_sr_loss(sr, rewards, truncated, lengths)
  assert full == pytest.approx(float(l_pg) + 0.5 * l_sr, rel=1e-5, abs=1e-7)


# --- advantage integration ------------------------------------------------------------------------

def _integrated_advantages(omega, step, phase="rollout", warmup=5, tau_f=0.1, seed=0):
  rng = np.random.default_rng(seed)
  rewards = rng.integers(0, 2, 8).astype(np.float64)
  rewards[:4] = [1, 0, 1, 0]
  sr = np.array([-13.0, -22.5, -16.0, -25.0, -20.0, -20.01, -19.99, -20.0])  # group 2: std small
  truncated = np.array([False, False, False, False, False, False, True, False])
  ctx = _ctx(rewards, [3, 5, 1, 4, 2, 2, 5, 3], truncated, group_size=4, step=step)
  adv_tx = ob.self_reward_advantage(omega, tau_f, warmup, phase=phase)
  if phase == "rollout":
    obj = ob.Objective(ob.chain(ob.group_advantage(), adv_tx),
                       ob.chain(ob.ppo_clip(), ob.aggregate("token_mean")))
    rctx, _ = _loss_with_sr(obj, ctx, None, rollout_sr_logp=jnp.asarray(sr, jnp.float32))
    adv = rctx.advantages
  else:
    obj = ob.Objective(ob.chain(ob.group_advantage()),
                       ob.chain(adv_tx, ob.ppo_clip(), ob.aggregate("token_mean")))
    rctx, _ = _loss_with_sr(obj, ctx, None)
    lctx = ob.LossContext.from_batch(rctx, logp=ctx.logp)
    lctx = lctx.replace(extras={**lctx.extras, "sr_logp": jnp.asarray(sr, jnp.float32)})
    lctx, _ = adv_tx.update(lctx, adv_tx.init(lctx))
    adv = lctx.advantages
  return np.asarray(adv), rewards, sr, truncated, np.asarray(ctx.mask)


@pytest.mark.parametrize("omega, step", [(0.0, 10), (0.3, 4)])
def test_no_integration_equals_grpo_exactly(omega, step):
  """ω = 0, or a step before the warm-up, leaves GRPO's advantages bit for bit."""
  adv, rewards, _, _, mask = _integrated_advantages(omega, step)
  ctx = _ctx(rewards, mask.sum(1).astype(int), np.zeros(8, bool), 4).replace(phase="rollout")
  grpo, _ = ob.group_advantage().update(ctx, ())
  np.testing.assert_array_equal(adv, np.asarray(grpo.advantages))
  np.testing.assert_allclose(adv[:, 0], ref_grpo(rewards, 4), rtol=1e-5)


@pytest.mark.parametrize("phase", ["rollout", "loss"])
def test_integration_after_warmup_matches_the_reference(phase):
  """Group 0: ŝ = clip(s) = [1, .05, .7, 0] spreads (std > τ_f): A' = (1−ω)A + ωÂ^SR. Group 1:
  ŝ within 0.002 of each other (and a truncated row at 0 would spread it, so τ_f = 0.4 keeps it
  below): it keeps A."""
  adv, rewards, sr, truncated, mask = _integrated_advantages(0.3, 5, phase, tau_f=0.4)
  expected = ref_integration(ref_grpo(rewards, 4), sr, truncated, 4, 0.3, 0.4)
  np.testing.assert_allclose(adv, expected[:, None] * mask, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(adv[4:, 0], ref_grpo(rewards, 4)[4:], rtol=1e-5)
  assert np.all(adv[mask == 0] == 0.0)


def test_preset_defaults_and_end_to_end_value():
  """The preset: ω = 0.1 after 200 steps, α = 0.1; with ω = 0 its loss is GRPO(token_mean) +
  α·L_SR on the fixture."""
  obj = presets.build(presets.default_config("laser"))
  assert obj.requires == {"sr_logp"} and obj.rollout.requires == {"sr_logp"}
  tagged = presets.laser(sr_token=16)
  assert tagged.rollout.requires == tagged.loss.requires == {"sr_logp", "sr_token=16"}
  assert presets.laser(omega=0.0).rollout.requires == frozenset()
  assert presets.laser(sr_adv_phase="loss").rollout.requires == frozenset()
  with pytest.raises(ValueError, match="sr_adv_phase"):
    presets.laser(sr_adv_phase="both")
  ctx = _ctx(FIX_REWARDS, [3, 5, 1, 4], np.zeros(4, bool), group_size=2)
  _, loss = _loss_with_sr(presets.laser(omega=0.0), ctx, None)
  total, (count, metrics) = jax.jit(loss)(jnp.asarray(FIX_SR_LOGP, jnp.float32), ctx.logp)
  l_pg, _ = presets.grpo(kl_coef=0.0, aggregation="token_mean")(ctx)
  assert float(total / count) == pytest.approx(float(l_pg) + 0.1 * 0.033125, rel=1e-5)
  assert "laser/sr_mse" in metrics and "loss/sr" in metrics


def test_missing_inputs_fail_clearly():
  ctx = _ctx(FIX_REWARDS, [3, 5, 1, 4], np.zeros(4, bool), group_size=2)
  lctx = ctx.replace(phase="loss")
  tx = ob.self_reward_loss()
  with pytest.raises(ValueError, match="`self_reward_loss` needs `sr_logp`.*self-reward token"):
    tx.update(lctx, ())
  with_sr = lctx.replace(extras={**lctx.extras, "sr_logp": jnp.zeros(4)})
  with pytest.raises(ValueError, match="needs `sr_weight`.*self_reward_weights"):
    tx.update(with_sr, ())
  rctx = ctx.replace(phase="rollout", advantages=jnp.zeros_like(ctx.mask))
  with pytest.raises(ValueError, match="`self_reward_advantage` needs `sr_logp`"):
    ob.self_reward_advantage().update(rctx, ())
  no_trunc = rctx.replace(extras={})
  with pytest.raises(ValueError, match="`self_reward_weights` needs `truncated`"):
    ob.self_reward_weights().update(no_trunc, ())
