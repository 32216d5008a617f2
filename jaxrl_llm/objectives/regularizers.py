"""Regularisers: KL to the reference (in the loss, or in the reward) and an entropy bonus.

Weights do not touch them (`STYLE.md` §2.5): their per-token terms go through the same aggregation
as the policy term, which is what TRL (added before aggregation) and verl (aggregated separately
with the same mode) both compute, aggregation being linear.
"""
import jax.numpy as jnp

from jaxrl_llm.objectives.base import LossTransform, ScalarOrSchedule, stateless
from jaxrl_llm.objectives.context import LossContext
from jaxrl_llm.objectives.numerics import KL_ESTIMATORS, kl_estimate


def kl_penalty(coef: ScalarOrSchedule = 0.04, estimator: str = "k3") -> LossTransform:
  """Adds `β · k(logp, ref_logp)` per token, term `kl` (Schulman's k1/k2/k3 estimators). Loss.

  With x = ref_logp − logp: k1 = −x, k2 = ½x², k3 = exp(x) − x − 1 (GRPO's, DeepSeekMath
  arXiv 2402.03300, β = 0.04). `coef` may be a schedule of `ctx.step`. Requires `ref_logp`.
  Logs `kl/mean` (the unscaled estimate over valid tokens).
  """
  if estimator not in KL_ESTIMATORS:
    raise ValueError(f"unknown KL estimator {estimator!r}; valid estimators: {KL_ESTIMATORS}")

  def apply(ctx: LossContext) -> LossContext:
    ctx.check_loss_phase(by="kl_penalty")
    ref = ctx.require("ref_logp", by="kl_penalty")
    valid = ctx.mask > 0
    kl = kl_estimate(jnp.where(valid, ctx.logp, 0.0), jnp.where(valid, ref, 0.0), estimator)
    return ctx.add_term("kl", ctx.at_step(coef) * kl).log(**{"kl/mean": ctx.masked_mean(kl)})

  return stateless(apply, requires={"ref_logp"}, phase="loss")


def kl_in_reward(coef: ScalarOrSchedule = 0.05) -> LossTransform:
  """Folds a k1 KL into the sequence reward (RLOO/REINFORCE++/PPO style). Rollout phase.

    r_b ← r_b − β Σ_t m_{b,t} (old_logp_{b,t} − ref_logp_{b,t})
  Constant w.r.t. the parameters (sampled tokens under π_old). Run it before the advantage
  estimator. `coef` may be a schedule of `ctx.step`; the default 0.05 is only a placeholder (the
  papers tune β per task). Requires `ref_logp`. Logs `kl/in_reward` (per-row Σ_t of the k1 term).
  """
  def apply(ctx: LossContext) -> LossContext:
    ctx.check_rollout_phase(by="kl_in_reward")
    ref = ctx.require("ref_logp", by="kl_in_reward")
    kl_row = jnp.sum(jnp.where(ctx.mask > 0, ctx.old_logp - ref, 0.0) * ctx.mask, axis=1)
    return ctx.replace(rewards=ctx.rewards - ctx.at_step(coef) * kl_row).log(
        **{"kl/in_reward": ctx.row_mean(kl_row)})

  return stateless(apply, requires={"ref_logp"}, phase="rollout")


def entropy_bonus(coef: ScalarOrSchedule = 0.001) -> LossTransform:
  """Adds `−coef · H_{b,t}` per token, term `entropy` (minimising it raises the entropy). Loss.

  `H` is the policy's per-token entropy from the current forward pass (differentiable).
  `coef` may be a schedule of `ctx.step`. Requires `entropy`. Logs `entropy/mean`.
  """
  def apply(ctx: LossContext) -> LossContext:
    ctx.check_loss_phase(by="entropy_bonus")
    h = ctx.require("entropy", by="entropy_bonus")
    h = jnp.where(ctx.mask > 0, h, 0.0)
    return ctx.add_term("entropy", -ctx.at_step(coef) * h).log(
        **{"entropy/mean": ctx.masked_mean(h)})

  return stateless(apply, requires={"entropy"}, phase="loss")
