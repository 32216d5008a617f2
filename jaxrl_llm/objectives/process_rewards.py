"""Process rewards from a judge, combined with the outcome reward (spec B6, B7).

  ppr_advantage      advantage (rollout): PPR / ReNorm, per-step process scores calibrated by the
                     outcome, normalised over the group's steps, summed over the remaining steps
                     (Xu, Li et al., "Hybrid Reward Normalization for Process-supervised
                     Non-verifiable Agentic Tasks", arXiv 2509.25598)
  posterior_reward   reward (rollout): Posterior-GRPO, the reasoning score counted only on rows
                     whose outcome is correct (Fan et al., arXiv 2508.05170); GRPO follows
  renorm_step_rewards, think_scores   the two formulas on their own (numpy or jax)

The per-step and per-response scores come from the `process_judge` hook
(`jaxrl_llm/training/hooks_judge.py`): a judge LLM (the policy, or another loaded model) asked a
fixed principle rubric, scored as its probability of "Yes" vs "No". It writes
`extras["step_id"]` [B, T] and `extras["step_value"]` [B, S] (unit="step", PPR) or
`extras["proc_score"]` [B] (unit="response", Posterior-GRPO).

Both methods' combination rules are [reconstruction] in the spec (§6): neither paper's formula was
reachable. The readings taken are the spec's stated ones and every choice beyond it is a parameter.
"""
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from jaxrl_llm.objectives.base import LossTransform, stateless
from jaxrl_llm.objectives.context import LossContext, Mean
from jaxrl_llm.objectives.numerics import _per_group, group_sum

THINK_NORMS = ("none", "sigmoid", "minmax")
_PPR_FIX = ("turn on the judge hook (config.hooks.process_judge with unit='step'), which splits "
            "each completion into steps and writes step_id [B, T] and step_value [B, S] (the "
            "judge's score of each step)")
_POSTERIOR_FIX = ("turn on the judge hook (config.hooks.process_judge with unit='response'), "
                  "which writes proc_score [B] (the judge's score of each correct row's reasoning)")


def _check(name: str, value, valid) -> None:
  if value not in valid:
    raise ValueError(f"unknown {name} {value!r}; valid values: {valid}")


def renorm_step_rewards(step_value, outcome):
  """ReNorm's step rewards `r_{b,j} = p_{b,j} + o_b − 1` (spec B6 (b), [reconstruction]).

  `step_value` [B, S] holds the process scores p ∈ [0, 1], `outcome` [B] the outcome o ∈ {0, 1}:
  a correct row's steps earn p ∈ [0, 1], a wrong row's steps are penalised by 1 − p ∈ [0, 1], so
  process quality can never outrank the outcome. Works on NumPy and JAX arrays.
  """
  return step_value + outcome[:, None] - 1.0


def step_counts(step_id: Int[Array, "B T"], mask: Float[Array, "B T"], num_steps: int
                ) -> Float[Array, "B S"]:
  """`n_{b,j}`: the valid tokens of row b in step j (j < num_steps); 0 for steps that do not
  exist. A step exists (is scored and normalised) iff it owns a valid token."""
  onehot = (step_id[:, :, None] == jnp.arange(num_steps, dtype=step_id.dtype)[None, None]) & (
      mask[:, :, None] > 0)
  return jnp.sum(onehot.astype(mask.dtype), axis=1)


