"""Stratified GRPO, COPO and D3S (`spec/baselines_and_more.md` B2, B4, B5): float64 NumPy
references written here from the spec's formulas, the spec's fixtures and properties (section
(f) of each method), ragged groups, jit and gradients.
"""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import objectives as ob
from jaxrl_llm.objectives import presets, seed_groups as sg
from tests.objectives.helpers import ctx_of, random_batch

RTOL, ATOL = 2e-5, 2e-6
f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731


def _run(tx, ctx):
  out, _ = tx.update(ctx, tx.init(ctx))
  return out


def _rollout_ctx(rewards, mask=None, group_size=None, group_ids=None, num_groups=None,
                 extras=None, **kwargs):
  b = len(rewards)
  mask = np.ones((b, 3)) if mask is None else mask
  groups = (dict(group_size=group_size) if group_size is not None else
            dict(group_ids=jnp.asarray(group_ids), num_groups=num_groups))
  return ob.LossContext.create(mask=f32(mask), rewards=f32(rewards),
                               old_logp=f32(np.zeros(mask.shape)), phase="rollout",
                               extras={k: jnp.asarray(v) for k, v in (extras or {}).items()},
                               **groups, **kwargs)


def _rows(ctx_out):
  """The per-row advantage of a context whose advantages are row constants on valid tokens."""
  return np.asarray(ctx_out.advantages)[:, 0]


def _shuffled(n, seed):
  return np.random.default_rng(seed).permutation(n)


# --- float64 references ---------------------------------------------------------------------------
def _norm(x, eps):
  """(x − μ)/(σ + ε) over `x` (Bessel), 0 for a single value or a zero denominator."""
  x = np.asarray(x, np.float64)
  if x.size < 2:
    return np.zeros_like(x)
  d = x.std(ddof=1) + eps
  return (x - x.mean()) / d if d > 0 else np.zeros_like(x)


def ref_stratified(r, groups, strata, alpha, eps, max_stratum=None):
  r, groups, strata = np.asarray(r, np.float64), np.asarray(groups), np.asarray(strata)
  if max_stratum is not None:
    strata = np.minimum(strata, max_stratum)
  gn, san, bias = np.zeros_like(r), np.zeros_like(r), np.zeros_like(r)
  for k in np.unique(groups):
    rows = np.flatnonzero(groups == k)
    gn[rows] = _norm(r[rows], eps)
    for c in np.unique(strata[rows]):
      sub = rows[strata[rows] == c]
      san[sub] = _norm(r[sub], eps)
      bias[sub] = abs(r[sub].mean() - r[rows].mean())
  num_strata = len({(g, s) for g, s in zip(groups, strata)}) / len(np.unique(groups))
  return alpha * san + (1 - alpha) * gn, num_strata, bias.mean()


def ref_entropy(answers, groups):
  out = np.zeros(len(answers))
  for k in np.unique(groups):
    rows = np.flatnonzero(groups == k)
    labels = [a if a >= 0 else ("none", i) for i, a in zip(rows, np.asarray(answers)[rows])]
    _, counts = np.unique([str(x) for x in labels], return_counts=True)
    p = counts / len(rows)
    out[rows] = -np.sum(p * np.log2(p))
  return out


def ref_copo(r, groups, answers, kappa=20.0, h0=0.5, gate="soft_with_forced", discount=False,
             eps=1e-6):
  """(A^l, A^g, w, H) per row, float64, from the spec's B4 formulas."""
  r, groups = np.asarray(r, np.float64), np.asarray(groups)
  h = ref_entropy(answers, groups)
  keys = list(np.unique(groups))
  a_local = np.zeros_like(r)
  acc = {}
  for k in keys:
    rows = np.flatnonzero(groups == k)
    a_local[rows] = _norm(r[rows], eps)
    n = len(rows)
    c = 1.0
    if discount and n > 1:
      c = 1.0 - (1.0 - 1.0 / n) / np.log2(n) * h[rows[0]]
    acc[k] = c * r[rows].mean()
  values = np.array([acc[k] for k in keys])
  if len(keys) > 1 and values.max() > values.min():
    glob = (values - values.mean()) / (values.std(ddof=1) + eps)
  else:
    glob = np.zeros_like(values)
  a_global = np.array([glob[keys.index(g)] for g in groups])
  soft = 1.0 / (1.0 + np.exp(-kappa * (h - h0)))
  uniform = np.array([np.ptp(r[groups == g]) == 0 for g in groups])
  w = {"soft_with_forced": np.where((a_local == 0) | uniform, 0.0, soft), "only_soft": soft,
       "only_global": np.zeros_like(soft), "no_global": np.ones_like(soft)}[gate]
  return a_local, a_global, w, h


