"""attention_credit (spec B13): token sets from WAAD/FAI and the advantage amplification.

A float64 NumPy reference of the sets (ranking by an explicit sort with position tie-breaks), a
hand-worked fixture, and the spec's properties (f)2-3; (f)1 (WAAD ∈ [0, W], FAI ∈ [0, 1]) is a
property of the trainer's statistics and is tested in tests/training/forward_extras_test.py.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import objectives as ob
from jaxrl_llm.objectives import presets


def _np_top(x, mask, q):
  out = np.zeros(x.shape, bool)
  for b in range(x.shape[0]):
    idx = [t for t in range(x.shape[1]) if mask[b, t] > 0]
    if not idx:
      continue
    k = max(1, math.ceil(q * len(idx)))
    ranked = sorted(idx, key=lambda t: (-x[b, t], t))
    out[b, ranked[:k]] = True
  return out


def _np_selected(waad, fai, mask, strategy, q):
  pre, anc = _np_top(waad, mask, q), _np_top(fai, mask, q)
  if strategy == "preplan":
    return pre
  if strategy == "anchor":
    return anc
  out = anc.copy()
  for b, t in zip(*np.nonzero(anc)):
    if t > 0 and pre[b, t - 1]:
      out[b, t - 1] = True
  return out


def _ctx(seed=0, b=6, t=12, junk=50.0):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(0, t + 1, b)
  lengths[0], lengths[1] = 0, t                       # an empty and a full row
  mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.float32)
  waad = np.where(mask > 0, rng.uniform(0, 10, (b, t)).round(1), junk)   # rounded: ties occur
  fai = np.where(mask > 0, rng.uniform(0, 1, (b, t)).round(1), junk)
  rewards = rng.normal(size=b).astype(np.float32)
  logp = np.where(mask > 0, rng.normal(-1.0, 0.3, (b, t)), junk).astype(np.float32)
  ctx = ob.LossContext.create(
      mask=mask, rewards=rewards, logp=jnp.asarray(logp), old_logp=jnp.asarray(logp),
      group_size=3, extras={"waad": jnp.asarray(waad, jnp.float32),
                            "fai": jnp.asarray(fai, jnp.float32)})
  return ctx, waad, fai, mask


def _rollout(tx, ctx):
  ctx = ctx.replace(phase="rollout")
  adv = ob.group_advantage()
  ctx, _ = adv.update(ctx, adv.init(ctx))
  out, _ = tx.update(ctx, tx.init(ctx))
  return ctx, out


@pytest.mark.parametrize("strategy", ob.ATTENTION_STRATEGIES)
@pytest.mark.parametrize("q", [0.1, 0.25, 0.5])
def test_sets_match_numpy(strategy, q):
  ctx, waad, fai, mask = _ctx(1)
  got = ob.selected_tokens(ctx.extras["waad"], ctx.extras["fai"], ctx.mask, strategy, q)
  np.testing.assert_array_equal(np.asarray(got), _np_selected(waad, fai, mask, strategy, q))


def test_worked_fixture():
  """One row of 10 tokens, q = 0.2 (k = 2). WAAD tops: t = 2, 6; FAI tops: t = 3, 8 (8 ties 9 and
  wins by position). Coupled = {3, 8} ∪ {2} (2 is preplan and precedes anchor 3; 7 is not
  preplan)."""
  waad = jnp.asarray([[1, 2, 9, 0, 1, 3, 8, 1, 2, 0]], jnp.float32)
  fai = jnp.asarray([[.1, .2, .1, .9, .1, .2, .1, .3, .5, .5]], jnp.float32)
  mask = jnp.ones((1, 10), jnp.float32)
  sets = {s: np.flatnonzero(np.asarray(ob.selected_tokens(waad, fai, mask, s, 0.2))[0]).tolist()
          for s in ob.ATTENTION_STRATEGIES}
  assert sets == {"preplan": [2, 6], "anchor": [3, 8], "coupled": [2, 3, 8]}
  ctx = ob.LossContext.create(mask=mask, rewards=jnp.ones(1), old_logp=jnp.zeros((1, 10)),
                              advantages=jnp.full((1, 10), -0.5),
                              extras={"waad": waad, "fai": fai}, phase="rollout")
  tx = ob.attention_credit("coupled", gamma=1.0, q=0.2)
  out, _ = tx.update(ctx, tx.init(ctx))
  want = np.full(10, -0.5)
  want[[2, 3, 8]] = -1.0
  np.testing.assert_allclose(np.asarray(out.advantages)[0], want)
  assert float(out.metrics["attention/amplified_frac"].value()) == pytest.approx(0.3)


@pytest.mark.parametrize("strategy", ob.ATTENTION_STRATEGIES)
def test_amplification_matches_numpy_keeps_signs_and_touches_only_the_set(strategy):
  """Spec B13 (f)3; A' = A·(1 + γ·1[t ∈ set]) in float64."""
  ctx, waad, fai, mask = _ctx(2)
  before, out = _rollout(ob.attention_credit(strategy, gamma=1.5, q=0.25), ctx)
  a = np.asarray(before.advantages, np.float64)
  sel = _np_selected(waad, fai, mask, strategy, 0.25)
  want = a * (1.0 + 1.5 * sel)
  got = np.asarray(out.advantages, np.float64)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  assert np.all(np.sign(got) == np.sign(a))
  np.testing.assert_array_equal(got[~sel], a[~sel])
  frac = sel[mask > 0].mean()
  assert float(out.metrics["attention/amplified_frac"].value()) == pytest.approx(frac)


