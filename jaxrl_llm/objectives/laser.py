"""LaSeR, last-token self-rewarding (Yang et al., arXiv 2510.14943, ICLR 2026; spec B8).

The optimal solution of a KL-regularised self-verification objective makes the verifier reward of
a solution equal β_v times the difference between the policy's log-probability of a pre-chosen
token z right after the solution and the reference's log-probability of it. LaSeR regresses this
"last-token self-rewarding score" on the verifier reward with an auxiliary MSE loss, and after a
warm-up mixes a group-normalised version of it into the advantage.

  s_b   = β_v · (τ · sr_logp_b − c_ref)              sr_logp_b = log π_θ(z | q_b, o_b), [B]
  L_SR  = (1/N) Σ_b u_b w_b (s_b − r_b)²             u_b = 1[row not truncated]
  w_b   = N_u / (2 N_correct) if r_b = 1 else N_u / (2 N_incorrect)   (balanced; else 1)
  L     = L_GRPO + α_SR · L_SR
  ŝ_b   = clip(sg(s_b), 0, 1) (0 if truncated)
  Â^SR_b = (ŝ_b − mean_k ŝ) / std_k ŝ if std_k ŝ > τ_f else A_b
  A'_b  = (1 − ω) A_b + ω Â^SR_b                                   (after `warmup_steps`)

Three transforms (the `laser` preset chains them):

  self_reward_weights    rollout: u_b w_b and the batch's loss normaliser, once per rollout batch
  self_reward_loss       loss: the α_SR·L_SR term, differentiable through `extras["sr_logp"]`
  self_reward_advantage  rollout (or loss): the advantage integration A' = (1 − ω)A + ωÂ^SR

`sr_logp` is the trainer's: the forward pass appends z after each row's last completion token and
puts log π_θ(z | ...) at that position in `ctx.extras["sr_logp"]` ([B], differentiable in the
loss phase). The released code puts z one position after the EOS token and multiplies the
log-probability by the sampling temperature τ (`temperature` here). Truncated rows (no stop token)
get u_b = 0: their z would follow an unfinished solution (the code's `mask_indicator`).

How the auxiliary loss stays exact under micro-batching. The trainer differentiates each
micro-batch's `ctx.loss.total` and divides the summed gradient by the summed `ctx.loss.count`
(`aggregation.py`: the count is tokens for token_mean, non-empty rows N' for the seq-mean modes,
all rows N for seq_mean_token_sum_norm). A row-mean α·(1/N)Σ_b q_b must therefore enter the total
as α·(C/N)·Σ_b q_b with C the count of the whole batch, which no micro-batch knows. So
`self_reward_weights` computes C/N once on the whole rollout batch (rollout phase, for the same
aggregation mode) and folds it into each row's weight `extras["sr_weight"] = u_b w_b C/N`;
`self_reward_loss` then adds a per-token term "sr" before `aggregate` whose row contribution to the
total is exactly α·sr_weight_b·(s_b − r_b)² (spread over the row's valid tokens as the mode
requires). Totals are sums over rows, so any micro-batch split adds up to the same total and
gradient: Σ total / C = L_pg + α L_SR exactly when the optimizer step sees the whole rollout batch
(one minibatch, LaSeR's setting). With several minibatches each one's SR term is scaled by
(C/N of the batch) / (C/N of the minibatch): exactly 1 for the seq-mean modes when no row is
empty and for seq_mean_token_sum_norm, the ratio of mean lengths (≈ 1) for token_mean.

Where the advantage integration runs. It needs sg(s_b) of π_old, the policy that sampled the
batch (the released code computes it in the same pass as the old log-probs). In the rollout phase
(default) it reads `extras["sr_logp"]` from the trainer's rollout forward pass, computed with the
parameters that sampled the batch. `phase="loss"` reads sg of the current pass's `sr_logp`
instead: identical on the first update of every batch (π_θ = π_old), so identical overall with one
update per batch and one minibatch (LaSeR's setting); it needs whole groups in every micro-batch.
"""
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from jaxrl_llm.objectives.aggregation import check_mode
from jaxrl_llm.objectives.base import LossTransform, stateless
from jaxrl_llm.objectives.context import LossContext, Mean
from jaxrl_llm.objectives.numerics import group_stats