def ref_clip_and_grad(ratio, adv, eps_low, eps_high, dual):
  """ℓ^clip(ρ, A) with optional dual clip, and ∂ℓ/∂logp (ρ = exp(logp − old_logp))."""
  unclipped, clipped = ratio * adv, np.clip(ratio, 1 - eps_low, 1 + eps_high) * adv
  loss = -np.minimum(unclipped, clipped)
  grad = np.where(unclipped <= clipped, -ratio * adv, 0.0)
  if dual is not None:
    dual_active = (adv < 0) & (-dual * adv < loss)
    loss = np.where(dual_active, -dual * adv, loss)
    grad = np.where(dual_active, 0.0, grad)
  return loss, grad


def brute_force_subset(values, size):
  """The largest population variance over all subsets of `size` of `values`."""
  return max(np.var(np.asarray(c, np.float64))
             for c in itertools.combinations(values, size))


# --- B2 Stratified GRPO ---------------------------------------------------------------------------
def test_stratified_fixture():
  """(f)3: rewards [1,0,1,1,0,0], strata [0,0,1,1,1,2] → A^SAN (ε = 0)."""
  ctx = _rollout_ctx([1, 0, 1, 1, 0, 0], group_size=6, extras={"stratum": [0, 0, 1, 1, 1, 2]})
  out = _run(sg.stratified_advantage(alpha=1.0, eps=0.0), ctx)
  np.testing.assert_allclose(_rows(out), [0.7071068, -0.7071068, 0.5773503, 0.5773503,
                                          -1.1547005, 0.0], rtol=1e-6, atol=1e-7)
  m = ob.metric_values(out.metrics)
  assert float(m["stratified/num_strata"]) == 3.0
  assert float(m["stratified/singleton_frac"]) == pytest.approx(1 / 6)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.8, 1.0])
