"""Reward shaping that runs in jax (rollout phase, before the advantage estimator)."""
import jax.numpy as jnp
from jaxtyping import Array, Float

from jaxrl_llm.objectives.base import LossTransform, stateless
from jaxrl_llm.objectives.context import LossContext


def overlong_reward(lengths: Float[Array, " B"], max_len: int, cache_len: int
                    ) -> Float[Array, " B"]:
  """DAPO's soft overlong punishment R_len(L) (arXiv 2503.14476, eq. for R_length).

    R_len(L) = 0                                if L ≤ L_max − L_cache
             = ((L_max − L_cache) − L) / L_cache if L_max − L_cache < L ≤ L_max
             = −1                               if L > L_max
  """
  start = max_len - cache_len
  ramp = (start - lengths) / cache_len
  return jnp.where(lengths <= start, 0.0, jnp.where(lengths <= max_len, ramp, -1.0))


def overlong_penalty(max_len: int = 20480, cache_len: int = 4096, coef: float = 1.0,
                     lengths_key: str | None = None) -> LossTransform:
  """Adds DAPO's soft overlong penalty to the rewards: `r_b ← r_b + coef · R_len(|o_b|)`. Rollout.

  Lengths are in **tokens**: `|o_b| = Σ_t m_{b,t}` by default, or `extras[lengths_key]` (use that
  when the mask was cut at the buffer width, so lengths above `max_len` can be seen). Defaults are
  the DAPO recipe's: L_max = 20480, L_cache = 4096, coef (verl `penalty_factor`) = 1. Reads
  `mask`/`extras[lengths_key]`; writes `rewards`; logs `overlong/penalty_mean`, `overlong/frac`.
  """
  if cache_len <= 0 or cache_len > max_len:
    raise ValueError(f"need 0 < cache_len <= max_len, got cache_len={cache_len}, "
                     f"max_len={max_len}")

  def apply(ctx: LossContext) -> LossContext:
    ctx.check_rollout_phase(by="overlong_penalty")
    if lengths_key is None:
      lengths = ctx.lengths
    else:
      lengths = jnp.asarray(ctx.require(lengths_key, by="overlong_penalty"), ctx.rewards.dtype)
    penalty = coef * overlong_reward(lengths, max_len, cache_len)
    return ctx.replace(rewards=ctx.rewards + penalty).log(**{
        "overlong/penalty_mean": ctx.row_mean(penalty),
        "overlong/frac": ctx.row_mean((penalty < 0).astype(penalty.dtype)),
    })

  return stateless(apply, phase="rollout")


def rescale_rewards(low: float = -1.0, high: float = 1.0) -> LossTransform:
  """Maps verifier scores in [0, 1] affinely onto [low, high]: `r_b ← low + (high − low)·r_b`.

  The library's verifiers score {0, 1}; recipes whose paper scores answers ±1 (DAPO, arXiv
  2503.14476 §2.4: R(ŷ, y) = 1 if correct else −1, which the DAPO, FIPO and Δlog p launchers
  keep) put this first in the rollout chain, so that shaping added afterwards (DAPO's overlong
  penalty in [−1, 0]) weighs against the same unit as the paper's. Group-normalised advantages
  without shaping are unchanged by the map (it is affine); with shaping they are not. `low = 0,
  high = 1` is the identity. Reads and writes `rewards`. Rollout.
  """
  if not high > low:
    raise ValueError(f"rescale_rewards needs high > low, got low={low}, high={high}")

  def apply(ctx: LossContext) -> LossContext:
    ctx.check_rollout_phase(by="rescale_rewards")
    return ctx.replace(rewards=low + (high - low) * ctx.rewards)

  return stateless(apply, phase="rollout")