def ppr_advantage(eps: float = 1e-6, ddof: int = 1) -> LossTransform:
  """PPR / ReNorm token advantages from per-step process scores (spec B6, [reconstruction]).

    p_{b,j} ∈ [0, 1]  process score of step j of row b;   o_b = r_b (the outcome reward, {0, 1})
    r_{b,j} = p_{b,j} + o_b − 1 ∈ [−1, 1]                                       (ReNorm)
    r̃_{b,j} = (r_{b,j} − μ_k) / (σ_k + ε),  μ_k, σ_k over ALL steps of ALL rows of group k
              (σ with `ddof`, Bessel by default; 0 when the group has ≤ ddof steps)
    A_{b,t} = Σ_{j ≥ j(t)} r̃_{b,j}   on valid tokens t of step j(t)   (DeepSeekMath process
              supervision: a token is credited with its own step and every later one)
  The spec marks both the combination rule and the advantage form as [reconstruction]: the
  ReNorm formula was not reachable; ACCIO-PRM's prototype supports only "one score per step,
  normalised by the judge's max score". Properties: r ∈ [−1, 1]; o = 1 ⇒ r ≥ 0, o = 0 ⇒ r ≤ 0;
  with p ≡ 1, r_{b,j} = o_b, and when every row is one step the advantage is exactly GRPO's.
  Inputs (from the `process_judge` hook, unit="step"):
    extras["step_id"]    int [B, T]: the step j ∈ {0..J_b−1} of each completion token, −1 on
                         padding. A valid token with −1 gets advantage 0.
    extras["step_value"] float [B, S]: step_value[b, j] = p_{b,j} for j < J_b; later columns are
                         padding, never read. Step j of row b exists iff some valid token has
                         step_id j (so S ≥ J_b); rows with no steps get A = 0.
  Statistics go through `numerics.group_sum` (contiguous or ragged groups). Reads `rewards`,
  `mask`; writes `advantages` (detached, 0 off the mask); logs `adv/*`, `ppr/step_reward_mean`,
  `ppr/steps_per_row`, `ppr/process_mean` (mean p over the batch's steps), `reward/mean`.
  """
  if eps < 0 or ddof < 0:
    raise ValueError(f"ppr_advantage needs eps >= 0 and ddof >= 0, got {eps}, {ddof}")

  def apply(ctx: LossContext) -> LossContext:
    ctx.check_rollout_phase(by="ppr_advantage")
    step_id = jnp.asarray(ctx.require("step_id", by="ppr_advantage", fix=_PPR_FIX))
    step_value = jnp.asarray(ctx.require("step_value", by="ppr_advantage", fix=_PPR_FIX))
    if tuple(step_id.shape) != tuple(ctx.mask.shape):
      raise ValueError(f"extras['step_id'] has shape {step_id.shape}; it must be [B, T] = "
                       f"{tuple(ctx.mask.shape)}, the completion tokens' layout")
    if step_value.ndim != 2 or step_value.shape[0] != ctx.batch_size:
      raise ValueError(f"extras['step_value'] has shape {step_value.shape}; it must be [B, S] "
                       f"with B = {ctx.batch_size} (one process score per step)")
    dtype = ctx.mask.dtype
    step_id = step_id.astype(jnp.int32)
    s = step_value.shape[1]
    exists = step_counts(step_id, ctx.mask, s) > 0                          # [B, S]
    valid = exists.astype(dtype)
    p = jnp.where(exists, step_value.astype(dtype), 0.0)
    r = jnp.where(exists, renorm_step_rewards(p, ctx.rewards), 0.0)         # [B, S]
    n = group_sum(jnp.sum(valid, axis=1), ctx)                              # steps of the group
    mu = group_sum(jnp.sum(r, axis=1), ctx) / jnp.maximum(n, 1.0)           # [B]
    dev = jnp.where(exists, r - mu[:, None], 0.0)
    sq = group_sum(jnp.sum(jnp.square(dev), axis=1), ctx)
    dof = n - ddof
    std = jnp.where(dof > 0, jnp.sqrt(sq / jnp.where(dof > 0, dof, 1.0)), 0.0)
    r_tilde = dev / (std[:, None] + eps)                                    # 0 where no step
    suffix = jnp.cumsum(r_tilde[:, ::-1], axis=1)[:, ::-1]                  # Σ_{j' ≥ j}
    has_step = (ctx.mask > 0) & (step_id >= 0) & (step_id < s)
    adv = jnp.take_along_axis(suffix, jnp.clip(step_id, 0, s - 1), axis=1)
    adv = jax.lax.stop_gradient(jnp.where(has_step, adv, 0.0) * ctx.mask)
    steps = jnp.sum(valid)
    one = jnp.ones((), dtype)
    row_adv = jnp.sum(adv, axis=1) / jnp.maximum(ctx.lengths, 1.0)
    return ctx.replace(advantages=adv).log(**{
        "adv/mean": ctx.masked_mean(adv),
        "adv/abs_mean": ctx.masked_mean(jnp.abs(adv)),
        "adv/nonzero_frac": ctx.masked_mean((adv != 0).astype(dtype)),
        "adv/row_mean": ctx.row_mean(row_adv, where=(ctx.lengths > 0)),
        "ppr/step_reward_mean": Mean(jnp.sum(r), steps),
        "ppr/process_mean": Mean(jnp.sum(p), steps),
        "ppr/steps_per_row": Mean(steps / ctx.batch_size, one),
        "reward/mean": ctx.row_mean(ctx.rewards),
    })

  return stateless(apply, requires={"step_id", "step_value"}, phase="rollout")