SR_PHASES = ("rollout", "loss")
_SR_FIX = ("the trainer puts it there when the objective requires 'sr_logp' (the forward pass "
           "appends the self-reward token z after each completion); when building the context "
           "by hand, put the [B] log-probabilities in extras['sr_logp']")
def _requires(sr_token: int | None) -> frozenset[str]:
  """{"sr_logp"} and the trainer's tag naming z ("sr_token=<id>", `training.forward.sr_token_tag`;
  without it the batch must carry `extras["sr_token"]`)."""
  tag = {f"sr_token={int(sr_token)}"} if sr_token is not None else set()
  return frozenset({"sr_logp"} | tag)


_WEIGHT_FIX = ("put self_reward_weights(...) in the rollout phase before the loss (the `laser` "
               "preset does)")


def self_reward_score(sr_logp: Float[Array, " B"], beta_v: float = 0.1, c_ref: float = -23.0,
                      temperature: float = 1.0) -> Float[Array, " B"]:
  """LaSeR's last-token self-rewarding score `s_b = β_v·(τ·sr_logp_b − c_ref)`.

  `c_ref` is the reference model's log-probability of z, a constant in the released runs (−23);
  τ is the sampling temperature the released code multiplies the log-probability by.
  """
  return beta_v * (temperature * sr_logp - c_ref)


def _valid_rows(ctx: LossContext, by: str) -> Float[Array, " B"]:
  """u_b: 1 for rows that finished (not truncated) and have at least one valid token."""
  truncated = ctx.require("truncated", by=by, fix="the loop puts the sampler's `truncated` flags "
                          "in ctx.extras; when building the context by hand, pass "
                          "extras={'truncated': ...}")
  dtype = ctx.mask.dtype
  return (1.0 - jnp.asarray(truncated, dtype)) * (ctx.lengths > 0).astype(dtype)


def _count_per_row(ctx: LossContext, mode: str, count_empty_rows: bool) -> Float[Array, ""]:
  """C/N: the aggregation's count of the whole batch over its number of rows."""
  n = jnp.asarray(ctx.batch_size, ctx.mask.dtype)
  if mode == "token_mean":
    count = jnp.sum(ctx.mask)
  elif mode == "seq_mean_token_sum_norm" or count_empty_rows:
    count = n
  else:
    count = jnp.sum((ctx.lengths > 0).astype(ctx.mask.dtype))
  return count / n


def self_reward_weights(balanced: bool = True, aggregation: str = "token_mean",
                        count_empty_rows: bool = False, correct_threshold: float = 0.5
                        ) -> LossTransform:
  """The per-row weights of LaSeR's self-reward loss, on the whole rollout batch. Rollout phase.

    u_b = 1[not truncated and |o_b| > 0];  N_u = Σ u;  correct_b = 1[r_b ≥ threshold]
    w_b = N_u / (2 N_correct) for correct rows, N_u / (2 N_incorrect) for the others (balanced),
          else 1   (counts over the u = 1 rows; the formula as given: with one class absent the
          other's weight is 1/2)
    extras["sr_weight"] = u_b w_b C/N,  extras["sr_target"] = r_b

  C/N is the batch's aggregation count per row for `aggregation` (see the module docstring: it
  makes the auxiliary term exact under micro-batching; give the loss's mode and
  `count_empty_rows`). The target is the reward as it is here, so put this transform before any
  reward shaping: the score regresses on the verifier's reward (LaSeR: 0/1 accuracy). Correct
  means r_b ≥ `correct_threshold` (the spec's r_b = 1 for 0/1 rewards). Logs
  `laser/valid_frac`, `laser/correct_frac` (over the u = 1 rows).
  """
  check_mode(aggregation)

  def apply(ctx: LossContext) -> LossContext:
    ctx.check_rollout_phase(by="self_reward_weights")
    u = _valid_rows(ctx, "self_reward_weights")
    r = ctx.rewards
    correct = (r >= correct_threshold).astype(u.dtype) * u
    incorrect = u - correct
    n_u, n_c, n_i = jnp.sum(u), jnp.sum(correct), jnp.sum(incorrect)
    if balanced:
      w = (correct * n_u / (2.0 * jnp.maximum(n_c, 1.0))
           + incorrect * n_u / (2.0 * jnp.maximum(n_i, 1.0)))
    else:
      w = u
    weight = jax.lax.stop_gradient(w * _count_per_row(ctx, aggregation, count_empty_rows))
    ctx = ctx.replace(extras={**ctx.extras, "sr_weight": weight,
                              "sr_target": jax.lax.stop_gradient(r)})
    return ctx.log(**{"laser/valid_frac": ctx.row_mean(u),
                      "laser/correct_frac": Mean(n_c, n_u)})

  return stateless(apply, phase="rollout")


