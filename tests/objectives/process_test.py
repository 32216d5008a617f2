"""PAV (spec B11) and Critique-GRPO (spec B12) transforms against float64 NumPy references and the
spec's (f) properties."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import objectives as ob
from jaxrl_llm.objectives import presets

# --------------------------------------------------------------------------------------------------
# float64 NumPy references


def ref_outcome(rewards, group_ids, baseline):
  r = np.asarray(rewards, np.float64)
  out = np.zeros_like(r)
  for g in np.unique(group_ids):
    rows = group_ids == g
    n = rows.sum()
    if n < 2:
      continue
    mu = r[rows].mean()
    out[rows] = (r[rows] - mu) * (n / (n - 1) if baseline == "rloo" else 1.0)
  return out


def ref_pav(rewards, group_ids, mask, step_id, step_value, alpha, baseline="rloo"):
  """A_{b,t} = (A_out_b + α (V[b, h+1] − V[b, h])) m_{b,t}, h = step_id[b, t] (no term at −1)."""
  out = ref_outcome(rewards, group_ids, baseline)
  b, t = mask.shape
  adv = np.zeros((b, t))
  for i in range(b):
    for j in range(t):
      if mask[i, j] == 0:
        continue
      h = step_id[i, j]
      prog = 0.0 if h < 0 else float(step_value[i, h + 1]) - float(step_value[i, h])
      adv[i, j] = out[i] + alpha * prog
  return adv


def ref_critique_loss(logp, old_logp, mask, adv_row, off, gamma, t_max, entropy=None, c_h=0.0):
  """The aggregated Critique-GRPO loss: (1/N) Σ_{b,t} m ℓ / T_max (− c_H entropy, same reduction),
  and its gradient w.r.t. logp."""
  logp, old_logp = np.asarray(logp, np.float64), np.asarray(old_logp, np.float64)
  a = adv_row[:, None] * mask
  rho = np.exp(np.where(mask > 0, logp - old_logp, 0.0))
  p = np.exp(np.where(mask > 0, logp, 0.0))
  f = p / (p + gamma)
  ell = np.where(off[:, None], -f * a, -rho * a)
  dell = np.where(off[:, None], -a * gamma * p / (p + gamma) ** 2, -rho * a)
  n = mask.shape[0]
  loss = (ell * mask).sum() / t_max / n
  if entropy is not None:
    loss += (-c_h * entropy * mask).sum() / t_max / n
  return loss, dell * mask / t_max / n


# --------------------------------------------------------------------------------------------------
# Batches


def _pav_batch(seed=0, sizes=(3, 3, 2), width=9, max_steps=3):
  rng = np.random.default_rng(seed)
  b = sum(sizes)
  group_ids = np.repeat(np.arange(len(sizes)), sizes).astype(np.int32)
  lengths = rng.integers(1, width + 1, b)
  lengths[0] = width
  mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.float64)
  step_id = np.full((b, width), -1, np.int32)
  step_value = np.zeros((b, max_steps + 2), np.float64)
  num_steps = np.zeros(b, np.int64)
  for i in range(b):
    cuts = np.sort(rng.choice(np.arange(1, max(lengths[i], 2)), min(max_steps, lengths[i] - 1),
                              replace=False)) if lengths[i] > 1 else np.zeros(0, np.int64)
    step_id[i, :lengths[i]] = np.searchsorted(cuts, np.arange(lengths[i]), side="right")
    h = len(cuts) + 1
    num_steps[i] = h
    step_value[i, :h + 1] = rng.random(h + 1)
  rewards = rng.integers(0, 2, b).astype(np.float64)
  step_value[np.arange(b), num_steps] = rewards           # V at the end = the row's reward
  return dict(rewards=rewards, group_ids=group_ids, mask=mask, step_id=step_id,
              step_value=step_value, num_steps=num_steps, sizes=sizes)


def _ctx(d, ragged=True, **kwargs):
  groups = (dict(group_ids=jnp.asarray(d["group_ids"]), num_groups=len(d["sizes"])) if ragged
            else dict(group_size=d["sizes"][0]))
  kwargs.setdefault("old_logp", jnp.zeros(d["mask"].shape))
  return ob.LossContext.create(
      mask=jnp.asarray(d["mask"], jnp.float32), rewards=jnp.asarray(d["rewards"], jnp.float32),
      extras={"step_id": jnp.asarray(d["step_id"]),
              "step_value": jnp.asarray(d["step_value"], jnp.float32)}, **groups, **kwargs)


def _rollout(tx, ctx):
  ctx = ctx.replace(phase="rollout")
  out, _ = tx.update(ctx, tx.init(ctx))
  return out


# --------------------------------------------------------------------------------------------------
# PAV


@pytest.mark.parametrize("baseline", ["rloo", "mean"])
@pytest.mark.parametrize("alpha", [0.0, 1.0, 3.0])
def test_pav_advantage_matches_the_numpy_reference(alpha, baseline):
  for ragged, sizes in ((True, (3, 1, 4)), (False, (3, 3, 3))):
    d = _pav_batch(seed=int(alpha * 10) + len(baseline), sizes=sizes)
    out = _rollout(ob.pav_advantage(alpha, baseline), _ctx(d, ragged))
    want = ref_pav(d["rewards"], d["group_ids"], d["mask"], d["step_id"], d["step_value"],
                   alpha, baseline)
    np.testing.assert_allclose(np.asarray(out.advantages), want, rtol=1e-5, atol=1e-6)


def test_pav_worked_example():
  """One group of two rows, width 4. Row 0: steps [0, 0, 1, 1], V = (0.5, 0.75, 1) (reward 1);
  row 1: steps [0, 1, 2, pad], V = (0.5, 0.25, 0.5, 0) (reward 0). RLOO outcome: ±1.
  α = 2: row 0 tokens 1 + 2·0.25 = 1.5, 1.5, 1 + 2·0.25 = 1.5, 1.5;
         row 1 tokens −1 + 2·(−0.25) = −1.5, −1 + 2·0.25 = −0.5, −1 + 2·(−0.5) = −2, 0 (padding)."""
  d = dict(rewards=np.array([1.0, 0.0]), group_ids=np.array([0, 0], np.int32),
           mask=np.array([[1, 1, 1, 1], [1, 1, 1, 0]], np.float64),
           step_id=np.array([[0, 0, 1, 1], [0, 1, 2, -1]], np.int32),
           step_value=np.array([[0.5, 0.75, 1.0, 0.0], [0.5, 0.25, 0.5, 0.0]]), sizes=(2,))
  out = _rollout(ob.pav_advantage(2.0), _ctx(d, ragged=False))
  np.testing.assert_allclose(np.asarray(out.advantages),
                             [[1.5, 1.5, 1.5, 1.5], [-1.5, -0.5, -2.0, 0.0]], atol=1e-6)


def test_pav_progress_telescopes_per_row():
  """Σ_h A^μ_{b,h} = V(s_{H+1}) − V(s_1): the final value (the reward) minus the root value."""
  d = _pav_batch(seed=4)
  progress = np.asarray(ob.step_progress(jnp.asarray(d["step_id"]),
                                         jnp.asarray(d["step_value"], jnp.float32),
                                         jnp.asarray(d["mask"], jnp.float32)))
  for i in range(len(d["rewards"])):
    per_step = {}
    for j in np.flatnonzero(d["mask"][i]):
      per_step[int(d["step_id"][i, j])] = progress[i, j]      # constant within a step
    assert sorted(per_step) == list(range(d["num_steps"][i]))
    np.testing.assert_allclose(sum(per_step.values()),
                               d["rewards"][i] - d["step_value"][i, 0], atol=1e-6)


def test_pav_alpha_zero_is_the_outcome_only_estimator():
  d = _pav_batch(seed=5, sizes=(4, 4))
  for baseline, plain in (("rloo", ob.rloo_advantage()), ("mean", ob.group_advantage("none"))):
    for ragged in (True, False):
      got = _rollout(ob.pav_advantage(0.0, baseline), _ctx(d, ragged)).advantages
      want = _rollout(plain, _ctx(d, ragged)).advantages
      np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-7)


def test_pav_errors_name_the_problem_and_the_hook():
  d = _pav_batch()
  ctx = _ctx(d)
  with pytest.raises(ValueError, match="`pav_advantage` needs `step_value`.*hooks.pav_prover"):
    _rollout(ob.pav_advantage(), ctx.replace(extras={"step_id": ctx.extras["step_id"]}))
  bad = ctx.replace(extras={**ctx.extras, "step_id": ctx.extras["step_id"][:, :3]})
  with pytest.raises(ValueError, match="step_id.*\\[B, T\\]"):
    _rollout(ob.pav_advantage(), bad)
  bad = ctx.replace(extras={**ctx.extras, "step_value": ctx.extras["step_value"][:, :1]})
  with pytest.raises(ValueError, match="step_value.*S >= 2"):
    _rollout(ob.pav_advantage(), bad)
  with pytest.raises(ValueError, match="unknown PAV outcome baseline 'grpo'"):
    ob.pav_advantage(1.0, "grpo")


def test_bok_value_properties():
  """V^BoK ≥ V, non-decreasing in K, equal to V at V ∈ {0, 1}; K = 1 is the identity."""
  v = np.linspace(0.0, 1.0, 21)
  prev = v
  for k in (1, 2, 4, 8):
    bok = ob.bok_value(v, k)
    np.testing.assert_allclose(bok, 1.0 - (1.0 - v) ** k, rtol=1e-12)
    assert np.all(bok >= v - 1e-12) and np.all(bok >= prev - 1e-12)
    assert bok[0] == 0.0 and bok[-1] == 1.0
    prev = bok
  np.testing.assert_allclose(ob.bok_value(v, 1), v, atol=1e-15)
  assert float(ob.bok_value(jnp.float32(0.5), 2)) == pytest.approx(0.75)
  for bad in (0, 2.5, -1):
    with pytest.raises(ValueError, match="integer K >= 1"):
      ob.bok_value(v, bad)


def test_pav_preset_runs_with_grad():
  d = _pav_batch(seed=7, sizes=(3, 3, 3))
  rng = np.random.default_rng(0)
  logp = jnp.asarray(-rng.random(d["mask"].shape), jnp.float32)
  ctx = _ctx(d, ragged=False, logp=logp, old_logp=logp)
  objective = presets.build("pav", alpha=3.0)
  loss, grad = jax.jit(jax.value_and_grad(lambda lp: objective(ctx.replace(logp=lp))[0]))(logp)
  # At ρ = 1 with seq_mean_token_mean: ∂L/∂logp_{b,t} = −A_{b,t} / (N' |o_b|).
  adv = ref_pav(d["rewards"], d["group_ids"], d["mask"], d["step_id"], d["step_value"], 3.0)
  lengths = d["mask"].sum(1)
  want = -adv / (np.count_nonzero(lengths) * np.maximum(lengths, 1)[:, None])
  np.testing.assert_allclose(np.asarray(grad), want, rtol=1e-5, atol=1e-7)
  assert float(loss) == pytest.approx(want.sum(), rel=1e-5, abs=1e-7)   # L = Σ −ρA/(N'|o|), ρ = 1


# --------------------------------------------------------------------------------------------------
# Critique-GRPO


def test_shaping_values_and_gradient_magnitudes_of_the_spec():
  """Spec B12 (f)1: f(0.01), f(0.1), f(0.5), f(0.9) and γp/(p+γ)², maximal at p = γ."""
  p = np.array([0.01, 0.1, 0.5, 0.9])
  np.testing.assert_allclose(ob.critique_shaping(p, 0.1),
                             [0.0909091, 0.5, 0.8333333, 0.9], atol=1e-7)
  # The surrogate's own gradient per unit advantage: one off-policy row, tokens with prob p.
  mask = jnp.ones((1, 4))
  logp = jnp.log(jnp.asarray(p, jnp.float32))[None]
  ctx = ob.LossContext.create(mask=mask, rewards=jnp.zeros(1), old_logp=jnp.zeros((1, 4)),
                              advantages=mask, extras={"offpolicy": jnp.array([True])})
  tx = ob.critique_surrogate(0.1)

  def pg(lp):
    lctx = ob.LossContext.from_batch(ctx, logp=lp)
    return jnp.sum(tx.update(lctx, tx.init(lctx))[0].terms["pg"])
  grad = np.asarray(jax.grad(pg)(logp))[0]
  np.testing.assert_allclose(-grad, [0.0826446, 0.25, 0.1388889, 0.09], atol=1e-6)
  fine = np.linspace(0.001, 1.0, 1000)
  assert fine[np.argmax(0.1 * fine / (fine + 0.1) ** 2)] == pytest.approx(0.1, abs=1e-3)


def _critique_batch(seed=0, num_prompts=3, n=4, width=6):
  rng = np.random.default_rng(seed)
  b = num_prompts * n
  lengths = rng.integers(1, width + 1, b)
  lengths[2] = width
  mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.float64)
  logp = np.where(mask > 0, -rng.uniform(0.05, 4.0, (b, width)), 33.0)      # junk off the mask
  old_logp = np.where(mask > 0, logp + 0.3 * rng.normal(size=(b, width)), -40.0)
  entropy = np.where(mask > 0, rng.uniform(0.1, 2.0, (b, width)), 50.0)
  rewards = rng.integers(0, 2, b).astype(np.float64)
  off = (np.arange(b) % n) == n - 1
  return dict(mask=mask, logp=logp, old_logp=old_logp, entropy=entropy, rewards=rewards,
              off=off, n=n)


def _critique_ctx(d):
  f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
  return ob.LossContext.create(mask=f32(d["mask"]), rewards=f32(d["rewards"]),
                               logp=f32(d["logp"]), old_logp=f32(d["old_logp"]),
                               entropy=f32(d["entropy"]), group_size=d["n"],
                               extras={"offpolicy": jnp.asarray(d["off"])})


def _loss_and_grad(objective, ctx):
  def f(lp):
    _, lctx, _ = objective.run(ctx.replace(logp=lp))
    return lctx.loss.value()
  return jax.value_and_grad(f)(ctx.logp)


@pytest.mark.parametrize("entropy_coef", [0.0, 0.001])
def test_critique_grpo_loss_and_gradient_match_the_numpy_reference(entropy_coef):
  d = _critique_batch()
  objective = presets.build("critique_grpo", entropy_coef=entropy_coef)
  loss, grad = jax.jit(lambda c: _loss_and_grad(objective, c))(_critique_ctx(d))
  r = d["rewards"].reshape(-1, d["n"])
  adv = (r - r.mean(1, keepdims=True)).reshape(-1)
  want, want_grad = ref_critique_loss(d["logp"], d["old_logp"], d["mask"], adv, d["off"], 0.1,
                                      d["mask"].shape[1], d["entropy"], entropy_coef)
  assert float(loss) == pytest.approx(want, rel=1e-5, abs=1e-7)
  np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-5, atol=1e-8)


def test_offpolicy_rows_do_not_depend_on_old_logp():
  """Spec B12 (f)2: changing old_logp on refinement rows changes nothing; on on-policy rows it
  does."""
  d = _critique_batch(seed=1)
  objective = presets.build("critique_grpo")
  base = _loss_and_grad(objective, _critique_ctx(d))
  moved = dict(d, old_logp=np.where(d["off"][:, None], d["old_logp"] - 1.7, d["old_logp"]))
  same = _loss_and_grad(objective, _critique_ctx(moved))
  assert float(same[0]) == float(base[0])
  np.testing.assert_array_equal(np.asarray(same[1]), np.asarray(base[1]))
  moved = dict(d, old_logp=np.where(d["off"][:, None], d["old_logp"], d["old_logp"] - 0.5))
  other = _loss_and_grad(objective, _critique_ctx(moved))
  assert float(other[0]) != pytest.approx(float(base[0]))


def test_onpolicy_gradient_at_ratio_one_is_minus_a_over_t_max():
  """Spec B12 (f)2: at ρ = 1 an on-policy token's gradient of Σ m ℓ / T_max is −A_b m/T_max (the
  library's loss also divides by N: `loss.total` is the spec's sum)."""
  d = _critique_batch(seed=2)
  d["old_logp"] = d["logp"]
  objective = presets.build("critique_grpo", entropy_coef=0.0)
  ctx = _critique_ctx(d)

  def total(lp):
    _, lctx, _ = objective.run(ctx.replace(logp=lp))
    return lctx.loss.total
  grad = np.asarray(jax.grad(total)(ctx.logp))
  r = d["rewards"].reshape(-1, d["n"])
  adv = (r - r.mean(1, keepdims=True)).reshape(-1)
  t_max = d["mask"].shape[1]
  on = ~d["off"]
  np.testing.assert_allclose(grad[on], (-adv[:, None] * d["mask"] / t_max)[on], atol=1e-7)
  norm = presets.build("critique_grpo", entropy_coef=0.0, norm_len=100.0)
  _, lctx, _ = norm.run(ctx)
  _, lctx_t, _ = objective.run(ctx)
  assert float(lctx.loss.total) == pytest.approx(float(lctx_t.loss.total) * t_max / 100.0)


def test_critique_advantages_sum_to_zero_over_each_group():
  """Spec B12 (f)3: A = r − μ over all n rows, the refinement included."""
  d = _critique_batch(seed=3, num_prompts=4, n=5)
  d["rewards"] = np.random.default_rng(0).random(20)
  rctx, _, _ = presets.build("critique_grpo").run(_critique_ctx(d))
  adv = np.asarray(rctx.advantages)
  row = adv.sum(1) / np.maximum(d["mask"].sum(1), 1)
  np.testing.assert_allclose(row.reshape(4, 5).sum(1), 0.0, atol=1e-6)


def test_clipped_variant_clips_only_onpolicy_rows():
  d = _critique_batch(seed=4)
  d["old_logp"] = np.where(d["mask"] > 0, d["logp"] - 1.0, d["old_logp"])    # ρ = e on every token
  ctx = _critique_ctx(d).replace(advantages=jnp.asarray(d["mask"], jnp.float32))
  for clip in (None, 0.2):
    tx = ob.critique_surrogate(0.1, clip_eps=clip)
    lctx = ob.LossContext.from_batch(ctx, logp=ctx.logp)
    pg = np.asarray(tx.update(lctx, tx.init(lctx))[0].terms["pg"])
    on = (~d["off"][:, None]) & (d["mask"] > 0)
    np.testing.assert_allclose(pg[on], -(np.e if clip is None else 1.2), rtol=1e-5)
    p = np.exp(d["logp"])
    offm = d["off"][:, None] & (d["mask"] > 0)
    np.testing.assert_allclose(pg[offm], -(p / (p + 0.1))[offm], rtol=1e-5)


def test_critique_errors():
  d = _critique_batch()
  ctx = _critique_ctx(d).replace(advantages=jnp.asarray(d["mask"], jnp.float32))
  lctx = ob.LossContext.from_batch(ctx.replace(extras={}), logp=ctx.logp)
  tx = ob.critique_surrogate()
  with pytest.raises(ValueError, match="needs `offpolicy`.*config.hooks.critique"):
    tx.update(lctx, tx.init(lctx))
  lctx = ob.LossContext.from_batch(ctx.replace(extras={"offpolicy": jnp.zeros(3, bool)}),
                                   logp=ctx.logp)
  with pytest.raises(ValueError, match="offpolicy.*one flag per row"):
    tx.update(lctx, tx.init(lctx))
  with pytest.raises(ValueError, match="γ > 0"):
    ob.critique_surrogate(0.0)
  assert ob.critique_surrogate().requires == frozenset({"offpolicy"})
  assert presets.build("critique_grpo").requires == frozenset({"offpolicy", "entropy"})