def think_scores(proc_score: Float[Array, " B"], success: Float[Array, " B"], ctx: LossContext,
                 norm: str = "none") -> Float[Array, " B"]:
  """r^think_b ∈ [0, 1] from the judge's raw scores (spec B7 (b)); only successful rows matter.

    "none":    r^think = proc_score (already in [0, 1]: the `process_judge` hook's P(Yes) is the
               sigmoid of the judge's logit margin z_Yes − z_No)
    "sigmoid": r^think = σ(proc_score), for an unbounded reward-model score
    "minmax":  (s − min_k)/(max_k − min_k) over the successful rows of the row's group k;
               0 when they all score the same (or there is one), so that a constant score gives
               outcome(+format) GRPO exactly
  """
  _check("think_norm", norm, THINK_NORMS)
  s = proc_score
  if norm == "none":
    return s
  if norm == "sigmoid":
    return jax.nn.sigmoid(s)
  ok = success > 0
  hi = _per_group(jnp.where(ok, s, -jnp.inf), ctx, lambda y: jnp.max(y, axis=1),
                  jax.ops.segment_max)
  lo = _per_group(jnp.where(ok, s, jnp.inf), ctx, lambda y: jnp.min(y, axis=1),
                  jax.ops.segment_min)
  span = hi - lo
  spread = ok & (span > 0)
  return jnp.where(spread, (s - jnp.where(spread, lo, 0.0)) / jnp.where(spread, span, 1.0), 0.0)


def posterior_reward(think_norm: str = "none", success_threshold: float = 1.0,
                     think_coef: float = 1.0, format_coef: float = 0.0,
                     format_key: str = "format_reward") -> LossTransform:
  """Posterior-GRPO's success-gated reward (Fan et al., arXiv 2508.05170; spec B7). Rollout.

    r_b ← c_fmt · r^fmt_b + r^out_b + 1[r^out_b ≥ τ] · c_think · r^think_b
    r^out = ctx.rewards (the verifier's outcome, 1 = all tests pass), τ = `success_threshold`
    r^think ∈ [0, 1] from extras["proc_score"] (`think_scores` with `think_norm`)
    r^fmt  = extras[format_key] [B] (e.g. 1 if <think>…</think><answer>… holds), only read when
             c_fmt ≠ 0 (the `process_judge` hook writes it when its `format_regex` is set)
  Follow it with `group_advantage("group")` (GRPO). The spec reconstructs the rule around the
  abstract ([reconstruction], spec §6): the format term and the think-score normalisation are
  not confirmed. Defaults: no format term (our verifiers already check the answer format),
  τ = 1 (the abstract's "r_out = 1"), r^think as the judge gives it. Properties: a failing row's
  reward does not depend on its think score; among a group's passing rows the advantage
  increases with r^think; a constant r^think on passing rows (binary outcomes, no format term)
  gives outcome GRPO's advantages. Reads `rewards`, extras["proc_score"] (and the format
  reward); writes `rewards`; logs `posterior/gated_frac` (rows whose think reward counts),
  `posterior/think_mean` (r^think over those rows), `posterior/outcome_mean` (r^out).
  """
  _check("think_norm", think_norm, THINK_NORMS)
  requires = {"proc_score"} | ({format_key} if format_coef else set())

  def apply(ctx: LossContext) -> LossContext:
    ctx.check_rollout_phase(by="posterior_reward")
    score = jnp.asarray(ctx.require("proc_score", by="posterior_reward", fix=_POSTERIOR_FIX))
    if score.shape != (ctx.batch_size,):
      raise ValueError(f"extras['proc_score'] has shape {score.shape}; it must be [B] = "
                       f"({ctx.batch_size},), one reasoning score per row")
    dtype = ctx.rewards.dtype
    out = ctx.rewards
    success = (out >= success_threshold).astype(dtype)
    think = think_scores(score.astype(dtype), success, ctx, think_norm)
    rewards = out + success * think_coef * think
    if format_coef:
      fmt = jnp.asarray(ctx.require(
          format_key, by="posterior_reward",
          fix=f"set config.hooks.process_judge.format_regex, which writes extras[{format_key!r}]"
              " [B] (1 where the response has the expected format)"))
      if fmt.shape != (ctx.batch_size,):
        raise ValueError(f"extras[{format_key!r}] has shape {fmt.shape}; it must be [B]")
      rewards = rewards + format_coef * fmt.astype(dtype)
    rewards = jax.lax.stop_gradient(rewards)
    return ctx.replace(rewards=rewards).log(**{
        "posterior/gated_frac": ctx.row_mean(success),
        "posterior/think_mean": ctx.row_mean(think, where=success),
        "posterior/outcome_mean": ctx.row_mean(out),
    })

  return stateless(apply, requires=requires, phase="rollout")
