"""Transforms of the methods that need extra model calls on the host (spec B11, B12).

  pav_advantage        advantage (rollout): outcome advantage + α · prover progress per step
                       (Rewarding Progress / PAV, Setlur et al., arXiv 2410.08146)
  bok_value            helper: the Best-of-K prover's value 1 − (1 − V)^K (numpy or jax)
  critique_surrogate   surrogate (loss): on-policy −ρA, off-policy (refinement rows) −f(p)A with
                       f(p) = p/(p + γ) (Critique-GRPO, Zhang et al., arXiv 2506.03106)

The host side (Monte-Carlo prover rollouts, critiques and refinements) is in
`jaxrl_llm/training/hooks_models.py` (hooks `pav_prover` and `critique`), which writes the
`ctx.extras` these transforms read: `step_id` [B, T] and `step_value` [B, S] (PAV), `offpolicy`
[B] (Critique-GRPO). Critique-GRPO's other two pieces exist already: the mean-only advantage is
`group_advantage("none")` and the constant normaliser T_max is
`aggregate("seq_mean_token_sum_norm", norm=None)` (the padded width T).
"""
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from jaxrl_llm.objectives.base import LossTransform, stateless
from jaxrl_llm.objectives.context import LossContext, Mean
from jaxrl_llm.objectives.numerics import group_stats
from jaxrl_llm.objectives.ratios import _ADV_FIX, _check_eps, clipped_surrogate

PAV_BASELINES = ("rloo", "mean")
_PAV_FIX = ("turn on the prover hook (config.hooks.pav_prover), which writes step_id [B, T] and "
            "step_value [B, S] from Monte-Carlo rollouts at each step boundary")
_CRITIQUE_FIX = ("turn on the critique hook (config.hooks.critique), which adds one refinement "
                 "per group and flags it in extras['offpolicy'] [B]")


def bok_value(value, k: int):
  """The value of a Best-of-K prover built from a policy whose value is `value` (spec B11 (b)).

    V^{BoK}(s) = 1 − (1 − V^π(s))^K        (K samples, a perfect verifier picks a correct one)

  Works on floats, NumPy and JAX arrays. K = 1 is the identity. V^{BoK} ≥ V^π, increases with
  K, and equals V^π where V^π ∈ {0, 1}.
  """
  if int(k) != k or k < 1:
    raise ValueError(f"Best-of-K needs an integer K >= 1, got {k}")
  return 1.0 - (1.0 - value) ** int(k)


def _outcome_advantage(ctx: LossContext, baseline: str) -> Float[Array, " B"]:
  stats = group_stats(ctx.rewards, ctx, ddof=0)
  centred = ctx.rewards - stats.mean
  n = stats.count
  if baseline == "rloo":
    return jnp.where(n > 1, n / jnp.maximum(n - 1.0, 1.0) * centred, 0.0)
  return jnp.where(n > 1, centred, 0.0)


def step_progress(step_id, step_value, mask) -> Float[Array, "B T"]:
  """`A^μ_{b,h(t)} = V[b, h(t)+1] − V[b, h(t)]` on every valid token with a step, 0 elsewhere."""
  h = jnp.asarray(step_id, jnp.int32)
  v = jnp.asarray(step_value, jnp.float32)
  s = v.shape[1]
  valid = (mask > 0) & (h >= 0)
  hc = jnp.clip(h, 0, s - 2)
  before = jnp.take_along_axis(v, hc, axis=1)
  after = jnp.take_along_axis(v, hc + 1, axis=1)
  return jnp.where(valid, after - before, 0.0)


def pav_advantage(alpha: float = 1.0, baseline: str = "rloo") -> LossTransform:
  """Outcome advantage plus α times the prover's per-step progress (PAV, arXiv 2410.08146).

  Spec B11 (b), "our transform" [reconstruction]:
    A^μ_{b,h} = V̂^μ(s_{h+1}) − V̂^μ(s_h)                          (progress of step h)
    A_{b,t}   = sg( A^{out}_b + α · A^μ_{b, h(t)} ) · m_{b,t}
    A^{out}_b = n/(n−1)·(r_b − μ_{g(b)}) ("rloo", default) or r_b − μ_{g(b)} ("mean"); 0 for
                groups of one row
  Inputs (host-computed by the `pav_prover` hook, `jaxrl_llm/training/hooks_models.py`):
    extras["step_id"]    int [B, T]: the step h(t) ∈ {0..H_b−1} of each completion token, −1 on
                         padding. Valid tokens with −1 get no progress term (outcome only).
    extras["step_value"] float [B, S]: step_value[b, h] = V̂^μ(s_h) for h = 0..H_b, where s_0 is
                         the prompt alone, s_h the prompt plus the first h steps, and
                         step_value[b, H_b] the value of the full response (the hook puts the
                         row's own reward there). Columns after H_b are padding (0) and are never
                         read; S ≥ H_b + 1 is needed (the hook uses S = max_steps + 2). The
                         number of steps H_b is max_t step_id[b, t] + 1.
  Per row, Σ_h A^μ_{b,h} = step_value[b, H_b] − step_value[b, 0] (telescoping), and α = 0 gives
  the outcome-only estimator exactly. Defaults [reconstruction, spec §6]: α = 1 (the spec's grid
  is {1, 3, 5}; the paper's value was not found), RLOO baseline. Reads `rewards`, `mask`;
  writes `advantages`; logs `adv/*`, `adv/outcome_abs_mean`, `adv/progress_abs_mean`.
  """
  if baseline not in PAV_BASELINES:
    raise ValueError(f"unknown PAV outcome baseline {baseline!r}; valid: {PAV_BASELINES}")

  def apply(ctx: LossContext) -> LossContext:
    ctx.check_rollout_phase(by="pav_advantage")
    step_id = ctx.require("step_id", by="pav_advantage", fix=_PAV_FIX)
    step_value = ctx.require("step_value", by="pav_advantage", fix=_PAV_FIX)
    if tuple(step_id.shape) != tuple(ctx.mask.shape):
      raise ValueError(f"extras['step_id'] has shape {step_id.shape}; it must be [B, T] = "
                       f"{tuple(ctx.mask.shape)}, the completion tokens' layout")
    if step_value.ndim != 2 or step_value.shape[0] != ctx.batch_size or step_value.shape[1] < 2:
      raise ValueError(f"extras['step_value'] has shape {step_value.shape}; it must be [B, S] "
                       f"with B = {ctx.batch_size} and S >= 2 (values at the step boundaries)")
    out = _outcome_advantage(ctx, baseline)
    progress = step_progress(step_id, step_value, ctx.mask)
    adv = jax.lax.stop_gradient((out[:, None] + alpha * progress) * ctx.mask)
    row_adv = jnp.sum(adv, axis=1) / jnp.maximum(ctx.lengths, 1.0)
    return ctx.replace(advantages=adv).log(**{
        "adv/mean": ctx.masked_mean(adv),
        "adv/abs_mean": ctx.masked_mean(jnp.abs(adv)),
        "adv/nonzero_frac": ctx.masked_mean((adv != 0).astype(adv.dtype)),
        "adv/row_mean": ctx.row_mean(row_adv, where=(ctx.lengths > 0)),
        "adv/outcome_abs_mean": ctx.row_mean(jnp.abs(out)),
        "adv/progress_abs_mean": ctx.masked_mean(jnp.abs(progress)),
        "reward/mean": ctx.row_mean(ctx.rewards),
    })

  return stateless(apply, requires={"step_id", "step_value"}, phase="rollout")