def self_reward_loss(coef: float = 0.1, beta_v: float = 0.1, c_ref: float = -23.0,
                     temperature: float = 1.0, aggregation: str = "token_mean",
                     norm: float | None = None, sr_token: int | None = None) -> LossTransform:
  """LaSeR's auxiliary loss α_SR·L_SR as the loss term "sr". Loss phase, before `aggregate`.

    s_b = β_v(τ·sr_logp_b − c_ref);  L_SR = (1/N) Σ_b u_b w_b (s_b − r_b)²
    ∂(α_SR L_SR)/∂sr_logp_b = 2 α_SR β_v τ w_b u_b (s_b − r_b) / N   (spec B8 (f)2)

  Reads the differentiable `extras["sr_logp"]` [B] (requires "sr_logp") and `extras["sr_weight"]`,
  `extras["sr_target"]` from `self_reward_weights`. The row quantity α·sr_weight_b·(s_b − r_b)²
  is spread over the row's valid tokens so that `aggregate(aggregation, norm)` adds exactly it to
  the loss total (÷|o_b| per token for token_mean and seq_mean_token_sum, ×L_norm/|o_b| for
  seq_mean_token_sum_norm, as is for seq_mean_token_mean); the module docstring shows why this is
  exact under micro-batching. `aggregation` and `norm` must be the loss's. Defaults (code
  `run_qwen2_5_7b.sh`): α_SR = 0.1, β_v = 0.1, c_ref = −23, τ = 1. Logs `laser/score_mean`,
  `laser/sr_mse` (unweighted, over u = 1 rows) and `laser/sr_accuracy` (1[s_b > ½] = 1[r_b ≥ ½]
  over u = 1 rows: the self-verification accuracy the code reports). `sr_token` is z's id: it goes
  into `requires` as the tag the trainer's forward pass reads (None: the batch names it).
  """
  check_mode(aggregation)
  if norm is not None and norm <= 0:
    raise ValueError(f"self_reward_loss norm (L_norm) must be positive, got {norm}")

  def apply(ctx: LossContext) -> LossContext:
    ctx.check_loss_phase(by="self_reward_loss")
    sr_logp = ctx.require("sr_logp", by="self_reward_loss", fix=_SR_FIX)
    weight = ctx.require("sr_weight", by="self_reward_loss", fix=_WEIGHT_FIX)
    target = ctx.require("sr_target", by="self_reward_loss", fix=_WEIGHT_FIX)
    if sr_logp.shape != (ctx.batch_size,):
      raise ValueError(f"extras['sr_logp'] must be [B] = ({ctx.batch_size},), got "
                       f"{sr_logp.shape}")
    valid = weight > 0
    s = self_reward_score(jnp.where(valid, sr_logp, 0.0), beta_v, c_ref, temperature)
    sq = jnp.square(s - target)
    row = coef * jnp.where(valid, weight * sq, 0.0)              # its share of the loss total
    lengths = jnp.maximum(ctx.lengths, 1.0)
    if aggregation == "seq_mean_token_mean":
      per_token = row
    elif aggregation == "seq_mean_token_sum_norm":
      per_token = row * (ctx.mask.shape[1] if norm is None else norm) / lengths
    else:
      per_token = row / lengths
    ctx = ctx.add_term("sr", ctx.token_broadcast(per_token))
    u = _valid_rows(ctx, "self_reward_loss")
    s_sg = jax.lax.stop_gradient(s)
    agree = ((s_sg > 0.5) == (target >= 0.5)).astype(u.dtype)
    return ctx.log(**{"laser/score_mean": ctx.row_mean(s_sg, u),
                      "laser/sr_mse": ctx.row_mean(jax.lax.stop_gradient(sq), u),
                      "laser/sr_accuracy": ctx.row_mean(agree, u)})

  return stateless(apply, requires=_requires(sr_token), phase="loss")