@pytest.mark.parametrize("max_stratum", [None, 1])
@pytest.mark.parametrize("seed", [0, 1])
def test_stratified_matches_reference(alpha, max_stratum, seed):
  rng = np.random.default_rng(seed)
  b, g = 24, 6
  r = rng.integers(0, 2, b) + 0.1 * rng.normal(size=b)
  r[6:12] = 1.0                                            # a uniform group
  strata = rng.integers(0, 4, b)
  strata[12:18] = 2                                        # one stratum: SAN = GN
  ctx = _rollout_ctx(r, group_size=g, extras={"stratum": strata})
  out = _run(sg.stratified_advantage(alpha, 1e-6, max_stratum), ctx)
  want, num_strata, bias = ref_stratified(r, np.arange(b) // g, strata, alpha, 1e-6, max_stratum)
  np.testing.assert_allclose(_rows(out), want, rtol=RTOL, atol=1e-5)
  m = ob.metric_values(out.metrics)
  assert float(m["stratified/num_strata"]) == pytest.approx(num_strata)
  assert float(m["stratified/cross_bias"]) == pytest.approx(bias, rel=1e-5, abs=1e-6)


def test_stratified_ragged_groups_are_a_permutation():
  """Explicit, shuffled group ids of unequal sizes: outputs are the reference's, row for row."""
  rng = np.random.default_rng(3)
  sizes = [1, 3, 5, 7, 4]
  groups = np.repeat(np.arange(5), sizes)
  b = groups.size
  r = rng.normal(size=b)
  strata = rng.integers(0, 3, b)
  perm = _shuffled(b, 4)
  ctx = _rollout_ctx(r[perm], group_ids=groups[perm], num_groups=5,
                     extras={"stratum": strata[perm]})
  out = jax.jit(lambda c: _run(sg.stratified_advantage(0.7), c))(ctx)
  want, _, _ = ref_stratified(r, groups, strata, 0.7, 1e-6)
  np.testing.assert_allclose(_rows(out), want[perm], rtol=RTOL, atol=1e-5)


def test_stratified_one_stratum_is_grpo():
  """(f)1: every row of a group in one stratum (different per group) → A = A^GN for any α."""
  batch = random_batch(2, num_prompts=4, group_size=4)
  strata = np.repeat([0, 3, 1, 1], 4)
  ctx = ctx_of(batch, phase="rollout", extras={"stratum": jnp.asarray(strata)})
  grpo = np.asarray(_run(ob.group_advantage(), ctx).advantages)
  for alpha in (0.0, 0.3, 1.0):
    np.testing.assert_allclose(np.asarray(_run(sg.stratified_advantage(alpha), ctx).advantages),
                               grpo, rtol=1e-6, atol=1e-6)


def test_stratified_alpha_one_standardises_each_stratum():
  """(f)2: α = 1, inside each stratum of ≥ 2 rows mean(A) = 0 and Bessel std(A) ≈ 1."""
  rng = np.random.default_rng(5)
  r, strata = rng.normal(size=16), rng.integers(0, 2, 16)
  ctx = _rollout_ctx(r, group_size=8, extras={"stratum": strata})
  a = _rows(_run(sg.stratified_advantage(1.0, eps=1e-9), ctx))
  for k in range(2):
    for c in range(2):
      sel = (np.arange(16) // 8 == k) & (strata == c)
      if sel.sum() >= 2:
        assert abs(a[sel].mean()) < 1e-5
        assert a[sel].std(ddof=1) == pytest.approx(1.0, rel=1e-4)


def test_stratified_is_invariant_to_positive_affine_rewards():
  """(f)3: A unchanged by r → 3r + 2 (ε → 0)."""
  rng = np.random.default_rng(6)
  r, strata = rng.normal(size=12), rng.integers(0, 3, 12)
  tx = sg.stratified_advantage(0.8, eps=1e-9)
  a = _rows(_run(tx, _rollout_ctx(r, group_size=6, extras={"stratum": strata})))
  b = _rows(_run(tx, _rollout_ctx(3 * r + 2, group_size=6, extras={"stratum": strata})))
  np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_stratified_preset_with_one_stratum_equals_grpo_and_differentiates():
  batch = random_batch(0)
  ctx = ctx_of(batch, extras={"stratum": jnp.zeros(16, jnp.int32)})
  strat = presets.build("stratified_grpo")
  grpo = presets.build("grpo", kl_coef=0.001)

  def loss(obj, logp):
    return obj(ctx.replace(logp=logp))[0]
  l1, g1 = jax.jit(jax.value_and_grad(lambda lp: loss(strat, lp)))(ctx.logp)
  l2, g2 = jax.value_and_grad(lambda lp: loss(grpo, lp))(ctx.logp)
  np.testing.assert_allclose(l1, l2, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(g1, g2, rtol=1e-5, atol=1e-8)
  assert np.all(np.isfinite(np.asarray(g1))) and np.any(np.asarray(g1) != 0)


def test_stratified_errors():
  ctx = _rollout_ctx([1.0, 0.0], group_size=2)
  with pytest.raises(ValueError, match=r"`stratified_advantage` needs `stratum`.*hooks\.stratum"):
    _run(sg.stratified_advantage(), ctx)
  bad = _rollout_ctx([1.0, 0.0], group_size=2, extras={"stratum": [[0], [1]]})
  with pytest.raises(ValueError, match="one integer per row"):
    _run(sg.stratified_advantage(), bad)
  with pytest.raises(ValueError, match="alpha"):
    sg.stratified_advantage(alpha=1.5)
  with pytest.raises(ValueError, match="max_stratum"):
    sg.stratified_advantage(max_stratum=-1)


# --- B4 COPO --------------------------------------------------------------------------------------
# Spec fixture: P all "4" and correct; Q 1,2,3,4,5,6,7,7 all wrong; R a,a,a,a,b,b,b,b, a's correct.
FIX_ANSWERS = np.array([0] * 8 + [0, 1, 2, 3, 4, 5, 6, 6] + [0] * 4 + [1] * 4)
FIX_REWARDS = np.array([1.0] * 8 + [0.0] * 8 + [1.0] * 4 + [0.0] * 4)


def _fixture_ctx(**kwargs):
  return _rollout_ctx(FIX_REWARDS, group_size=8, extras={"answer_id": FIX_ANSWERS}, **kwargs)


def test_copo_fixture_entropy_and_global_advantage():
  """(f)1: H = (0, 2.75, 1.0) bits; R^g = (1, 0, 0.5); A^g = (+0.999998, −0.999998, 0)."""
  ctx = _fixture_ctx()
  np.testing.assert_allclose(np.asarray(ob.answer_entropy(ctx.extras["answer_id"], ctx))[::8],
                             [0.0, 2.75, 1.0], atol=1e-6)
  out = _run(sg.copo_advantage(), ctx)
  np.testing.assert_allclose(np.asarray(out.extras["copo_global_adv"]),
                             np.repeat([0.999998, -0.999998, 0.0], 8), atol=1e-6)
  assert float(ob.metric_values(out.metrics)["copo/global_reward_mean"]) == pytest.approx(0.5)


def test_copo_fixture_gates():
  """(f)2: w(soft) = (0.0000454, 1, 0.9999546); w(soft-with-forced) = (0, 0, 0.9999546); local A
  of R's first row 0.935413; under soft-with-forced group Q gets A^g = −1 on every token."""
  ctx = _fixture_ctx()
  soft = _run(sg.copo_advantage(gate="only_soft"), ctx)
  np.testing.assert_allclose(np.asarray(soft.extras["copo_gate"])[::8],
                             [0.0000454, 1.0, 0.9999546], atol=1e-7)
  forced = _run(sg.copo_advantage(), ctx)
  np.testing.assert_allclose(np.asarray(forced.extras["copo_gate"]),
                             np.repeat([0.0, 0.0, 0.9999546], 8), atol=1e-7)
  assert float(forced.advantages[16, 0]) == pytest.approx(0.935413, abs=1e-6)
  assert float(ob.metric_values(forced.metrics)["copo/forced_frac"]) == pytest.approx(2 / 3)
  # Group Q's per-token loss is the global branch alone, with A^g = −1: ℓ = −min(ρA, clip(ρ)A).
  lctx = ob.LossContext.from_batch(forced, logp=jnp.full((24, 3), 0.3))
  term = np.asarray(_run(sg.copo_clip(dual_clip=None), lctx).terms["pg"])
  rho = np.exp(0.3)
  np.testing.assert_allclose(term[8:16], -min(-rho * 0.999998, -1.2 * 0.999998), rtol=1e-6)
  # Under only-soft, group Q is (almost) all local, and its local advantage is 0.
  lsoft = ob.LossContext.from_batch(soft, logp=jnp.full((24, 3), 0.3))
  assert np.all(np.abs(np.asarray(_run(sg.copo_clip(), lsoft).terms["pg"])[8:16]) < 1e-6)


def test_copo_equal_accuracy_and_no_global_is_grpo():
  """(f)3: equal accuracy in every group → A^g ≡ 0; with w ≡ 1 COPO equals GRPO exactly."""
  batch = random_batch(4, num_prompts=4, group_size=4)
  r = np.tile([0.3, 0.9, 0.3, 0.5], 4)
  answers = jnp.asarray(np.tile([0, 1, 0, -1], 4))
  ctx = ctx_of(batch, rewards=f32(r), extras={"answer_id": answers})
  out = _run(sg.copo_advantage(gate="only_soft"), ctx.replace(phase="rollout"))
  assert np.all(np.asarray(out.extras["copo_global_adv"]) == 0.0)
  ctx = ctx_of(batch, extras={"answer_id": answers})
  copo = presets.build("copo", gate="no_global", dual_clip=None)
  grpo = presets.build("grpo", kl_coef=0.0)

  def value_and_grad(obj):
    return jax.value_and_grad(lambda lp: obj(ctx.replace(logp=lp))[0])(ctx.logp)
  (l1, g1), (l2, g2) = value_and_grad(copo), value_and_grad(grpo)
  assert float(l1) == float(l2)
  np.testing.assert_array_equal(np.asarray(g1), np.asarray(g2))


@pytest.mark.parametrize("gate", sg.COPO_GATES)
@pytest.mark.parametrize("discount", [False, True])
def test_copo_advantages_match_reference(gate, discount):
  rng = np.random.default_rng(7)
  b, g = 24, 6
  r = rng.integers(0, 2, b).astype(np.float64)
  r[:6] = 1.0
  answers = rng.integers(-1, 3, b)
  ctx = _rollout_ctx(r, group_size=g, extras={"answer_id": answers})
  out = _run(sg.copo_advantage(gate=gate, consistency_discount=discount), ctx)
  a_l, a_g, w, h = ref_copo(r, np.arange(b) // g, answers, gate=gate, discount=discount)
  np.testing.assert_allclose(_rows(out), a_l, rtol=RTOL, atol=1e-5)
  np.testing.assert_allclose(np.asarray(out.extras["copo_global_adv"]), a_g, rtol=RTOL,
                             atol=1e-5)
  np.testing.assert_allclose(np.asarray(out.extras["copo_gate"]), w, rtol=1e-5, atol=1e-6)
  assert float(ob.metric_values(out.metrics)["copo/entropy"]) == pytest.approx(h.mean(), 1e-5)


def test_copo_ragged_groups_are_a_permutation():
  rng = np.random.default_rng(8)
  sizes = [2, 5, 3, 6]
  groups = np.repeat(np.arange(4), sizes)
  b = groups.size
  r = rng.integers(0, 2, b).astype(np.float64)
  answers = rng.integers(-1, 2, b)
  perm = _shuffled(b, 9)
  ctx = _rollout_ctx(r[perm], group_ids=groups[perm], num_groups=4,
                     extras={"answer_id": answers[perm]})
  out = jax.jit(lambda c: _run(sg.copo_advantage(consistency_discount=True), c))(ctx)
  a_l, a_g, w, _ = ref_copo(r, groups, answers, discount=True)
  np.testing.assert_allclose(_rows(out), a_l[perm], rtol=RTOL, atol=1e-5)
  np.testing.assert_allclose(np.asarray(out.extras["copo_global_adv"]), a_g[perm], rtol=RTOL,
                             atol=1e-5)
  np.testing.assert_allclose(np.asarray(out.extras["copo_gate"]), w[perm], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dual", [None, 3.0])
def test_copo_loss_and_gradient_match_reference(dual):
  """ℓ = (1 − w)ℓ^clip(ρ, A^g) + w ℓ^clip(ρ, A^l), value and ∂/∂logp per token, on a batch whose
  ratios reach the clip and dual-clip regions; padding junk ignored."""
  batch = random_batch(11, num_prompts=4, group_size=4)
  rng = np.random.default_rng(12)
  valid = batch.mask > 0
  batch["logp"] = np.where(valid, batch.old_logp + rng.normal(0, 0.8, batch.mask.shape),
                           batch.logp)
  answers = rng.integers(-1, 2, 16)
  ctx = ctx_of(batch, extras={"answer_id": jnp.asarray(answers)})
  rctx = _run(sg.copo_advantage(), ctx.replace(phase="rollout"))
  tx = sg.copo_clip(0.2, 0.28, dual)

  def total(logp):
    out = _run(tx, ob.LossContext.from_batch(rctx, logp=logp))
    return jnp.sum(out.terms["pg"]), out.terms["pg"]
  (_, term), grad = jax.jit(jax.value_and_grad(total, has_aux=True))(ctx.logp)
  a_l, a_g, w, _ = ref_copo(batch.rewards, np.arange(16) // 4, answers)
  ratio = np.exp(np.where(valid, batch.logp - batch.old_logp, 0.0))
  lg, gg = ref_clip_and_grad(ratio, a_g[:, None], 0.2, 0.28, dual)
  ll, gl = ref_clip_and_grad(ratio, a_l[:, None], 0.2, 0.28, dual)
  want = np.where(valid, (1 - w[:, None]) * lg + w[:, None] * ll, 0.0)
  want_grad = np.where(valid, (1 - w[:, None]) * gg + w[:, None] * gl, 0.0)
  np.testing.assert_allclose(np.asarray(term), want, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-4, atol=1e-5)
  if dual is not None:
    assert np.any((a_l[:, None] < 0) & (ratio > dual) & valid)


def test_copo_errors():
  ctx = _rollout_ctx([1.0, 0.0], group_size=2)
  with pytest.raises(ValueError, match=r"`copo_advantage` needs `answer_id`.*hooks\.answers"):
    _run(sg.copo_advantage(), ctx)
  with pytest.raises(ValueError, match="unknown COPO gate"):
    sg.copo_advantage(gate="soft")
  lctx = ob.LossContext.from_batch(_run(ob.group_advantage(), ctx), logp=jnp.zeros((2, 3)))
  with pytest.raises(ValueError, match="`copo_clip` needs `copo_global_adv`.*copo_advantage"):
    _run(sg.copo_clip(), lctx)
  assert sg.copo_advantage().requires == {"answer_id"}


# --- B5 D3S ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
def test_subset_equals_brute_force(seed):
  """(f)1: for groups of n ≤ 10 and every subset size, the chosen rows have the largest variance
  over all subsets of that size (and are the unique best subset when it is unique)."""
  rng = np.random.default_rng(seed)
  sizes = rng.integers(1, 11, 5)
  groups = np.repeat(np.arange(5), sizes)
  values = rng.normal(size=groups.size)
  if seed % 2:
    values = np.round(values)                  # ties
  perm = _shuffled(groups.size, seed)
  values, groups = values[perm], groups[perm]
  fn = jax.jit(sg.variance_max_subset, static_argnums=3)
  for trial in range(3):
    s = np.array([rng.integers(1, n + 1) for n in sizes])
    keep = np.asarray(fn(f32(values), jnp.asarray(s[groups]), jnp.asarray(groups), 5))
    for k in range(5):
      rows = np.flatnonzero(groups == k)
      chosen = values[rows][keep[rows]]
      assert chosen.size == s[k], (trial, k)
      best = brute_force_subset(values[rows], s[k])
      assert np.var(chosen) == pytest.approx(best, rel=1e-5, abs=1e-6)


def _d3s_ctx(seed=0, step=0, **kwargs):
  batch = random_batch(seed, num_prompts=4, group_size=6, width=9)
  ctx = ctx_of(batch, step=step, phase="rollout", **kwargs)
  return _run(ob.group_advantage(), ctx)


def ref_token_keep(adv, entropy, mask, rows, kappa_t):
  valid = (mask > 0) & rows[:, None]
  score = np.abs(adv) * np.where(mask > 0, entropy, 0.0)
  vals = np.sort(score[valid])[::-1]
  if vals.size == 0:
    return valid
  k = min(max(int(np.ceil(kappa_t * vals.size)), 1), vals.size)
  return valid & (score >= vals[k - 1])


def ref_subset(values, size):
  """Indices of the `size` values with the largest variance: j largest + rest smallest, best j
  (a float64 NumPy scan; `test_subset_equals_brute_force` checks the scan's optimality)."""
  order = np.argsort(values, kind="stable")
  cands = [np.concatenate([order[:size - j], order[len(values) - j:]]) for j in range(size + 1)]
  return cands[int(np.argmax([np.var(values[c]) for c in cands]))]


@pytest.mark.parametrize("step", [0, 30, 100])
@pytest.mark.parametrize("scope", sg.D3S_SCOPES)
def test_d3s_matches_reference(step, scope):
  ctx = _d3s_ctx(step=step)
  out = jax.jit(lambda c: _run(sg.d3s_downsample(0.5, 0.2, 60, scope), c))(ctx)
  kappa_s = 0.5 + 0.5 * min(1.0, step / 60)
  kappa_t = 0.2 + 0.8 * min(1.0, step / 60)
  adv, mask = np.asarray(ctx.advantages, np.float64), np.asarray(ctx.mask)
  a_row = adv.sum(1) / np.maximum(mask.sum(1), 1)
  groups = np.arange(24) // 6 if scope == "group" else np.zeros(24, int)
  rows = np.zeros(24, bool)
  for k in np.unique(groups):
    sel = np.flatnonzero(groups == k)
    size = int(np.ceil(np.float32(kappa_s) * np.float32(sel.size)))
    rows[sel[ref_subset(a_row[sel], min(size, sel.size))]] = True
  want = ref_token_keep(adv, np.asarray(ctx.entropy), mask, rows, np.float32(kappa_t))
  new_mask = np.asarray(out.mask)
  np.testing.assert_array_equal(new_mask > 0, want)
  np.testing.assert_array_equal(np.asarray(out.advantages), np.where(want, adv, 0.0))
  m = ob.metric_values(out.metrics)
  assert float(m["d3s/sample_frac"]) == pytest.approx(kappa_s)
  assert float(m["d3s/token_frac"]) == pytest.approx(kappa_t)
  assert float(m["d3s/kept_tokens_frac"]) == pytest.approx(want.sum() / mask.sum())
  has = mask.sum(1) > 0
  assert float(m["d3s/kept_rows_frac"]) == pytest.approx(rows[has].mean())
  if step == 100:
    np.testing.assert_array_equal(new_mask, mask)
  else:
    assert want.sum() < (mask > 0).sum()


def test_d3s_rows_maximise_variance_of_advantages():
  """Groups of 6 (≤ 10): the kept rows of each group are a variance-maximising subset of the
  ⌈κ_s n⌉ = 3 rows (brute force), counting every row of the group."""
  ctx = _d3s_ctx(seed=3)
  out = _run(sg.d3s_downsample(0.5, 1.0, None), ctx)
  adv, mask = np.asarray(ctx.advantages, np.float64), np.asarray(ctx.mask)
  a_row = adv.sum(1) / np.maximum(mask.sum(1), 1)
  kept_tokens = np.asarray(out.mask).sum(1)
  for k in range(4):
    rows = np.arange(6 * k, 6 * k + 6)
    kept = rows[kept_tokens[rows] > 0]
    # Every kept row with tokens is in the chosen subset; an empty row may also be in it.
    assert len(kept) <= 3
    empty = rows[mask[rows].sum(1) == 0]
    best = brute_force_subset(a_row[rows], 3)
    candidates = [np.var(a_row[np.concatenate([kept, e]).astype(int)])
                  for e in itertools.combinations(empty, 3 - len(kept))]
    assert max(candidates) == pytest.approx(best, rel=1e-5, abs=1e-7)


def test_d3s_full_fractions_reproduce_the_base_exactly():
  """(f)2: κ_s = κ_t = 1 leaves mask and advantages bit for bit: the preset equals GRPO
  advantages + PPO clip + token_mean, value and gradient."""
  batch = random_batch(5, num_prompts=4, group_size=4)
  ctx = ctx_of(batch)
  d3s = presets.build("d3s", sample_frac=1.0, token_frac=1.0)
  base = ob.Objective(ob.chain(ob.group_advantage()),
                      ob.chain(ob.ppo_clip(0.2, 0.28), ob.aggregate("token_mean"))).check()
  rctx = _run(ob.group_advantage(), ctx.replace(phase="rollout"))
  out = _run(sg.d3s_downsample(1.0, 1.0), rctx)
  np.testing.assert_array_equal(np.asarray(out.mask), np.asarray(rctx.mask))
  np.testing.assert_array_equal(np.asarray(out.advantages), np.asarray(rctx.advantages))

  def value_and_grad(obj):
    return jax.value_and_grad(lambda lp: obj(ctx.replace(logp=lp))[0])(ctx.logp)
  (l1, g1), (l2, g2) = value_and_grad(d3s), value_and_grad(base)
  assert float(l1) == float(l2)
  np.testing.assert_array_equal(np.asarray(g1), np.asarray(g2))


def test_d3s_more_tokens_never_drop_a_kept_token():
  """(f)3: raising κ_t keeps a superset of tokens. κ_t follows the schedule 0.05 → 1 over 20
  steps (one compilation); κ_s = 1 keeps every row."""
  ctx = _d3s_ctx(seed=6)
  run = jax.jit(lambda c: _run(sg.d3s_downsample(1.0, 0.05, 20), c).mask)
  prev = None
  for step in (0, 1, 2, 4, 7, 10, 15, 20):
    keep = np.asarray(run(ctx.replace(step=jnp.asarray(step, jnp.int32)))) > 0
    if prev is not None:
      assert np.all(keep[prev]) and keep.sum() >= prev.sum()
    prev = keep
  assert np.array_equal(keep, np.asarray(ctx.mask) > 0)


def test_d3s_one_trace_across_steps_and_schedule():
  tx = sg.d3s_downsample(0.5, 0.2, 10)
  traces = []

  @jax.jit
  def frac(ctx):
    traces.append(1)
    out = _run(tx, ctx)
    return ob.metric_values(out.metrics)["d3s/token_frac"], out.mask.sum()
  values = [float(frac(_d3s_ctx(step=s))[0]) for s in (0, 5, 10, 20)]
  np.testing.assert_allclose(values, [0.2, 0.6, 1.0, 1.0], rtol=1e-6)
  assert len(traces) == 1
  np.testing.assert_allclose(float(sg.curriculum(0.2, None, 50)), 0.2)


def test_d3s_errors():
  ctx = _d3s_ctx()
  with pytest.raises(ValueError, match="`d3s_downsample` needs `entropy`"):
    _run(sg.d3s_downsample(), ctx.replace(entropy=None))
  with pytest.raises(ValueError, match="`d3s_downsample` needs `advantages`"):
    _run(sg.d3s_downsample(), ctx.replace(advantages=None))
  for kwargs, what in (({"sample_frac": 0.0}, "sample_frac"), ({"token_frac": 1.5}, "token_frac"),
                       ({"ramp_steps": 0}, "ramp_steps"), ({"scope": "global"}, "D3S scope")):
    with pytest.raises(ValueError, match=what):
      sg.d3s_downsample(**kwargs)
  assert "entropy" in presets.build("d3s").rollout.requires


# --- 8 simulated devices --------------------------------------------------------------------------
@pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 (simulated) devices")
@pytest.mark.parametrize("name", ["stratified_grpo", "copo", "d3s"])
def test_eight_devices_equal_one(name):
  """Batch-sharded over 8 devices of an Explicit mesh (the strict case; Auto meshes shard by
  propagation), groups of 8 spanning two: the sorts and segment ops over the batch gather their
  [B] (D3S: [B, T]) inputs, and loss and gradient equal one device's."""
  from jax.sharding import AxisType
  from tests.objectives.sharding_test import _shard, _step
  batch = random_batch(0, num_prompts=4, group_size=8, width=9)
  rng = np.random.default_rng(0)
  labels = {"stratum": jnp.asarray(rng.integers(0, 3, 32), jnp.int32),
            "answer_id": jnp.asarray(rng.integers(-1, 3, 32), jnp.int32)}
  ctx = ctx_of(batch, step=2)
  ctx = ctx.replace(extras={**ctx.extras, **labels})
  objective = presets.build(name, **({"ramp_steps": 10} if name == "d3s" else {}))
  expected = _step(objective)(jax.device_put(ctx, jax.devices()[0]))
  mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Explicit,))
  with jax.set_mesh(mesh):
    got = _step(objective)(_shard(ctx, mesh))
  np.testing.assert_allclose(got[0], expected[0], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(got[2], expected[2], rtol=1e-5, atol=1e-7)