def critique_shaping(p, gamma: float):
  """Critique-GRPO's off-policy shaping f(p) = p/(p + γ) (numpy or jax)."""
  return p / (p + gamma)


def critique_surrogate(gamma: float = 0.1, clip_eps: float | None = None) -> LossTransform:
  """Critique-GRPO's mixed surrogate (Zhang et al., arXiv 2506.03106; spec B12 (b), [code]).

    on-policy rows  (offpolicy_b = 0):  ℓ_{b,t} = −ρ_{b,t} A_{b,t},  ρ = exp(logp − old_logp)
    off-policy rows (offpolicy_b = 1):  ℓ_{b,t} = −f(p_{b,t}) A_{b,t},  p = exp(logp),
                                         f(p) = p/(p + γ)
    pg_{b,t} = w_{b,t} ℓ_{b,t}
  ∂ℓ/∂logp is −ρA on-policy and −A·γp/(p + γ)² off-policy (largest at p = γ: the shaping
  emphasises unfamiliar tokens of the refinement). Off-policy rows never read `old_logp` (the
  refinement was sampled under another prompt), so their behaviour logp need not be recomputed.
  Defaults: γ = 0.1, no clipping (the released run's `loss_remove_clip=True`); `clip_eps=ε`
  clips the on-policy rows, `−min(ρA, clip(ρ, 1−ε, 1+ε)A)` (the code's other switch). Pair it with
  `group_advantage("none")` (A = r − μ over all n rows, refinement included) and
  `aggregate("seq_mean_token_sum_norm")` (Σ m ℓ / T_max with the padded width T; the library's
  mode also divides by N, a constant factor). Reads `logp`, `old_logp`, `advantages`, `weights`,
  extras["offpolicy"] (bool [B], from the `critique` hook); writes term `pg`; logs
  `critique/offpolicy_frac`, `critique/shaping_mean` (f on off-policy tokens), `ratio/mean`
  (on-policy tokens).
  """
  if gamma <= 0:
    raise ValueError(f"Critique-GRPO's shaping needs γ > 0 (f(p) = p/(p+γ)), got {gamma}")
  if clip_eps is not None:
    _check_eps(clip_eps, clip_eps, None)

  def apply(ctx: LossContext) -> LossContext:
    ctx.check_loss_phase(by="critique_surrogate")
    off = ctx.require("offpolicy", by="critique_surrogate", fix=_CRITIQUE_FIX)
    adv = ctx.require("advantages", by="critique_surrogate", fix=_ADV_FIX)
    if tuple(off.shape) != (ctx.batch_size,):
      raise ValueError(f"extras['offpolicy'] has shape {off.shape}; it must be [B] = "
                       f"({ctx.batch_size},), one flag per row")
    off = jnp.asarray(off).astype(bool)[:, None]
    valid = ctx.mask > 0
    ratio = jnp.exp(jnp.where(valid, ctx.logp - ctx.old_logp, 0.0))
    if clip_eps is None:
      on_loss = -ratio * adv
    else:
      on_loss = clipped_surrogate(ratio, adv, clip_eps, clip_eps)
    p = jnp.exp(jnp.where(valid, ctx.logp, 0.0))
    f = critique_shaping(p, gamma)
    loss = jnp.where(off, -f * adv, on_loss)
    on_tok = jnp.where(off, 0.0, ctx.mask)
    off_tok = jnp.where(off, ctx.mask, 0.0)
    ctx = ctx.log(**{
        "critique/offpolicy_frac": ctx.row_mean(off[:, 0].astype(ctx.mask.dtype)),
        "critique/shaping_mean": Mean(jnp.sum(jnp.where(valid, f, 0.0) * off_tok),
                                      jnp.sum(off_tok)),
        "ratio/mean": Mean(jnp.sum(jnp.where(valid, ratio, 0.0) * on_tok), jnp.sum(on_tok)),
    })
    return ctx.add_term("pg", ctx.weights * loss)

  return stateless(apply, requires={"offpolicy"}, phase="loss")
