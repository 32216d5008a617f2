"""Seed-paper transforms: float64 references on random batches and the spec's test properties.

References are in `seed_reference.py`; properties are `spec/seed_methods.md` §1(f)–§7(f) and
`spec/baselines_and_more.md` B1(f).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import objectives as ob
from jaxrl_llm.objectives import presets, seed
from tests.objectives import seed_reference as ref
from tests.objectives.helpers import ctx_of, loss_and_grad, random_batch

RTOL, ATOL = 2e-5, 2e-6
SEEDS = (0, 1)
f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731


def _run(tx, ctx):
  out, _ = tx.update(ctx, tx.init(ctx))
  return out


def _multi_action_batch(seed_):
  """A random batch whose rows have observation gaps (mask 0 inside the response) and junk."""
  batch = random_batch(seed_, width=12)
  rng = np.random.default_rng(100 + seed_)
  mask = batch.mask.copy()
  for b in range(mask.shape[0]):
    if mask[b].sum() >= 6:
      start = rng.integers(1, int(mask[b].sum()) - 2)
      mask[b, start:start + rng.integers(1, 3)] = 0.0
  off = mask == 0
  for key in ("logp", "old_logp", "ref_logp"):
    batch[key] = np.where(off & (batch.mask > 0), 5.0 * (1 + rng.random(mask.shape)),
                          batch[key])
  batch["mask"] = mask
  batch["advantages"] = batch.advantages * mask
  return batch


def _loss_ctx(batch, **kwargs):
  return ctx_of(batch, with_advantages=True, phase="loss", **kwargs)


def _term_and_grad(tx, ctx, name):
  """The per-token term `name` after `tx` and ∂(Σ term)/∂logp."""
  def total(logp):
    out = _run(tx, ctx.replace(logp=logp))
    return jnp.sum(out.terms[name]), out.terms[name]
  (_, term), grad = jax.value_and_grad(total, has_aux=True)(ctx.logp)
  return np.asarray(term), np.asarray(grad)


# --- LLDS ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed_", SEEDS)
@pytest.mark.parametrize("gate", seed.LLDS_GATES)
@pytest.mark.parametrize("norm", seed.LLDS_NORMS)
def test_llds_matches_reference(seed_, gate, norm):
  batch = _multi_action_batch(seed_)
  term, grad = _term_and_grad(ob.llds(0.3, gate, norm), _loss_ctx(batch), "llds")
  e_term, e_grad = ref.llds(batch.logp, batch.old_logp, batch.advantages, batch.mask, 0.3, gate,
                            norm)
  assert np.any(e_term > 0)
  np.testing.assert_allclose(term, e_term, rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(grad, e_grad, rtol=RTOL, atol=ATOL)


def test_llds_answer_masking_weights_the_answer_span():
  batch = _multi_action_batch(0)
  answer = np.zeros_like(batch.mask)
  answer[:, 2:5] = 1.0
  tx = ob.llds(0.2, answer_coef=0.25)
  term, grad = _term_and_grad(tx, _loss_ctx(batch, extras={"answer_mask": f32(answer)}), "llds")
  e_term, e_grad = ref.llds(batch.logp, batch.old_logp, batch.advantages, batch.mask, 0.2,
                            answer_w=np.where(answer > 0, 0.25, 1.0))
  np.testing.assert_allclose(term, e_term, rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(grad, e_grad, rtol=RTOL, atol=ATOL)
  with pytest.raises(ValueError, match="`llds` needs `answer_mask`"):
    _run(tx, _loss_ctx(batch))


def test_llds_gate_on_a_hand_two_action_example():
  # Row: action 1 = t0..t2 (net Δ = 0.3 − 0.1 − 0.1 > 0), observation t3..t4 (mask 0),
  # action 2 = t5..t6 (net Δ = 0.2 − 0.5 < 0: contributes nothing although Δ_5 > 0).
  mask = np.array([[1, 1, 1, 0, 0, 1, 1, 0]], np.float64)
  old = np.zeros((1, 8))
  logp = -np.array([[0.3, -0.1, -0.1, 9.0, -9.0, 0.2, -0.5, 4.0]])
  ctx = ob.LossContext.create(logp=f32(logp), old_logp=f32(old), mask=f32(mask),
                              rewards=jnp.ones(1), advantages=f32(mask), phase="loss")
  term, grad = _term_and_grad(ob.llds(1.0, norm="token_mean"), ctx, "llds")
  np.testing.assert_allclose(term[0], [0.3, 0, 0, 0, 0, 0, 0, 0], atol=1e-6)
  np.testing.assert_allclose(grad[0], [-1, 0, 0, 0, 0, 0, 0, 0])
  # The response gate sees one net Σ Δ = −0.2 < 0; the token variant penalises t0 and t5.
  term_r, _ = _term_and_grad(ob.llds(1.0, "response", "token_mean"), ctx, "llds")
  np.testing.assert_array_equal(term_r, 0.0)
  term_t, _ = _term_and_grad(ob.llds(1.0, "token", "token_mean"), ctx, "llds")
  np.testing.assert_allclose(term_t[0], [0.3, 0, 0, 0, 0, 0.2, 0, 0], atol=1e-6)


def test_llds_zero_gradient_where_likelihood_rose_or_advantage_negative():
  batch = _multi_action_batch(1)
  ctx = _loss_ctx(batch)
  _, grad = _term_and_grad(ob.llds(0.2, "token"), ctx, "llds")
  rose = batch.logp >= batch.old_logp
  negative = batch.advantages < 0
  assert np.all(grad[rose | negative | (batch.mask == 0)] == 0.0)
  assert np.all(grad <= 0.0) and np.any(grad < 0.0)       # minimising raises the log-prob
  # logp >= old_logp everywhere: the term and its gradient vanish.
  up = _loss_ctx(batch, old_logp=f32(batch.logp - np.abs(batch.logp - batch.old_logp)))
  term, grad = _term_and_grad(ob.llds(0.2, "token"), up, "llds")
  assert np.all(term == 0.0) and np.all(grad == 0.0)


@pytest.mark.parametrize("base", ["grpo", "gspo"])
def test_llds_exact_noop_when_coef_zero_or_on_policy(base):
  ctx = ctx_of(_multi_action_batch(2))
  plain = loss_and_grad(presets.get(base)(), ctx)
  with_zero = loss_and_grad(presets.get(f"{base}_llds")(coef=0.0), ctx)
  if base == "grpo":
    plain = loss_and_grad(presets.grpo(kl_coef=0.001), ctx)
  assert with_zero[0] == plain[0]
  np.testing.assert_array_equal(with_zero[2], plain[2])
  on_policy = ctx.replace(old_logp=ctx.logp)
  base_obj = presets.grpo(kl_coef=0.001) if base == "grpo" else presets.gspo()
  a = loss_and_grad(base_obj, on_policy)
  b = loss_and_grad(presets.get(f"{base}_llds")(), on_policy)
  assert a[0] == b[0]
  np.testing.assert_array_equal(a[2], b[2])
  assert float(b[1]["llds/active_frac"]) == 0.0


def test_llds_paper_normalisation_is_over_the_preserving_set():
  batch = _multi_action_batch(0)
  ctx = ctx_of(batch, advantages=None)
  obj = ob.Objective(ob.chain(ob.group_advantage()),
                     ob.chain(ob.llds(1.0), ob.aggregate("seq_mean_token_mean")))
  loss, _ = obj(ctx)
  rctx, _, _ = obj.run(ctx)
  adv = np.asarray(rctx.advantages)
  term, _ = ref.llds(batch.logp, batch.old_logp, adv, batch.mask, 1.0, norm="token_mean")
  lengths = batch.mask.sum(1)
  pres = [b for b in range(len(lengths)) if lengths[b] > 0 and np.all(adv[b] >= 0)]
  expected = sum(term[b].sum() / lengths[b] for b in pres) / len(pres)
  assert float(loss) == pytest.approx(expected, rel=1e-5)


# --- NSR -------------------------------------------------------------------------------------------
def _nsr_batch(seed_):
  batch = random_batch(seed_)
  batch["old_logp"] = np.where(batch.mask > 0, batch.logp + 0.3 * np.random.default_rng(
      seed_).normal(size=batch.mask.shape), batch.old_logp)
  return batch


@pytest.mark.parametrize("seed_", SEEDS)
@pytest.mark.parametrize("dual", [None, 1.5])
def test_nsr_token_matches_reference(seed_, dual):
  batch = _nsr_batch(seed_)
  key = jax.random.PRNGKey(seed_)
  u_min = 0.6
  ctx = _loss_ctx(batch, rng=key)
  term, grad = _term_and_grad(ob.nsr_clip(0.1, 0.15, u_min, dual), ctx, "pg")
  u = np.asarray(jax.random.uniform(key, batch.mask.shape, jnp.float32, u_min, 1.0), np.float64)
  e_term, e_grad = ref.nsr_token(batch.logp, batch.old_logp, batch.advantages, batch.mask, 0.1,
                                 0.15, u, u_min, dual)
  np.testing.assert_allclose(term, e_term, rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(grad, e_grad, rtol=RTOL, atol=ATOL)
  out = _run(ob.nsr_clip(0.1, 0.15, u_min, dual), ctx)
  assert 0.0 < float(out.metrics["nsr/rescued_frac"].value()) < float(
      out.metrics["nsr/clipped_frac"].value())


@pytest.mark.parametrize("seed_", SEEDS)
def test_nsr_expected_form_matches_reference(seed_):
  batch = _nsr_batch(seed_)
  term, grad = _term_and_grad(ob.nsr_clip(0.1, 0.15, 0.6, stochastic=False), _loss_ctx(batch),
                              "pg")
  e_term, e_grad = ref.nsr_token(batch.logp, batch.old_logp, batch.advantages, batch.mask, 0.1,
                                 0.15, None, 0.6, expected=True)
  np.testing.assert_allclose(term, e_term, rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(grad, e_grad, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("level", seed.NSR_LEVELS)
def test_nsr_with_empty_band_is_hard_clipping(level):
  ctx = _loss_ctx(_nsr_batch(0), rng=jax.random.PRNGKey(3))
  hard = ob.ppo_clip(0.05, 0.05, 2.0) if level == "token" else ob.gspo_clip(0.01, 0.01)
  nsr = ob.nsr_clip(0.05 if level == "token" else 0.01, 0.05 if level == "token" else 0.01,
                    u_min=1.0, dual_clip=2.0 if level == "token" else None, level=level)
  a = _term_and_grad(hard, ctx, "pg")
  b = _term_and_grad(nsr, ctx, "pg")
  np.testing.assert_allclose(b[0], a[0], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(b[1], a[1], rtol=1e-6, atol=1e-7)


def test_nsr_leaves_unclipped_tokens_alone_and_never_rescues_beyond_the_band():
  batch = _nsr_batch(1)
  ctx = _loss_ctx(batch, rng=jax.random.PRNGKey(0))
  eps, u_min = 0.1, 0.7
  rho = np.exp(batch.logp - batch.old_logp)
  adv = batch.advantages
  active = ((adv > 0) & (rho > 1 + eps)) | ((adv < 0) & (rho < 1 - eps))
  beyond = ((adv > 0) & (rho > (1 + eps) / u_min)) | ((adv < 0) & (rho < (1 - eps) * u_min))
  hard = _term_and_grad(ob.ppo_clip(eps, eps), ctx, "pg")
  for k in range(5):
    nsr = _term_and_grad(ob.nsr_clip(eps, eps, u_min), ctx.replace(rng=jax.random.PRNGKey(k)),
                         "pg")
    keep = ~active | beyond
    np.testing.assert_allclose(nsr[0][keep], hard[0][keep], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(nsr[1][keep], hard[1][keep], rtol=1e-6, atol=1e-7)


def test_nsr_rescue_frequency_matches_its_probability_and_is_deterministic():
  b, t = 4, 2000
  rho = np.tile(np.array([1.3, 1.4, 0.75, 0.6])[:, None], (1, t))
  adv = np.tile(np.array([1.0, 1.0, -1.0, -1.0])[:, None], (1, t))
  mask = np.ones((b, t))
  ctx = ob.LossContext.create(logp=f32(np.log(rho)), old_logp=jnp.zeros((b, t)),
                              mask=f32(mask), rewards=jnp.ones(b), advantages=f32(adv),
                              rng=jax.random.PRNGKey(5), phase="loss")
  eps, u_min = 0.2, 0.6
  term, _ = _term_and_grad(ob.nsr_clip(eps, eps, u_min), ctx, "pg")
  rescued = np.abs(term - (-rho * adv)) < 1e-6
  prob = np.asarray(seed.nsr_rescue_probability(f32(rho), f32(adv), eps, eps, u_min))[:, 0]
  np.testing.assert_allclose(rescued.mean(1), prob, atol=0.04)
  assert np.all((prob > 0.3) & (prob < 0.9))
  again, _ = _term_and_grad(ob.nsr_clip(eps, eps, u_min), ctx, "pg")
  np.testing.assert_array_equal(term, again)


def test_nsr_sequence_level_rescues_whole_rows():
  batch = _nsr_batch(2)
  eps = 0.01
  for k in range(4):
    ctx = _loss_ctx(batch, rng=jax.random.PRNGKey(k))
    _, grad = _term_and_grad(ob.nsr_clip(eps, eps, 0.5, level="sequence"), ctx, "pg")
    for row in range(grad.shape[0]):
      valid = batch.mask[row] > 0
      nonzero = grad[row][valid] != 0
      assert nonzero.all() or not nonzero.any()


def test_nsr_needs_an_rng():
  with pytest.raises(ValueError, match="`nsr_clip` needs `rng`"):
    _run(ob.nsr_clip(), _loss_ctx(random_batch(0)))


# --- OWPO ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed_", SEEDS)
@pytest.mark.parametrize("source", seed.OWPO_SOURCES)
def test_owpo_weights_match_reference(seed_, source):
  batch = random_batch(seed_)
  out = _run(ob.owpo_weights(0.5, 0.2, source), _loss_ctx(batch))
  pol = batch.logp if source == "current" else batch.old_logp
  w = ref.owpo_weight(pol, batch.ref_logp, batch.advantages, batch.mask, 0.5, 0.2)
  np.testing.assert_allclose(out.advantages, w * batch.advantages, rtol=RTOL, atol=ATOL)
  assert np.all(np.sign(np.asarray(out.advantages)) == np.sign(batch.advantages))


def test_owpo_is_dapo_when_policy_equals_reference():
  ctx = ctx_of(random_batch(0))
  ctx = ctx.replace(ref_logp=ctx.logp)
  a = loss_and_grad(presets.dapo(), ctx)
  b = loss_and_grad(presets.owpo(), ctx)
  assert a[0] == b[0]
  np.testing.assert_array_equal(a[2], b[2])


def test_owpo_weight_is_monotone_one_way_and_detached():
  adv = np.array([[1.0] * 5, [-1.0] * 5])
  dev = np.linspace(-1.0, 1.0, 5)[None, :].repeat(2, 0)
  ctx = ob.LossContext.create(logp=f32(dev), old_logp=f32(dev), ref_logp=jnp.zeros((2, 5)),
                              mask=jnp.ones((2, 5)), rewards=jnp.ones(2), advantages=f32(adv),
                              phase="loss")
  w = np.asarray(_run(ob.owpo_weights(0.5, 0.2), ctx).advantages) / adv
  assert np.all(np.diff(w[0]) <= 0) and np.all(np.diff(w[1]) >= 0)
  assert w.min() == pytest.approx(0.8) and w.max() == pytest.approx(1.5)
  grad = jax.grad(lambda lp: jnp.sum(_run(ob.owpo_weights(), ctx.replace(logp=lp)).advantages))(
      ctx.logp)
  assert np.all(np.asarray(grad) == 0.0)


def test_reference_refresh_fires_every_k_steps_and_trainer_reads_it():
  obj = presets.owpo(refresh_every=3)
  ctx = ctx_of(random_batch(0))
  state = obj.init(ctx)
  fired = []
  for step in range(8):
    _, lctx, state = obj.run(ctx.replace(step=step), state)
    fired.append(bool(seed.refresh_due(state)))
  assert fired == [False, False, False, True, False, False, True, False]
  assert float(lctx.metrics["owpo/refreshes"].value()) == 2.0
  assert not bool(seed.refresh_due(presets.dapo().init(ctx)))


# --- Δlog p low-probability reweighting and divergence weighting -----------------------------------
@pytest.mark.parametrize("seed_", SEEDS)
def test_low_prob_weights_match_reference(seed_):
  batch = random_batch(seed_)
  out = _run(ob.low_prob_weights(0.2), _loss_ctx(batch))
  w = ref.low_prob_weight(batch.old_logp, batch.mask, 0.2)
  np.testing.assert_allclose(out.advantages, w * batch.advantages, rtol=RTOL, atol=ATOL)
  wv = w[batch.mask > 0]
  assert np.all((wv >= 1.0) & (wv <= 1.2))


def test_low_prob_alpha_zero_is_dapo_and_weight_decreases_in_p():
  ctx = ctx_of(random_batch(1))
  a = loss_and_grad(presets.dapo(), ctx)
  b = loss_and_grad(presets.dapo_lowprob(alpha=0.0), ctx)
  assert a[0] == b[0]
  np.testing.assert_array_equal(a[2], b[2])
  old = np.log(np.linspace(0.05, 0.95, 6))[None, :]
  c = ob.LossContext.create(old_logp=f32(old), mask=jnp.ones((1, 6)), rewards=jnp.ones(1),
                            advantages=jnp.ones((1, 6)))
  w = np.asarray(_run(ob.low_prob_weights(0.2), c).advantages)[0]
  assert np.all(np.diff(w) < 0)


@pytest.mark.parametrize("seed_", SEEDS)
@pytest.mark.parametrize("alpha", [200.0, -200.0])
def test_divergence_weights_match_reference(seed_, alpha):
  batch = random_batch(seed_)
  out = _run(ob.divergence_weights(alpha, 0.3), _loss_ctx(batch))
  w = ref.divergence_weight(batch.logp, batch.old_logp, batch.mask, alpha, 0.3)
  np.testing.assert_allclose(out.advantages, w * batch.advantages, rtol=RTOL, atol=ATOL)
  wv = w[batch.mask > 0]
  assert np.all((wv >= 0.85) & (wv <= 1.15))
  assert np.all(wv >= 1.0) if alpha > 0 else np.all(wv <= 1.0)


@pytest.mark.parametrize("kwargs", [dict(scale=0.0), dict(alpha=0.0)])
def test_divergence_without_effect_is_dapo(kwargs):
  ctx = ctx_of(random_batch(2))
  a = loss_and_grad(presets.dapo(), ctx)
  b = loss_and_grad(presets.dapo_divergence(**kwargs), ctx)
  assert a[0] == b[0]
  np.testing.assert_array_equal(a[2], b[2])
  on_policy = ctx.replace(old_logp=ctx.logp)
  assert loss_and_grad(presets.dapo(), on_policy)[0] == loss_and_grad(
      presets.dapo_divergence(), on_policy)[0]


# --- Unlikeliness reward ---------------------------------------------------------------------------
_B1_R = np.array([1, 1, 0, 1, 0, 1, 0, 1], np.float64)
_B1_L = np.array([-0.20, -0.55, -0.30, -0.90, -1.10, -0.35, -0.60, -0.25])


def _b1_ctx(rewards=_B1_R):
  old = np.tile(_B1_L[:, None], (1, 3))
  old[:, 2] = 50.0                                  # junk on the padded third token
  mask = np.array([[1, 1, 0]] * 8, np.float64)
  return ob.LossContext.create(old_logp=f32(old), mask=f32(mask), rewards=f32(rewards),
                               group_size=8, phase="rollout")


@pytest.mark.parametrize("variant,r,adv", [
    ("code", [0.78125, 0.90625, 0, 0.96875, 0, 0.875, 0, 0.8125],
     [0.525839, 0.801688, -1.198222, 0.939613, -1.198222, 0.732726, -1.198222, 0.594801]),
    ("paper", [0.75, 0.875, 0, 0.9375, 0, 0.84375, 0, 0.78125],
     [0.518328, 0.804303, -1.197517, 0.947290, -1.197517, 0.732809, -1.197517, 0.589822]),
])
def test_unlikeliness_spec_fixture(variant, r, adv):
  tx = ob.chain(ob.unlikeliness_reward(0.25, variant), ob.group_advantage())
  out = _run(tx, _b1_ctx())
  np.testing.assert_allclose(out.rewards, r, rtol=1e-6)
  np.testing.assert_allclose(out.advantages[:, 0], adv, atol=2e-6)
  np.testing.assert_allclose(ref.unlikeliness(_B1_R, _B1_L, 8, 0.25, variant), r, rtol=1e-12)


@pytest.mark.parametrize("seed_", SEEDS)
@pytest.mark.parametrize("variant", seed.UNLIKELINESS_VARIANTS)
def test_unlikeliness_matches_reference(seed_, variant):
  batch = random_batch(seed_)
  out = _run(ob.unlikeliness_reward(0.3, variant), ctx_of(batch, phase="rollout"))
  lengths = batch.mask.sum(1)
  mean_logp = (batch.old_logp * batch.mask).sum(1) / np.maximum(lengths, 1)
  expected = ref.unlikeliness(batch.rewards, mean_logp, batch.group_size, 0.3, variant)
  np.testing.assert_allclose(out.rewards, expected, rtol=RTOL, atol=ATOL)


def test_unlikeliness_identity_cases_and_permutation():
  wrong = _run(ob.unlikeliness_reward(), _b1_ctx(np.zeros(8)))
  np.testing.assert_array_equal(wrong.rewards, 0.0)
  same = _run(ob.unlikeliness_reward(0.0), _b1_ctx())
  np.testing.assert_array_equal(same.rewards, _B1_R)
  perm = np.array([3, 0, 7, 1, 6, 2, 5, 4])
  base = np.asarray(_run(ob.unlikeliness_reward(), _b1_ctx()).rewards)
  ctx = _b1_ctx(_B1_R[perm])
  ctx = ctx.replace(old_logp=ctx.old_logp[perm])
  np.testing.assert_allclose(_run(ob.unlikeliness_reward(), ctx).rewards, base[perm])


# --- FIPO ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed_", SEEDS)
@pytest.mark.parametrize("high_only", [False, True])
def test_fipo_weights_match_reference(seed_, high_only):
  batch = random_batch(seed_)
  batch["logp"] = np.where(batch.mask > 0, batch.logp + 0.8 * (batch.advantages < 0) * (
      np.arange(batch.mask.shape[1]) % 3 == 0), batch.logp)            # some ρ > κ with Â < 0
  tx = ob.future_kl_weights(4.0, 0.2, 0.3, high_only, participation=3.0, safety_threshold=1.5)
  out = _run(tx, _loss_ctx(batch))
  w = ref.fipo_weight(batch.logp, batch.old_logp, batch.advantages, batch.mask, 4.0, 0.2, 0.3,
                      3.0, 1.5, high_only=high_only)
  np.testing.assert_allclose(out.advantages, w * batch.advantages, rtol=RTOL, atol=ATOL)


def test_fipo_hand_vector():
  # mask [1, 1], δ = [log 2, log 0.5], τ = 1 (γ = ½), no clipping: exp(F) = [√2, 0.5].
  ctx = ob.LossContext.create(logp=f32(np.log([[2.0, 0.5]])), old_logp=jnp.zeros((1, 2)),
                              mask=jnp.ones((1, 2)), rewards=jnp.ones(1),
                              advantages=jnp.ones((1, 2)), phase="loss")
  tx = ob.future_kl_weights(1.0, eps_low=1.0, eps_high=10.0, participation=100.0)
  np.testing.assert_allclose(_run(tx, ctx).advantages[0], [np.sqrt(2.0), 0.5], rtol=1e-6)


def test_fipo_is_causal_and_per_row():
  batch = random_batch(0)
  ctx = _loss_ctx(batch)
  tx = ob.future_kl_weights(4.0)
  base = np.asarray(_run(tx, ctx).advantages)
  row, k = 2, 4
  moved = _run(tx, ctx.replace(logp=ctx.logp.at[row, k].add(0.3))).advantages
  diff = np.asarray(moved) != base
  assert diff[row, :k + 1].any() and not diff[row, k + 1:].any()
  assert not np.delete(diff, row, axis=0).any()


def test_fipo_on_policy_is_dapo_with_the_same_dual_clip():
  ctx = ctx_of(random_batch(1))
  on_policy = ctx.replace(old_logp=ctx.logp)
  a = loss_and_grad(presets.dapo(dual_clip=10.0), on_policy)
  b = loss_and_grad(presets.fipo(), on_policy)
  assert a[0] == b[0]
  np.testing.assert_array_equal(a[2], b[2])
  c = loss_and_grad(presets.fipo(), ctx)
  assert float(c[1]["fipo/weight_std"]) > 0


# --- composition and presets -----------------------------------------------------------------------
SEED_PRESETS = ("grpo_llds", "gspo_llds", "dapo_nsr", "gspo_nsr", "owpo", "dapo_lowprob",
                "dapo_divergence", "unlikeliness", "fipo")


@pytest.mark.parametrize("name", SEED_PRESETS)
def test_seed_presets_build_run_and_document_themselves(name):
  obj = presets.build(presets.default_config(name))
  ctx = ctx_of(random_batch(0), rng=jax.random.PRNGKey(0))
  loss, metrics, grad = loss_and_grad(obj, ctx)
  assert np.isfinite(loss) and np.all(np.isfinite(grad)) and np.any(grad != 0)
  doc = presets.PRESETS[name].__doc__
  assert "arXiv" in doc and "Defaults" in doc


def test_gspo_llds_nsr_and_dapo_fipo_chains_jit_and_differentiate():
  gspo_chain = ob.Objective(
      ob.chain(ob.group_advantage()),
      ob.chain(ob.nsr_clip(3e-4, 4e-4, level="sequence"), ob.llds(0.2),
               ob.aggregate("seq_mean_token_mean")))
  dapo_chain = ob.Objective(
      ob.chain(ob.drop_uniform_groups(), ob.group_advantage()),
      ob.chain(ob.future_kl_weights(), ob.ppo_clip(0.2, 0.28, 10.0), ob.aggregate("token_mean")))
  ctx = ctx_of(_multi_action_batch(0), rng=jax.random.PRNGKey(1))
  for obj in (gspo_chain, dapo_chain):
    obj.check()
    f = jax.jit(jax.value_and_grad(lambda lp, o=obj: o(ctx.replace(logp=lp))[0]))
    loss, grad = f(ctx.logp)
    assert np.isfinite(float(loss)) and np.any(np.asarray(grad) != 0)
  assert gspo_chain.requires == frozenset() and dapo_chain.requires == frozenset()
  owpo_kl = ob.chain(ob.owpo_weights(), ob.ppo_clip(), ob.entropy_bonus(), ob.aggregate())
  assert owpo_kl.requires == {"ref_logp", "entropy"}


def test_unlikeliness_ragged_groups_equal_contiguous_groups():
  batch = random_batch(1)
  contiguous = _run(ob.unlikeliness_reward(), ctx_of(batch, phase="rollout"))
  ids = jnp.arange(batch.mask.shape[0]) // batch.group_size
  perm = np.random.default_rng(0).permutation(batch.mask.shape[0])
  ragged_ctx = ctx_of(batch, phase="rollout", group_size=None, group_ids=ids[perm],
                      num_groups=int(ids.max()) + 1)
  # Rows permuted across the batch, same group membership: same rewards after un-permuting rank
  # ties (none here: mean log-probs are continuous).
  ragged_ctx = ragged_ctx.replace(rewards=ragged_ctx.rewards[perm],
                                  old_logp=ragged_ctx.old_logp[perm], mask=ragged_ctx.mask[perm])
  ragged = _run(ob.unlikeliness_reward(), ragged_ctx)
  np.testing.assert_allclose(np.asarray(ragged.rewards), np.asarray(contiguous.rewards)[perm],
                             rtol=1e-6)


# --- THR -------------------------------------------------------------------------------------------
def _thr_batch(seed_, vocab=13, dim=6):
  batch = random_batch(seed_, num_prompts=2, group_size=4, width=5)
  rng = np.random.default_rng(seed_ + 50)
  batch["rewards"] = np.array([1, 0, 0, 1, 0, 1, 1, 1], np.float64)
  batch["tokens"] = rng.integers(0, 6, size=batch.mask.shape)          # repeated ids in V*
  batch["hidden"] = np.where(batch.mask[:, :, None] > 0,
                             rng.normal(size=batch.mask.shape + (dim,)), 40.0)
  batch["unembedding"] = rng.normal(size=(vocab, dim))
  return batch


def _thr_ctx(batch, **kwargs):
  kwargs = {"with_advantages": True, "phase": "loss", **kwargs}
  ctx = ctx_of(batch, hidden=f32(batch.hidden), tokens=jnp.asarray(batch.tokens), **kwargs)
  return ctx.replace(extras={**ctx.extras, "unembedding": f32(batch.unembedding)})


@pytest.mark.parametrize("seed_,step_weight", [(0, "seq_mean_token_mean"), (1, "token_mean")])
def test_thr_weights_match_brute_force_reference(seed_, step_weight):
  batch = _thr_batch(seed_)
  out = _run(ob.thr_weights(0.2, 1.0, step_weight=step_weight), _thr_ctx(batch))
  w = ref.thr(batch.hidden, batch.tokens, batch.mask, batch.rewards, batch.advantages,
              batch.unembedding, 4, 0.2, 1.0, step_weight)
  np.testing.assert_allclose(out.advantages, w * batch.advantages, rtol=1e-4, atol=1e-6)
  assert np.any(w[batch.mask > 0] == 0.0) and np.any(w[batch.mask > 0] == 1.2)


def test_thr_quantile_mode_keeps_the_top_fraction_of_each_group():
  batch = _thr_batch(0)
  out = _run(ob.thr_weights(0.0, keep_mode="quantile", quantile=0.4), _thr_ctx(batch))
  kept = (np.asarray(out.advantages) != 0) & (batch.mask > 0)
  for g0 in (0, 4):
    n_valid = batch.mask[g0:g0 + 4].sum()
    if batch.rewards[g0:g0 + 4].min() < 1 <= batch.rewards[g0:g0 + 4].max():
      assert kept[g0:g0 + 4].sum() == np.ceil(0.4 * n_valid)


def test_thr_sign_sanity_on_two_identical_responses():
  # Orthogonal hidden states across positions: s_{j,k} = ‖g_k‖²‖h_k‖² > 0 (the self term). With
  # generic hidden states the cross terms can flip the sign of single tokens, so the spec's
  # "every token" property holds where the self term dominates.
  rng = np.random.default_rng(0)
  hidden = np.repeat((np.eye(5)[:4] * rng.uniform(0.5, 2.0, size=(4, 1)))[None], 2, axis=0)
  tokens = np.repeat(rng.integers(0, 7, size=(1, 4)), 2, axis=0)
  ctx = ob.LossContext.create(logp=jnp.zeros((2, 4)), mask=jnp.ones((2, 4)),
                              rewards=jnp.array([1.0, 0.0]), group_size=2,
                              advantages=f32(np.array([[1.0] * 4, [-1.0] * 4])),
                              hidden=f32(hidden), tokens=jnp.asarray(tokens),
                              extras={"unembedding": f32(rng.normal(size=(7, 5)))},
                              phase="loss")
  out = _run(ob.thr_weights(0.2, beta=0.0), ctx)
  np.testing.assert_allclose(np.asarray(out.advantages) / np.array([[1.0], [-1.0]]),
                             [[1.2] * 4, [0.8] * 4], rtol=1e-6)
  assert float(out.metrics["thr/positive_frac"].value()) == 0.5


def test_thr_uniform_groups_are_untouched_and_weights_carry_no_gradient():
  batch = _thr_batch(0)
  batch["rewards"] = np.array([1, 1, 1, 1, 0, 0, 0, 0], np.float64)
  ctx = _thr_ctx(batch)
  out = _run(ob.thr_weights(0.3), ctx)
  np.testing.assert_array_equal(out.advantages, ctx.advantages)
  mixed = _thr_ctx(_thr_batch(0))
  grad = jax.grad(lambda h: jnp.sum(
      _run(ob.thr_weights(0.3), mixed.replace(hidden=h)).advantages))(mixed.hidden)
  assert np.all(np.asarray(grad) == 0.0)
  assert ob.chain(ob.thr_weights(), ob.ppo_clip(), ob.aggregate()).requires == {"hidden"}


@pytest.mark.parametrize("base", presets.THR_BASES)
def test_grpo_thr_preset_runs_and_p_zero_keep_all_is_the_base(base):
  batch = _thr_batch(2)
  ctx = _thr_ctx(batch, with_advantages=False, phase=None)
  obj = presets.build(presets.default_config("grpo_thr"), base=base)
  assert obj.requires == {"hidden"}
  loss, metrics, grad = loss_and_grad(obj, ctx)
  assert np.isfinite(loss) and np.any(grad != 0) and 0 < float(metrics["thr/kept_frac"]) < 1
  # p = 0 with the quantile rule keeping everything: exactly the base objective.
  plain = presets.grpo(kl_coef=0.0) if base == "grpo" else presets.gspo(level="token")
  a = loss_and_grad(plain, ctx)
  b = loss_and_grad(presets.grpo_thr(p=0.0, keep_mode="quantile", quantile=1.0, base=base,
                                     **({} if base == "grpo" else dict(eps_low=3e-4,
                                                                       eps_high=4e-4))), ctx)
  assert a[0] == pytest.approx(b[0], rel=1e-6)
  np.testing.assert_allclose(a[2], b[2], rtol=1e-6, atol=1e-8)
