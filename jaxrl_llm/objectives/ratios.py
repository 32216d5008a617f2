"""Ratio and clipping rules (loss phase): PPO clip (clip-higher, dual clip), GSPO, REINFORCE.

Each writes the policy-gradient term `pg = weights · ℓ(ρ, A)` (per token, to minimise) and, where
there is one, `ctx.ratio`. Advantages come from the rollout phase (`spec/baselines_and_more.md`
§1.2–§1.3).
"""
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from jaxrl_llm.objectives.base import LossTransform, stateless
from jaxrl_llm.objectives.context import LossContext

GSPO_LEVELS = ("sequence", "token")

_ADV_FIX = ("run an advantage estimator (group_advantage, rloo_advantage, ...) in the rollout "
            "phase first, or pass advantages=... to LossContext.create")


def _log_ratio(ctx: LossContext) -> Float[Array, "B T"]:
  # Zero off the mask before exp: padding may hold any finite junk.
  return jnp.where(ctx.mask > 0, ctx.logp - ctx.old_logp, 0.0)


def clipped_surrogate(ratio: Float[Array, "B T"], advantages: Float[Array, "B T"],
                      eps_low: float, eps_high: float, dual_clip: float | None = None
                      ) -> Float[Array, "B T"]:
  """`ℓ = −min(ρA, clip(ρ, 1−ε_low, 1+ε_high)A)`; with dual clip c, `ℓ ← min(ℓ, −cA)` where A<0."""
  loss = -jnp.minimum(ratio * advantages,
                      jnp.clip(ratio, 1.0 - eps_low, 1.0 + eps_high) * advantages)
  if dual_clip is not None:
    loss = jnp.where(advantages < 0, jnp.minimum(loss, -dual_clip * advantages), loss)
  return loss


def _clip_metrics(ctx, ratio, adv, eps_low, eps_high, dual_clip):
  high = (adv > 0) & (ratio > 1.0 + eps_high)
  low = (adv < 0) & (ratio < 1.0 - eps_low)
  metrics = {
      "clip/frac_high": ctx.masked_mean(high.astype(ratio.dtype)),
      "clip/frac_low": ctx.masked_mean(low.astype(ratio.dtype)),
      "clip/frac": ctx.masked_mean((high | low).astype(ratio.dtype)),
      "ratio/mean": ctx.masked_mean(ratio),
  }
  if dual_clip is not None:
    dual = (adv < 0) & (ratio > dual_clip)
    metrics["clip/frac_dual"] = ctx.masked_mean(dual.astype(ratio.dtype))
  return metrics


def _check_eps(eps_low, eps_high, dual_clip):
  if eps_low < 0 or eps_high < 0:
    raise ValueError(f"clip ranges must be >= 0, got eps_low={eps_low}, eps_high={eps_high}")
  if dual_clip is not None and dual_clip <= 1.0:
    raise ValueError(f"dual_clip must be > 1 (verl default 3), got {dual_clip}")


def ppo_clip(eps_low: float = 0.2, eps_high: float | None = None,
             dual_clip: float | None = None) -> LossTransform:
  """PPO clipped surrogate per token (Schulman et al. 2017), with clip-higher and dual clip. Loss.

    ρ_{b,t} = exp(logp − old_logp),
    ℓ_{b,t} = −min(ρ A, clip(ρ, 1 − ε_low, 1 + ε_high) A),
    dual clip (Ye et al. 2020, verl c = 3), only where A < 0:  ℓ ← min(ℓ, −c A),
    pg_{b,t} = w_{b,t} · ℓ_{b,t}.
  Defaults: ε_low = 0.2, ε_high = ε_low (symmetric; DAPO's clip-higher uses 0.28), dual clip off
  (TRL has none). ∂ℓ/∂logp = −ρA where the unclipped term is the active minimum, else 0.
  Reads `logp`, `old_logp`, `advantages`, `weights`; writes `ratio`, term `pg`; logs `clip/*`,
  `ratio/mean`.
  """
  eps_high = eps_low if eps_high is None else eps_high
  _check_eps(eps_low, eps_high, dual_clip)

  def apply(ctx: LossContext) -> LossContext:
    ctx.check_loss_phase(by="ppo_clip")
    adv = ctx.require("advantages", by="ppo_clip", fix=_ADV_FIX)
    ratio = jnp.exp(_log_ratio(ctx))
    loss = clipped_surrogate(ratio, adv, eps_low, eps_high, dual_clip)
    ctx = ctx.log(**_clip_metrics(ctx, ratio, adv, eps_low, eps_high, dual_clip))
    return ctx.replace(ratio=ratio).add_term("pg", ctx.weights * loss)

  return stateless(apply, phase="loss")


