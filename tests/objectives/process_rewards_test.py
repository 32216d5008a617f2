"""PPR / ReNorm (spec B6) and Posterior-GRPO (spec B7) against float64 NumPy references, the
spec's (f) properties, ragged groups, jit and the errors for missing inputs."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import objectives as ob
from jaxrl_llm.objectives import presets
from jaxrl_llm.objectives import process_rewards as pr


# --------------------------------------------------------------------------------------------------
# Float64 references, written from the spec with explicit loops


def ppr_reference(step_id, step_value, mask, rewards, group_ids, eps=1e-6, ddof=1):
  """(A [B, T], r [B, S] with NaN where no step) from spec B6 (b)."""
  b, t = mask.shape
  s = step_value.shape[1]
  exists = np.zeros((b, s), bool)
  for i in range(b):
    for k in range(t):
      if mask[i, k] > 0 and 0 <= step_id[i, k] < s:
        exists[i, step_id[i, k]] = True
  r = np.full((b, s), np.nan)
  for i in range(b):
    for j in range(s):
      if exists[i, j]:
        r[i, j] = step_value[i, j] + rewards[i] - 1.0
  rt = np.zeros((b, s))
  for g in np.unique(group_ids):
    vals = [r[i, j] for i in range(b) if group_ids[i] == g for j in range(s) if exists[i, j]]
    if not vals:
      continue
    mu = np.mean(vals)
    sd = np.sqrt(np.sum((np.array(vals) - mu) ** 2) / (len(vals) - ddof)) if len(vals) > ddof \
        else 0.0
    for i in range(b):
      if group_ids[i] == g:
        for j in range(s):
          if exists[i, j]:
            rt[i, j] = (r[i, j] - mu) / (sd + eps)
  adv = np.zeros((b, t))
  for i in range(b):
    for k in range(t):
      if mask[i, k] > 0 and 0 <= step_id[i, k] < s:
        adv[i, k] = sum(rt[i, j] for j in range(step_id[i, k], s) if exists[i, j])
  return adv, r


def posterior_reference(rewards, score, group_ids, norm="none", thr=1.0, think_coef=1.0,
                        fmt=None, format_coef=0.0):
  b = len(rewards)
  think = np.zeros(b)
  for i in range(b):
    if rewards[i] < thr:
      continue
    if norm == "none":
      think[i] = score[i]
    elif norm == "sigmoid":
      think[i] = 1.0 / (1.0 + np.exp(-score[i]))
    else:
      ok = [score[j] for j in range(b) if group_ids[j] == group_ids[i] and rewards[j] >= thr]
      lo, hi = min(ok), max(ok)
      think[i] = (score[i] - lo) / (hi - lo) if hi > lo else 0.0
  out = np.array([rewards[i] + (think_coef * think[i] if rewards[i] >= thr else 0.0)
                  for i in range(b)])
  if format_coef:
    out = out + format_coef * fmt
  return out


def grpo_reference(r, group_ids, eps=1e-6):
  adv = np.zeros(len(r))
  for g in np.unique(group_ids):
    rows = np.flatnonzero(group_ids == g)
    if len(rows) < 2:
      continue
    mu, sd = r[rows].mean(), r[rows].std(ddof=1)
    adv[rows] = (r[rows] - mu) / (sd + eps)
  return adv


# --------------------------------------------------------------------------------------------------
# Fixtures


def _steps(seed, b=8, t=9, s=4, group_size=4, binary=True):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(1, t + 1, b)
  lengths[1] = 0                                       # an empty row
  mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.float64)
  cuts = np.minimum(np.cumsum(rng.random((b, t)) < 0.35, axis=1), s - 1)
  step_id = np.where(mask > 0, cuts, -1).astype(np.int32)
  step_value = rng.random((b, s))
  step_value[:, -1] += 7.0 * (rng.random(b) < 0.5)    # junk in a padding column is never read
  rewards = (rng.random(b) < 0.5).astype(np.float64) if binary else rng.random(b)
  group_ids = np.arange(b) // group_size
  return step_id, step_value, mask, rewards, group_ids


def _ctx(step_id, step_value, mask, rewards, group_ids, ragged=False, **extras):
  kw = (dict(group_ids=jnp.asarray(group_ids), num_groups=int(group_ids.max()) + 1) if ragged
        else dict(group_size=int(np.bincount(group_ids)[0])))
  ex = {"step_id": jnp.asarray(step_id), "step_value": jnp.asarray(step_value, jnp.float32)}
  ex.update({k: jnp.asarray(v) for k, v in extras.items()})
  return ob.LossContext.create(mask=jnp.asarray(mask, jnp.float32),
                               rewards=jnp.asarray(rewards, jnp.float32),
                               old_logp=jnp.zeros(mask.shape), extras=ex, **kw)


def _run_rollout(tx, ctx):
  ctx = ctx.replace(phase="rollout")
  out, _ = tx.update(ctx, tx.init(ctx))
  return out


# --------------------------------------------------------------------------------------------------
# PPR / ReNorm


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ragged", [False, True])
def test_ppr_matches_the_float64_reference(seed, ragged):
  step_id, sv, mask, rewards, gids = _steps(seed)
  if ragged:
    gids = np.array([0, 0, 0, 1, 2, 2, 2, 2])
  out = _run_rollout(pr.ppr_advantage(), _ctx(step_id, sv, mask, rewards, gids, ragged=ragged))
  ref, r = ppr_reference(step_id, sv, mask, rewards, gids)
  np.testing.assert_allclose(np.asarray(out.advantages), ref, rtol=1e-5, atol=1e-5)
  m = out.metrics["ppr/step_reward_mean"]
  assert float(m.value()) == pytest.approx(np.nanmean(r), abs=1e-6)


def test_ppr_under_jit_equals_eager_and_has_no_gradient():
  step_id, sv, mask, rewards, gids = _steps(5)
  ctx = _ctx(step_id, sv, mask, rewards, gids)
  tx = pr.ppr_advantage()
  eager = _run_rollout(tx, ctx).advantages
  jitted = jax.jit(lambda c: _run_rollout(tx, c).advantages)(ctx)
  np.testing.assert_allclose(np.asarray(eager), np.asarray(jitted), rtol=1e-6, atol=1e-6)
  grad = jax.grad(lambda v: jnp.sum(_run_rollout(tx, ctx.replace(
      extras={**ctx.extras, "step_value": v})).advantages))(ctx.extras["step_value"])
  assert np.all(np.asarray(grad) == 0.0)


@pytest.mark.parametrize("seed", range(3))
def test_ppr_step_rewards_are_bounded_and_sign_consistent(seed):
  """(f)1, (f)2: r ∈ [−1, 1]; o = 1 ⇒ r ≥ 0; o = 0 ⇒ r ≤ 0 (p ∈ [0, 1], o ∈ {0, 1})."""
  rng = np.random.default_rng(seed)
  p = rng.random((16, 5))
  p[0], p[1] = 0.0, 1.0
  o = (rng.random(16) < 0.5).astype(np.float64)
  o[0], o[1] = 1.0, 0.0
  for r in (pr.renorm_step_rewards(p, o),
            np.asarray(pr.renorm_step_rewards(jnp.asarray(p), jnp.asarray(o)))):
    assert np.all((r >= -1.0) & (r <= 1.0))
    assert np.all(r[o == 1] >= 0.0) and np.all(r[o == 0] <= 0.0)


def test_ppr_with_perfect_process_scores_is_outcome_grpo():
  """(f)3: with p ≡ 1 the step rewards are the outcome; one step per row gives GRPO exactly, and
  with several steps every token of a row carries (steps left) × the row's normalised outcome."""
  step_id, _, mask, rewards, gids = _steps(11, binary=False)
  mask[1, :3] = 1.0                                    # no empty row here
  ones = np.ones((8, 4))
  single = np.where(mask > 0, 0, -1).astype(np.int32)
  out = _run_rollout(pr.ppr_advantage(), _ctx(single, ones, mask, rewards, gids))
  grpo = grpo_reference(rewards, gids)
  np.testing.assert_allclose(np.asarray(out.advantages), grpo[:, None] * mask, rtol=1e-5,
                             atol=1e-5)
  ctx = _ctx(single, ones, mask, rewards, gids)
  ref_adv = ob.group_advantage().update(ctx.replace(phase="rollout"), ())[0].advantages
  np.testing.assert_allclose(np.asarray(out.advantages), np.asarray(ref_adv), atol=1e-5)
  step_id = np.where(mask > 0, np.minimum(np.arange(9)[None, :] // 3, 3), -1).astype(np.int32)
  multi = _run_rollout(pr.ppr_advantage(), _ctx(step_id, ones, mask, rewards, gids))
  adv = np.asarray(multi.advantages)
  for i in range(8):
    n_steps = step_id[i].max() + 1
    per_step = adv[i, mask[i] > 0] / (n_steps - step_id[i, mask[i] > 0])
    np.testing.assert_allclose(per_step, per_step[0], atol=1e-5)   # one r̃ per row


def test_ppr_advantage_is_a_suffix_sum_and_constant_within_a_step():
  step_id, sv, mask, rewards, gids = _steps(3)
  adv = np.asarray(_run_rollout(pr.ppr_advantage(),
                                _ctx(step_id, sv, mask, rewards, gids)).advantages)
  for i in range(8):
    for j in set(step_id[i][mask[i] > 0].tolist()):
      vals = adv[i, (step_id[i] == j) & (mask[i] > 0)]
      np.testing.assert_allclose(vals, vals[0], atol=1e-6)
  assert np.all(adv[mask == 0] == 0.0)


def test_ppr_uniform_group_gives_zero_advantage():
  step_id, _, mask, rewards, gids = _steps(2)
  sv = np.full((8, 4), 0.3)
  rewards[:4] = 1.0
  adv = np.asarray(_run_rollout(pr.ppr_advantage(),
                                _ctx(step_id, sv, mask, rewards, gids)).advantages)
  assert np.all(adv[:4] == 0.0)


def test_ppr_fails_clearly_without_the_judge_hook():
  step_id, sv, mask, rewards, gids = _steps(0)
  ctx = _ctx(step_id, sv, mask, rewards, gids)
  for drop in ("step_id", "step_value"):
    bad = ctx.replace(extras={k: v for k, v in ctx.extras.items() if k != drop})
    with pytest.raises(ValueError, match=rf"`ppr_advantage` needs `{drop}`.*process_judge"):
      _run_rollout(pr.ppr_advantage(), bad)
  with pytest.raises(ValueError, match="step_id.*must be \\[B, T\\]"):
    _run_rollout(pr.ppr_advantage(), ctx.replace(
        extras={**ctx.extras, "step_id": ctx.extras["step_id"][:, :4]}))


# --------------------------------------------------------------------------------------------------
# Posterior-GRPO


def _posterior_batch(seed, b=12, group_size=4):
  rng = np.random.default_rng(seed)
  rewards = (rng.random(b) < 0.5).astype(np.float64)
  rewards[:3] = [1.0, 1.0, 0.0]
  score = rng.random(b)
  fmt = (rng.random(b) < 0.7).astype(np.float64)
  gids = np.arange(b) // group_size
  mask = np.ones((b, 3))
  return rewards, score, fmt, gids, mask


def _posterior(rewards, score, gids, mask, fmt=None, ragged=False, **kwargs):
  tx = ob.chain(pr.posterior_reward(**kwargs), ob.group_advantage())
  extras = {"proc_score": jnp.asarray(score, jnp.float32)}
  if fmt is not None:
    extras["format_reward"] = jnp.asarray(fmt, jnp.float32)
  kw = (dict(group_ids=jnp.asarray(gids), num_groups=int(gids.max()) + 1) if ragged
        else dict(group_size=int(np.bincount(gids)[0])))
  ctx = ob.LossContext.create(mask=jnp.asarray(mask, jnp.float32),
                              rewards=jnp.asarray(rewards, jnp.float32),
                              old_logp=jnp.zeros(mask.shape), extras=extras, **kw)
  out = _run_rollout(tx, ctx)
  return np.asarray(out.rewards), np.asarray(out.advantages)[:, 0], out


@pytest.mark.parametrize("norm", pr.THINK_NORMS)
@pytest.mark.parametrize("ragged", [False, True])
def test_posterior_matches_the_float64_reference(norm, ragged):
  rewards, score, fmt, gids, mask = _posterior_batch(1)
  if ragged:
    gids = np.array([0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 3, 3])
  if norm == "sigmoid":
    score = 4.0 * score - 2.0                          # an unbounded RM score
  got, adv, out = _posterior(rewards, score, gids, mask, fmt, ragged=ragged, think_norm=norm,
                             format_coef=0.5)
  ref = posterior_reference(rewards, score, gids, norm, fmt=fmt, format_coef=0.5)
  np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(adv, grpo_reference(ref, gids), rtol=1e-4, atol=1e-4)
  assert float(out.metrics["posterior/gated_frac"].value()) == pytest.approx(rewards.mean())


@pytest.mark.parametrize("norm", pr.THINK_NORMS)
def test_posterior_failing_rows_ignore_their_think_score(norm):
  """(f)1: changing a failing row's think score changes no reward and no advantage."""
  rewards, score, fmt, gids, mask = _posterior_batch(2)
  base = _posterior(rewards, score, gids, mask, think_norm=norm)
  other = np.where(rewards < 1.0, 1.0 - score + 3.0, score)
  moved = _posterior(rewards, other, gids, mask, think_norm=norm)
  np.testing.assert_array_equal(base[0], moved[0])
  np.testing.assert_array_equal(base[1], moved[1])


@pytest.mark.parametrize("norm", pr.THINK_NORMS)
def test_posterior_advantage_increases_with_think_score_among_passing_rows(norm):
  """(f)2: within a group, the passing row with the higher think score has the higher A."""
  rewards = np.array([1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0])
  score = np.array([0.2, 0.9, 0.5, 0.7, 0.1, 0.3, 0.6, 0.6])
  gids = np.arange(8) // 4
  _, adv, _ = _posterior(rewards, score, gids, np.ones((8, 2)), think_norm=norm)
  for g in range(2):
    ok = [i for i in range(4 * g, 4 * g + 4) if rewards[i] == 1.0]
    for i in ok:
      for j in ok:
        if score[i] > score[j]:
          assert adv[i] > adv[j], (norm, i, j, adv)
        elif score[i] == score[j]:
          assert adv[i] == pytest.approx(adv[j])
    fail = [i for i in range(4 * g, 4 * g + 4) if rewards[i] == 0.0]
    assert all(adv[i] < min(adv[j] for j in ok) for i in fail)


@pytest.mark.parametrize("norm", ["none", "minmax"])
def test_posterior_constant_think_score_is_outcome_grpo(norm):
  """(f)3: a think score constant over the passing rows gives outcome GRPO's advantages (the
  binary outcome is rescaled within each group, which GRPO's std normalisation removes); in
  "minmax" mode it adds nothing, so even a format term gives outcome+format GRPO exactly."""
  rewards, score, fmt, gids, mask = _posterior_batch(4)
  const = np.where(rewards >= 1.0, 0.4, score)
  _, adv, _ = _posterior(rewards, const, gids, mask, think_norm=norm)
  np.testing.assert_allclose(adv, grpo_reference(rewards, gids), rtol=1e-4, atol=1e-4)
  if norm == "minmax":
    _, adv, _ = _posterior(rewards, const, gids, mask, fmt, think_norm=norm, format_coef=1.0)
    np.testing.assert_allclose(adv, grpo_reference(rewards + fmt, gids), rtol=1e-4, atol=1e-4)


def test_posterior_errors_name_the_hook_and_the_fix():
  rewards, score, fmt, gids, mask = _posterior_batch(0)
  ctx = ob.LossContext.create(mask=jnp.asarray(mask), rewards=jnp.asarray(rewards),
                              old_logp=jnp.zeros(mask.shape), group_size=4, phase="rollout")
  with pytest.raises(ValueError, match="`posterior_reward` needs `proc_score`.*process_judge"):
    pr.posterior_reward().update(ctx, ())
  ctx = ctx.replace(extras={"proc_score": jnp.asarray(score)})
  with pytest.raises(ValueError, match="format_reward.*format_regex"):
    pr.posterior_reward(format_coef=1.0).update(ctx, ())
  with pytest.raises(ValueError, match="unknown think_norm 'softmax'"):
    pr.posterior_reward("softmax")
  assert pr.posterior_reward().requires == {"proc_score"}
  assert pr.posterior_reward(format_coef=0.5).requires == {"proc_score", "format_reward"}


# --------------------------------------------------------------------------------------------------
# Presets


def test_presets_build_and_run_with_a_gradient():
  step_id, sv, mask, rewards, gids = _steps(7)
  rng = np.random.default_rng(0)
  logp = jnp.asarray(-rng.random(mask.shape), jnp.float32)
  ctx = _ctx(step_id, sv, mask, rewards, gids, proc_score=rng.random(8).astype(np.float32))
  ctx = ctx.replace(old_logp=logp, ref_logp=logp - 0.1)
  for name in ("ppr", "posterior_grpo"):
    objective = presets.build(name)
    assert objective.requires >= ({"step_id", "step_value"} if name == "ppr" else {"proc_score"})

    def f(lp, objective=objective):
      return objective(ctx.replace(logp=lp))[0]
    loss, grad = jax.value_and_grad(f)(logp)
    assert np.isfinite(float(loss)) and np.any(np.asarray(grad) != 0.0)
    assert np.all(np.asarray(grad)[mask == 0] == 0.0)
