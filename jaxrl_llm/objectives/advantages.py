"""Advantage estimators (rollout phase): group mean/std (GRPO, Dr. GRPO, TRL scaling), RLOO,
REINFORCE++-baseline.

Each reads `ctx.rewards` (after any reward shaping) and writes token-level
`ctx.advantages[b, t] = A_b · m_{b,t}`, detached. They run once per rollout batch on whole groups
(`spec/baselines_and_more.md` §1.1, A5, A6).
"""
import jax
import jax.numpy as jnp

from jaxrl_llm.objectives.base import LossTransform, stateless
from jaxrl_llm.objectives.context import LossContext
from jaxrl_llm.objectives.numerics import group_stats

SCALES = ("group", "batch", "none")
SINGLETON_RULES = ("zero", "verl")


def _validate(name, value, valid):
  if value not in valid:
    raise ValueError(f"unknown {name} {value!r}; valid values: {valid}")


def _write(ctx: LossContext, adv_b, ns: str = "adv") -> LossContext:
  adv_b = jax.lax.stop_gradient(adv_b)
  return ctx.replace(advantages=ctx.token_broadcast(adv_b)).log(**{
      f"{ns}/mean": ctx.row_mean(adv_b),
      f"{ns}/abs_mean": ctx.row_mean(jnp.abs(adv_b)),
      f"{ns}/nonzero_frac": ctx.row_mean((adv_b != 0).astype(adv_b.dtype)),
      "reward/mean": ctx.row_mean(ctx.rewards),
  })


def group_advantage(scale: str = "group", eps: float = 1e-6, ddof: int = 1,
                    singleton: str = "zero", clip: float | None = None) -> LossTransform:
  """Group-relative advantage, `A_b = sg((r_b − μ_{g(b)}) / (σ + ε))`. Rollout phase.

  `scale` chooses σ (TRL's `scale_rewards`):
    "group": σ = σ_{g(b)}, the std of the row's group (GRPO, DeepSeekMath arXiv 2402.03300);
    "batch": σ = σ_batch, the std of all rewards in the batch, mean still per group (TRL "batch");
    "none":  no division, `A_b = r_b − μ_{g(b)}` (Dr. GRPO, arXiv 2503.20783; TRL "none").
  Stds use `ddof` (1 = Bessel, as verl/TRL/oat). ε = 1e-6 (verl, oat); TRL uses 1e-4.
  Groups of one row: `singleton="zero"` gives A = 0 (spec default, TRL), "verl" gives A = r_b.
  Zero-variance groups give A = 0 exactly. `clip` = c bounds A to [−c, c] (Knapsack RL clips at
  5: with binary rewards a group of N rows with one success has A ≈ √N, ~11 for N = 128; logs
  `adv/clipped_frac`). Reads `rewards`; writes `advantages`; logs `adv/*`.
  """
  _validate("scale", scale, SCALES)
  _validate("singleton rule", singleton, SINGLETON_RULES)
  if clip is not None and not clip > 0:
    raise ValueError(f"group_advantage clip must be positive (or None for no clip), got {clip}")

  def apply(ctx: LossContext) -> LossContext:
    ctx.check_rollout_phase(by="group_advantage")
    r = ctx.rewards
    stats = group_stats(r, ctx, ddof=ddof)
    centred = r - stats.mean
    if scale == "group":
      adv = centred / (stats.std + eps)
    elif scale == "batch":
      n = r.shape[0]
      mu = jnp.mean(r)
      sigma = jnp.sqrt(jnp.sum(jnp.square(r - mu)) / max(n - ddof, 1))
      adv = centred / (sigma + eps)
    else:
      adv = centred
    single = stats.count <= 1
    adv = jnp.where(single, r if singleton == "verl" else 0.0, adv)
    if clip is None:
      return _write(ctx, adv)
    clipped = jnp.abs(adv) > clip
    return _write(ctx, jnp.clip(adv, -clip, clip)).log(**{
        "adv/clipped_frac": ctx.row_mean(clipped.astype(adv.dtype))})

  return stateless(apply, phase="rollout")


def rloo_advantage() -> LossTransform:
  """Leave-one-out baseline (RLOO; Ahmadian et al. arXiv 2402.14740, Kool et al. 2019). Rollout.

  `A_b = sg(r_b − (1/(n−1)) Σ_{j∈G(b), j≠b} r_j) = sg(n/(n−1) · (r_b − μ_{g(b)}))`; 0 for groups
  of one row. Reads `rewards`; writes `advantages`; logs `adv/*`.
  """
  def apply(ctx: LossContext) -> LossContext:
    ctx.check_rollout_phase(by="rloo_advantage")
    stats = group_stats(ctx.rewards, ctx, ddof=0)
    n = stats.count
    adv = jnp.where(n > 1, n / jnp.maximum(n - 1.0, 1.0) * (ctx.rewards - stats.mean), 0.0)
    return _write(ctx, adv)

  return stateless(apply, phase="rollout")


def reinforce_pp_advantage(eps: float = 1e-8) -> LossTransform:
  """REINFORCE++-baseline advantage (Hu et al., arXiv 2501.03262). Rollout phase.

    Ã_{b,t} = (r_b − μ_{g(b)}) m_{b,t};  M = Σ m;  mean = Σ m Ã / M;
    var = Σ m (Ã − mean)² / (M − 1);     A_{b,t} = sg((Ã − mean) / sqrt(var + ε)) m_{b,t}
  The whitening statistics are over the valid *tokens* of the whole batch (long responses weigh
  more), as verl's `masked_whiten`. ε = 1e-8. Reads `rewards`, `mask`; writes `advantages`.
  """
  def apply(ctx: LossContext) -> LossContext:
    ctx.check_rollout_phase(by="reinforce_pp_advantage")
    stats = group_stats(ctx.rewards, ctx, ddof=1)
    centred = ctx.rewards - stats.mean                       # constant over a row's tokens
    m = ctx.mask
    tokens = jnp.sum(m)
    mean = jnp.sum(centred * ctx.lengths) / jnp.maximum(tokens, 1.0)
    var = jnp.sum(jnp.square(centred - mean) * ctx.lengths) / jnp.maximum(tokens - 1.0, 1.0)
    adv_b = jax.lax.stop_gradient((centred - mean) / jnp.sqrt(var + eps))
    ctx = _write(ctx, adv_b)
    # Token-weighted statistics of the result (the quantities the whitening sets to 0 and 1).
    return ctx.log(**{"adv/token_mean": ctx.masked_mean(ctx.advantages)})

  return stateless(apply, phase="rollout")