def sequence_log_ratio(ctx: LossContext) -> Float[Array, " B"]:
  """`log s_b = (1/|o_b|) Σ_t m_{b,t}(logp − old_logp)` (0 for empty rows)."""
  return jnp.sum(_log_ratio(ctx) * ctx.mask, axis=1) / jnp.maximum(ctx.lengths, 1.0)


def gspo_clip(eps_low: float = 3e-4, eps_high: float = 4e-4, level: str = "sequence"
              ) -> LossTransform:
  """GSPO's sequence-level clipped surrogate (Zheng et al., arXiv 2507.18071). Loss phase.

    s_b = exp((1/|o_b|) Σ_t m_{b,t}(logp − old_logp))                 (geometric mean of ratios)
    "sequence": s_{b,t} = s_b (every token's gradient flows through the whole row)
    "token":    s_{b,t} = sg(s_b) · exp(logp_{b,t} − sg(logp_{b,t}))  (GSPO-token; value s_b)
    ℓ_{b,t} = −min(s_{b,t} A_{b,t}, clip(s_{b,t}, 1 − ε_low, 1 + ε_high) A_{b,t});  pg = w · ℓ
  With a per-row advantage each valid token carries the row's loss, so aggregating with
  `seq_mean_token_mean` gives GSPO's `(1/N') Σ_b ℓ_b`, and GSPO-token then has exactly GSPO's
  value and gradient. Defaults ε = (3e-4, 4e-4) (verl's Qwen3-30B GSPO example). Reads `logp`,
  `old_logp`, `advantages`, `weights`; writes `ratio`, term `pg`; logs `clip/*`, `ratio/mean`.
  """
  if level not in GSPO_LEVELS:
    raise ValueError(f"unknown GSPO level {level!r}; valid levels: {GSPO_LEVELS}")
  _check_eps(eps_low, eps_high, None)

  def apply(ctx: LossContext) -> LossContext:
    ctx.check_loss_phase(by="gspo_clip")
    adv = ctx.require("advantages", by="gspo_clip", fix=_ADV_FIX)
    s = jnp.exp(sequence_log_ratio(ctx))[:, None]                       # [B, 1]
    if level == "sequence":
      ratio = jnp.broadcast_to(s, ctx.mask.shape)
    else:
      logp = jnp.where(ctx.mask > 0, ctx.logp, 0.0)
      ratio = jax.lax.stop_gradient(s) * jnp.exp(logp - jax.lax.stop_gradient(logp))
    loss = clipped_surrogate(ratio, adv, eps_low, eps_high)
    ctx = ctx.log(**_clip_metrics(ctx, ratio, adv, eps_low, eps_high, None))
    return ctx.replace(ratio=ratio).add_term("pg", ctx.weights * loss)

  return stateless(apply, phase="loss")


def reinforce() -> LossTransform:
  """Plain REINFORCE surrogate, `pg_{b,t} = −w_{b,t} A_{b,t} logp_{b,t}` (no ratio, no clip). Loss.

  The original RLOO loss (Ahmadian et al., arXiv 2402.14740) with `seq_mean_token_sum`
  aggregation: `L = −(1/N) Σ_b A_b Σ_t m logp`. On-policy only (its gradient ignores old_logp).
  Reads `logp`, `advantages`, `weights`; writes term `pg`.
  """
  def apply(ctx: LossContext) -> LossContext:
    ctx.check_loss_phase(by="reinforce")
    adv = ctx.require("advantages", by="reinforce", fix=_ADV_FIX)
    logp = jnp.where(ctx.mask > 0, ctx.logp, 0.0)
    return ctx.add_term("pg", -ctx.weights * adv * logp)

  return stateless(apply, phase="loss")