def test_gamma_zero_is_grpo_exactly():
  """Spec B13 (f)2: the preset with γ = 0 gives GRPO's loss, metrics and gradient."""
  ctx, _, _, _ = _ctx(3)
  base = presets.grpo(kl_coef=0.0)
  amp = presets.build("grpo_attention", gamma=0.0)

  def value_and_grad(objective):
    return jax.jit(jax.value_and_grad(
        lambda logp: objective(ctx.replace(logp=logp))[0]))(ctx.logp)
  (l0, g0), (l1, g1) = value_and_grad(base), value_and_grad(amp)
  assert float(l0) == float(l1)
  np.testing.assert_array_equal(np.asarray(g0), np.asarray(g1))
  (l2, _) = value_and_grad(presets.build("grpo_attention", gamma=1.0))
  assert float(l2) != float(l0)


def test_jit_and_gradient_flow_only_through_logp():
  ctx, _, _, _ = _ctx(4)
  objective = presets.build("grpo_attention", strategy="anchor", q=0.3)

  def loss(logp, waad):
    c = ctx.replace(logp=logp, extras={**ctx.extras, "waad": waad})
    return objective(c)[0]
  g_logp, g_waad = jax.jit(jax.grad(loss, argnums=(0, 1)))(ctx.logp, ctx.extras["waad"])
  assert np.all(np.isfinite(np.asarray(g_logp))) and np.abs(np.asarray(g_logp)).max() > 0
  assert np.all(np.asarray(g_logp)[np.asarray(ctx.mask) == 0] == 0)
  assert np.all(np.asarray(g_waad) == 0)


def test_requires_carries_the_trainers_tags():
  tx = ob.attention_credit(window=6, num_heads=2, local_heads="0.1,1.2", global_heads="1.0")
  assert tx.phase == "rollout"
  assert tx.requires == {"waad", "fai", "attn_window=6", "attn_heads=2", "attn_local=0.1,1.2",
                         "attn_global=1.0"}
  from jaxrl_llm.training import forward as fwd   # the trainer parses what the transform wrote
  opts = fwd.forward_options(tx.requires)
  assert (opts.window, opts.num_heads, opts.local_heads, opts.global_heads) == (
      6, 2, ((0, 1), (1, 2)), ((1, 0),))


def test_bad_arguments_and_missing_inputs_fail_clearly():
  with pytest.raises(ValueError, match="unknown attention-credit strategy 'both'"):
    ob.attention_credit("both")
  with pytest.raises(ValueError, match="gamma must be >= 0"):
    ob.attention_credit(gamma=-1.0)
  with pytest.raises(ValueError, match=r"q is a fraction.*\(0, 1\]"):
    ob.attention_credit(q=0.0)
  with pytest.raises(ValueError, match="window and num_heads must be >= 1"):
    ob.attention_credit(window=0)
  ctx, _, _, _ = _ctx(5)
  tx = ob.attention_credit()
  no_fai = ctx.replace(extras={"waad": ctx.extras["waad"]})
  with pytest.raises(ValueError, match="`attention_credit` needs `fai`.*rollout forward"):
    _rollout(tx, no_fai)
  with pytest.raises(ValueError, match="`attention_credit` needs `advantages`"):
    tx.update(ctx.replace(phase="rollout"), tx.init(ctx))
  bad = ctx.replace(extras={**ctx.extras, "fai": ctx.extras["fai"][:, :3]})
  with pytest.raises(ValueError, match=r"extras\['fai'\] has shape"):
    _rollout(tx, bad)
