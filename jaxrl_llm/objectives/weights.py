"""Token masks (filters) and token weights.

Filters edit `mask`: they change denominators (a dropped token or row no longer counts).
Reweightings edit `weights`: the ratio rule multiplies its per-token surrogate by them, and no
denominator changes. Regularisers are touched by neither (`STYLE.md` §2.5).
"""
import jax
import jax.numpy as jnp

from jaxrl_llm.objectives.base import LossTransform, stateless
from jaxrl_llm.objectives.context import LossContext, Mean
from jaxrl_llm.objectives.numerics import group_all_equal


def drop_uniform_groups(key: str | None = None) -> LossTransform:
  """DAPO dynamic sampling, in-batch half: masks every group whose rewards are all equal. Rollout.

  `m_{b,t} ← 0` for all rows of a group k with `max_{G_k} r = min_{G_k} r` (all correct or all
  wrong: no learning signal), so those rows stop counting in every denominator (arXiv 2503.14476).
  The statistic is `ctx.rewards`, or `extras[key]` (e.g. a per-row accuracy, the paper's choice,
  when shaping has already changed the rewards). Place it before reward shaping to filter on raw
  rewards. The other half of dynamic sampling, over-sampling prompts to refill the batch, changes
  `B` and belongs to the rollout loop. Logs `filter/kept_frac` (over rows).
  """
  def apply(ctx: LossContext) -> LossContext:
    ctx.check_rollout_phase(by="drop_uniform_groups")
    x = ctx.rewards if key is None else ctx.require(key, by="drop_uniform_groups")
    keep = (~group_all_equal(jnp.asarray(x, ctx.rewards.dtype), ctx)).astype(ctx.mask.dtype)
    ctx = ctx.replace(mask=ctx.mask * keep[:, None])
    if ctx.advantages is not None:
      ctx = ctx.replace(advantages=ctx.advantages * keep[:, None])
    return ctx.log(**{"filter/kept_frac": ctx.row_mean(keep)})

  return stateless(apply, phase="rollout")


def drop_truncated(key: str = "truncated") -> LossTransform:
  """Overlong filtering (DAPO; TRL `mask_truncated_completions`): masks truncated rows. Any phase.

  `m_{b,t} ← 0` where `extras[key][b]` is true. Logs `filter/truncated_frac` (over rows).
  """
  def apply(ctx: LossContext) -> LossContext:
    truncated = jnp.asarray(ctx.require(key, by="drop_truncated")).astype(bool)
    keep = (~truncated).astype(ctx.mask.dtype)
    ctx = ctx.log(**{"filter/truncated_frac": ctx.row_mean(1.0 - keep)})
    ctx = ctx.replace(mask=ctx.mask * keep[:, None])
    if ctx.advantages is not None:
      ctx = ctx.replace(advantages=ctx.advantages * keep[:, None])
    return ctx

  return stateless(apply)


def tis_weights(cap: float = 2.0, key: str = "sampler_logp") -> LossTransform:
  """Truncated importance sampling against the sampler's logprobs (Yao et al. 2025, "Your
  efficient RL framework secretly brings you off-policy RL training"). Any phase.

    w_{b,t} ← w_{b,t} · min(exp(old_logp_{b,t} − sampler_logp_{b,t}), C),   C = `cap` = 2

  `old_logp` is the trainer's recomputation of the behaviour policy and `sampler_logp =
  extras[key]` what the inference engine reported for the same tokens; the weight corrects the
  mismatch between the two (a weight, not a filter: denominators stay). Logs the mismatch
  `tis/abs_logp_diff` = mean |old_logp − sampler_logp| over tokens, `tis/weight_mean` and
  `tis/clip_frac` (fraction of tokens whose ratio exceeds C).
  """
  if cap <= 0:
    raise ValueError(f"tis cap must be positive, got {cap}")

  def apply(ctx: LossContext) -> LossContext:
    sampler_logp = jnp.asarray(ctx.require(key, by="tis_weights"), ctx.old_logp.dtype)
    diff = jnp.where(ctx.mask > 0, ctx.old_logp - sampler_logp, 0.0)
    ratio = jnp.exp(diff)
    w = jax.lax.stop_gradient(jnp.minimum(ratio, cap))
    return ctx.replace(weights=ctx.weights * w).log(**{
        "tis/abs_logp_diff": ctx.masked_mean(jnp.abs(diff)),
        "tis/weight_mean": ctx.masked_mean(w),
        "tis/clip_frac": ctx.masked_mean((ratio > cap).astype(w.dtype)),
    })

  return stateless(apply)


def top_entropy(frac: float = 0.2) -> LossTransform:
  """Trains only on the highest-entropy fraction of tokens (Wang et al. 2025, "Beyond the 80/20
  rule: high-entropy minority tokens drive effective RL", arXiv 2506.01939). Loss phase.

  Keeps the `k = ceil(frac · Σm)` valid tokens of the (micro-)batch with the largest `sg(entropy)`
  (ties at the threshold are all kept) and masks the rest: `m_{b,t} ← m_{b,t}·1[H_{b,t} ≥ H_(k)]`.
  A filter: masked tokens leave every denominator, as in the paper's implementation, which zeroes
  the response mask of low-entropy tokens. The threshold is taken over the micro-batch that the
  loss phase sees, so with micro-batching the selection is per micro-batch (the paper's is per
  update batch) — the only transform whose result depends on the split. Default frac = 0.2.
  Requires `entropy`. Logs `top_entropy/threshold` and `top_entropy/kept_frac`.
  """
  if not 0.0 < frac <= 1.0:
    raise ValueError(f"top_entropy frac must be in (0, 1], got {frac}")

  def apply(ctx: LossContext) -> LossContext:
    ctx.check_loss_phase(by="top_entropy")
    h = jax.lax.stop_gradient(ctx.require("entropy", by="top_entropy"))
    valid = ctx.mask > 0
    flat = jnp.where(valid, h, -jnp.inf).reshape(-1)
    n_valid = jnp.sum(valid)
    k = jnp.clip(jnp.ceil(frac * n_valid).astype(jnp.int32), 1, flat.shape[0])
    ordered = -jnp.sort(-flat)                               # descending
    threshold = ordered[k - 1]
    keep = (valid & (h >= threshold)).astype(ctx.mask.dtype)
    threshold = jnp.where(n_valid > 0, threshold, 0.0)
    return ctx.replace(mask=ctx.mask * keep).log(**{
        # One value per micro-batch: the logged mean is the average threshold over micro-batches.
        "top_entropy/threshold": Mean(threshold, jnp.ones_like(threshold)),
        "top_entropy/kept_frac": ctx.masked_mean(keep),
    })

  return stateless(apply, requires={"entropy"}, phase="loss")