def self_reward_advantage(omega: float = 0.1, tau_f: float = 0.1, warmup_steps: int = 200,
                          beta_v: float = 0.1, c_ref: float = -23.0, temperature: float = 1.0,
                          eps: float = 1e-6, ddof: int = 1, phase: str = "rollout",
                          sr_token: int | None = None) -> LossTransform:
  """LaSeR's advantage integration (spec B8 (b)), after the advantage estimator. Rollout phase.

    ŝ_b = clip(sg(s_b), 0, 1), 0 for truncated rows
    Â^SR_b = (ŝ_b − mean_k ŝ) / (std_k ŝ + ε) if std_k ŝ > τ_f else A_b      (std with `ddof`)
    A'_b = (1 − ω) A_b + ω Â^SR_b     once ctx.step ≥ warmup_steps, else A'_b = A_b

  Runs after the advantage estimator (reads and rewrites `ctx.advantages`, token level: the
  integration is applied on every valid token, A' stays 0 off the mask). ω = 0, or a step before
  the warm-up, leaves the advantages exactly as they were. `ctx.step` counts optimizer steps (one
  per iteration with one minibatch and one update, as LaSeR runs). `phase` is where it runs and so
  which `sr_logp` it reads (module docstring): "rollout" (default, the rollout forward pass of
  π_old) or "loss" (sg of the current pass; equal on each batch's first update). Defaults (code):
  ω = 0.1, τ_f = 0.1, warm-up 200 steps, β_v = 0.1, c_ref = −23. Logs `laser/integrated`
  (1 after the warm-up) and `laser/sr_adv_group_frac` (rows whose group passes std > τ_f).
  `sr_token`: z's id, as in `self_reward_loss`.
  """
  if phase not in SR_PHASES:
    raise ValueError(f"unknown phase {phase!r} for self_reward_advantage; valid: {SR_PHASES}")

  def apply(ctx: LossContext) -> LossContext:
    if phase == "rollout":
      ctx.check_rollout_phase(by="self_reward_advantage")
    else:
      ctx.check_loss_phase(by="self_reward_advantage")
    sr_logp = ctx.require("sr_logp", by="self_reward_advantage", fix=_SR_FIX)
    adv = ctx.require("advantages", by="self_reward_advantage",
                      fix="put an advantage estimator (group_advantage) before it")
    u = _valid_rows(ctx, "self_reward_advantage")
    s = self_reward_score(jax.lax.stop_gradient(sr_logp), beta_v, c_ref, temperature)
    s_hat = jnp.where(u > 0, jnp.clip(s, 0.0, 1.0), 0.0)
    stats = group_stats(s_hat, ctx, ddof=ddof)
    spread = stats.std > tau_f
    sr_adv = ctx.token_broadcast((s_hat - stats.mean) / (stats.std + eps))
    sr_adv = jnp.where(spread[:, None], sr_adv, adv)
    on = (ctx.step >= warmup_steps).astype(adv.dtype) * omega
    new = jax.lax.stop_gradient(jnp.where(ctx.mask > 0, (1.0 - on) * adv + on * sr_adv, 0.0))
    one = jnp.ones((), adv.dtype)
    return ctx.replace(advantages=new).log(**{
        "laser/integrated": Mean((ctx.step >= warmup_steps).astype(adv.dtype), one),
        "laser/sr_adv_group_frac": ctx.row_mean(spread.astype(adv.dtype))})

  return stateless(apply, requires=_requires(sr_token), phase=phase)
