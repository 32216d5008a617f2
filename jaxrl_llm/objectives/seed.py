"""Transforms of the seed papers (`spec/seed_methods.md`, `spec/baselines_and_more.md` B1).

  llds                 regulariser (loss): likelihood-preserving penalty (LLDS, arXiv 2512.04220)
  nsr_clip             ratio rule (loss): near-boundary stochastic rescue (arXiv 2605.22703)
  owpo_weights         advantage weight (loss): one-way reweighting vs π_ref (arXiv 2605.22156)
  reference_refresh    state only: says when the trainer must set π_ref ← π_θ (OWPO's ratchet)
  low_prob_weights     advantage weight (any): A' = (1 + α(1 − p_old))·A (arXiv 2603.22117)
  divergence_weights   advantage weight (loss): sigmoid of the k3 divergence (arXiv 2603.22446)
  unlikeliness_reward  reward shaping (rollout): rank penalty on likely correct samples (2506.02355)
  future_kl_weights    advantage weight (loss): FIPO's discounted Future-KL (arXiv 2603.19835)

Advantage reweightings multiply `ctx.advantages` by a detached positive weight, so the sign of the
advantage never changes and every denominator stays as it is (`STYLE.md` §2.5). Methods that read
`logp − old_logp` are exact no-ops on the first update of a rollout batch (π_θ = π_old); their
presets are meant to run with `mu >= 2` updates per batch (`spec/seed_methods.md` §0).
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from jaxrl_llm.objectives.base import LossTransform, ScalarOrSchedule, stateless
from jaxrl_llm.objectives.context import LossContext, Mean
from jaxrl_llm.objectives.numerics import _batch_shards, _contiguous
from jaxrl_llm.objectives.ratios import _ADV_FIX, _check_eps, clipped_surrogate

LLDS_GATES = ("action", "response", "token")
LLDS_NORMS = ("per_response", "token_mean")
NSR_LEVELS = ("token", "sequence")
OWPO_SOURCES = ("current", "old")
UNLIKELINESS_VARIANTS = ("code", "paper")
# Log-ratios are clamped to ±this before exp (spec §8, numerics).
_MAX_LOG_RATIO = 20.0


def _check(name: str, value, valid) -> None:
  if value not in valid:
    raise ValueError(f"unknown {name} {value!r}; valid values: {valid}")


def _valid_log_ratio(ctx: LossContext, other: Float[Array, "B T"]) -> Float[Array, "B T"]:
  """`logp − other` on valid tokens, 0 on padding (which may hold any finite junk)."""
  return jnp.where(ctx.mask > 0, ctx.logp - other, 0.0)


def _scale_advantages(ctx: LossContext, w: Float[Array, "B T"], by: str, ns: str
                      ) -> LossContext:
  """`A ← sg(w)·A` and logs the weight's mean, min and max over valid tokens."""
  adv = ctx.require("advantages", by=by, fix=_ADV_FIX)
  w = jax.lax.stop_gradient(jnp.where(ctx.mask > 0, w, 1.0))
  valid = ctx.mask > 0
  one = jnp.ones((), w.dtype)
  w_max = jnp.max(jnp.where(valid, w, -jnp.inf), initial=-jnp.inf)
  w_min = jnp.min(jnp.where(valid, w, jnp.inf), initial=jnp.inf)
  any_valid = jnp.any(valid)
  return ctx.replace(advantages=adv * w).log(**{
      f"{ns}/weight_mean": ctx.masked_mean(w),
      f"{ns}/weight_std": _masked_std(ctx, w),
      f"{ns}/weight_max": Mean(jnp.where(any_valid, w_max, 1.0), one),
      f"{ns}/weight_min": Mean(jnp.where(any_valid, w_min, 1.0), one),
  })


def _masked_std(ctx: LossContext, x: Float[Array, "B T"]) -> Mean:
  n = jnp.maximum(jnp.sum(ctx.mask), 1.0)
  mu = ctx.masked_sum(x) / n
  var = ctx.masked_sum(jnp.square(x - mu)) / n
  return Mean(jnp.sqrt(var), jnp.ones((), x.dtype))


# --------------------------------------------------------------------------------------------------
# LLDS


def action_sums(x: Float[Array, "B T"], mask: Float[Array, "B T"]) -> Float[Array, "B T"]:
  """For every valid token, `Σ_{k ∈ S(t)} x_k` over its action `S(t)`; 0 off the mask.

  An action is a maximal run of `mask == 1` in a row (tool/observation tokens, `mask = 0`, split
  actions). O(T): inclusive cumulative sums differenced at each run's first and last index.
  """
  valid = mask > 0
  _, t = mask.shape
  idx = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32)[None, :], mask.shape)
  prev = jnp.pad(valid[:, :-1], ((0, 0), (1, 0)), constant_values=False)
  nxt = jnp.pad(valid[:, 1:], ((0, 0), (0, 1)), constant_values=False)
  first = jax.lax.cummax(jnp.where(valid & ~prev, idx, 0), axis=1)
  last = jax.lax.cummin(jnp.where(valid & ~nxt, idx, t - 1), axis=1, reverse=True)
  csum = jnp.cumsum(jnp.where(valid, x, 0.0), axis=1)
  csum0 = jnp.pad(csum, ((0, 0), (1, 0)))                           # csum0[:, i] = Σ_{k<i}
  total = (jnp.take_along_axis(csum0, last + 1, axis=1)
           - jnp.take_along_axis(csum0, first, axis=1))
  return jnp.where(valid, total, 0.0)


def llds(coef: ScalarOrSchedule = 0.2, gate: str = "action", norm: str = "per_response",
         answer_coef: ScalarOrSchedule | None = None, answer_key: str = "answer_mask"
         ) -> LossTransform:
  """LLDS, Lazy-Likelihood-Displacement Suppression (Deng et al., arXiv 2512.04220). Loss phase.

    Δ_{b,t} = old_logp_{b,t} − logp_{b,t}                (> 0: the token's likelihood fell)
    P = {b : Â_b ≥ 0}                                     (preserving set: correct / zero-adv rows)
    gate "action" (default): G_{b,t} = 1[Σ_{k∈S(t)} Δ_{b,k} > 0], S(t) = t's action, a maximal
      run of mask 1 (tool/observation tokens split actions);  "response": G_b = 1[Σ_t m Δ > 0];
      "token": G = 1 (every token with Δ > 0 of a preserving row)
    term llds_{b,t} = λ · c · 1[b∈P] · sg(G_{b,t}) · w_{b,t} · max(0, Δ_{b,t})
  The term goes through the objective's aggregation, like every regulariser here. `norm`:
    "per_response" (paper Eq. 4): c = N'/|P| over the rows the loss sees, so with
      seq_mean_token_mean aggregation L = (λ/|P|) Σ_{b∈P} (1/L_b) Σ_t G w max(0, Δ) exactly;
      |P| is counted per (micro-)batch, so micro-batches do not add up exactly to the full batch.
    "token_mean" (official code): c = 1; with token_mean aggregation this is the code's
      Σ m 1[P] G max(0, Δ) λ / Σ m (denominator includes negative-advantage rows). Exact across
      micro-batches.
  The two differ by a batch-dependent scalar. ∂llds/∂logp = −λc·G·w on tokens with Δ > 0 and
  exactly 0 where the likelihood rose (Δ ≤ 0), on rows with Â < 0, and when logp == old_logp.
  LLDS-MA (answer masking): with `answer_coef` β set, `w = β` on tokens where
  `extras[answer_key]` (a [B, T] answer-span mask) is 1 and 1 elsewhere (w = 1 without it). β may
  be a schedule of `ctx.step` (the paper's β = min(V_s/2, 1) needs the batch's search-call count:
  compute it in the trainer and pass a schedule). The penalty weights only, not the gate.
  Defaults (paper): λ = 0.2 (0.3 for Qwen2.5-7B-Instruct), action gate, paper normalisation.
  Base recipe: Search-R1 GRPO (ε = 0.2, k3 KL 0.001, seq_mean_token_mean) or GSPO. Needs ≥ 2
  optimiser steps per rollout batch (mu >= 2): on the first, logp == old_logp and LLDS is 0.
  Reads `logp`, `old_logp`, `advantages`, `mask` (its runs); writes term `llds`; logs
  `llds/active_frac` (penalised fraction of valid tokens), `llds/penalty` (mean max(0, Δ) over
  penalised tokens' rows), `llds/preserving_frac` (rows).
  """
  _check("LLDS gate", gate, LLDS_GATES)
  _check("LLDS norm", norm, LLDS_NORMS)

  def apply(ctx: LossContext) -> LossContext:
    ctx.check_loss_phase(by="llds")
    adv = ctx.require("advantages", by="llds", fix=_ADV_FIX)
    valid = ctx.mask > 0
    delta = jnp.where(valid, ctx.old_logp - ctx.logp, 0.0)
    sg_delta = jax.lax.stop_gradient(delta)
    rows = jnp.any(valid, axis=1)
    preserve = rows & jnp.all(jnp.where(valid, adv >= 0, True), axis=1)          # [B]
    if gate == "action":
      g = action_sums(sg_delta, ctx.mask) > 0
    elif gate == "response":
      g = jnp.broadcast_to((jnp.sum(sg_delta, axis=1) > 0)[:, None], delta.shape)
    else:
      g = jnp.ones(delta.shape, bool)
    on = valid & g & preserve[:, None] & (sg_delta > 0)
    penalty = jnp.where(on, delta, 0.0)            # max(0, Δ), gradient 0 where Δ <= 0
    w = jnp.ones_like(delta)
    if answer_coef is not None:
      answer = jnp.asarray(ctx.require(answer_key, by="llds",
                                       fix=f"LLDS-MA reads the answer-span mask "
                                           f"extras[{answer_key!r}] ([B, T], 1 inside "
                                           "<answer>...</answer>)")) > 0
      w = jnp.where(answer, ctx.at_step(answer_coef), 1.0)
    scale = ctx.at_step(coef)
    if norm == "per_response":
      n_rows = jnp.sum(rows.astype(delta.dtype))
      n_pres = jnp.sum(preserve.astype(delta.dtype))
      scale = scale * jax.lax.stop_gradient(n_rows / jnp.maximum(n_pres, 1.0))
    on_f = on.astype(delta.dtype)
    return ctx.add_term("llds", scale * w * penalty).log(**{
        "llds/active_frac": ctx.masked_mean(on_f),
        "llds/penalty": ctx.masked_mean(penalty),
        "llds/preserving_frac": ctx.row_mean(preserve.astype(delta.dtype), rows),
    })

  return stateless(apply, phase="loss")


# --------------------------------------------------------------------------------------------------
# NSR


def nsr_rescue_probability(ratio: Float[Array, "..."], adv: Float[Array, "..."], eps_low: float,
                           eps_high: float, u_min: float) -> Float[Array, "..."]:
  """`P(rescue)` of a clipped token under `u ~ U(u_min, 1)`; 0 where clipping is not active.

    P_up(ρ)   = clip(((1+ε_high)/ρ − u_min) / (1 − u_min), 0, 1)   for A > 0, ρ > 1+ε_high
    P_down(ρ) = clip((ρ/(1−ε_low) − u_min) / (1 − u_min), 0, 1)    for A < 0, ρ < 1−ε_low
  """
  width = jnp.maximum(1.0 - u_min, 1e-12)
  up = (adv > 0) & (ratio > 1.0 + eps_high)
  down = (adv < 0) & (ratio < 1.0 - eps_low)
  safe = jnp.maximum(ratio, 1e-30)
  p_up = jnp.clip(((1.0 + eps_high) / safe - u_min) / width, 0.0, 1.0)
  p_down = jnp.clip((ratio / max(1.0 - eps_low, 1e-12) - u_min) / width, 0.0, 1.0)
  if u_min >= 1.0:
    return jnp.zeros_like(ratio)
  return jnp.where(up, p_up, jnp.where(down, p_down, 0.0))


def nsr_clip(eps_low: float = 0.2, eps_high: float = 0.28, u_min: float | None = None,
             dual_clip: float | None = None, level: str = "token", stochastic: bool = True
             ) -> LossTransform:
  """Clipping with Near-boundary Stochastic Rescue (arXiv 2605.22703, "Clipping Bottleneck"). Loss.

  A ratio rule replacing `ppo_clip` (level "token", DAPO) or `gspo_clip` (level "sequence", GSPO).
  Where clipping kills the gradient (A > 0, ρ > 1+ε_high; or A < 0, ρ < 1−ε_low), draw
  u ~ Uniform(u_min, 1) from `ctx.rng`; the token is rescued if the perturbed ratio falls back
  inside the trust region:
    rescued = [A > 0, ρ > 1+ε_high, u·ρ ≤ 1+ε_high]  or  [A < 0, ρ < 1−ε_low, ρ/u ≥ 1−ε_low]
    ℓ = −ρ·A if rescued (the unclipped term, gradient through ρ), else the clipped ℓ_clip(ρ, A)
    (with dual clip c where A < 0 when `dual_clip` is set);  pg = w · ℓ
  Tokens inside the trust region or where clipping is inactive are untouched; beyond the band edge
  ρ_max = (1+ε_high)/u_min (resp. ρ_min = (1−ε_low)·u_min) nothing is rescued. Level "sequence":
  the same rule on GSPO's s_b = exp((1/|o_b|) Σ_t m(logp − old_logp)) with one u per row, so a
  row is rescued all or none (gradient through s_b, GSPO's sequence form).
  `stochastic=False` is the deterministic-decay ablation: ℓ = P·(−ρA) + (1−P)·ℓ_clip on clipped
  tokens with the detached rescue probability P (`nsr_rescue_probability`), the mean of the
  stochastic loss. `u_min = 1` gives hard clipping exactly.
  Defaults: DAPO's ε = (0.2, 0.28) (pass GSPO's (3e-4, 4e-4) with level "sequence"), u_min =
  1/(1+ε_high), no dual clip. Reconstruction: the noise law (uniform, multiplicative), the band
  (u_min) and "inside-region tokens are never perturbed" are our reading; only the mechanism is
  sourced. Randomness: `ctx.rng` (required), one key per optimiser step; with micro-batches the
  trainer should fold the micro-batch index into it (the draw is per (micro-)batch, so split
  losses differ from the full batch's in which tokens are rescued, not in distribution). Needs
  ρ ≠ 1, i.e. mu >= 2 updates per batch. Reads `logp`, `old_logp`, `advantages`, `weights`,
  `rng`; writes `ratio`, term `pg`; logs `nsr/rescued_frac`, `nsr/clipped_frac`, `ratio/mean`.
  """
  _check("NSR level", level, NSR_LEVELS)
  _check_eps(eps_low, eps_high, dual_clip)
  u_min = 1.0 / (1.0 + eps_high) if u_min is None else float(u_min)
  if not 0.0 <= u_min <= 1.0:
    raise ValueError(f"nsr_clip u_min must be in [0, 1], got {u_min}")

  def apply(ctx: LossContext) -> LossContext:
    ctx.check_loss_phase(by="nsr_clip")
    adv = ctx.require("advantages", by="nsr_clip", fix=_ADV_FIX)
    if stochastic:
      key = ctx.require("rng", by="nsr_clip",
                        fix="pass rng=jax.random.PRNGKey(...) to LossContext.create / from_batch "
                            "(one key per optimiser step)")
    valid = ctx.mask > 0
    log_ratio = jnp.clip(_valid_log_ratio(ctx, ctx.old_logp), -_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    if level == "token":
      ratio = jnp.exp(log_ratio)
      noise_shape = ratio.shape
    else:
      s = jnp.sum(log_ratio * ctx.mask, axis=1) / jnp.maximum(ctx.lengths, 1.0)
      ratio = jnp.broadcast_to(jnp.exp(s)[:, None], ctx.mask.shape)
      noise_shape = (ctx.batch_size, 1)
    r = jax.lax.stop_gradient(ratio)
    up = (adv > 0) & (r > 1.0 + eps_high)
    down = (adv < 0) & (r < 1.0 - eps_low)
    clipped = clipped_surrogate(ratio, adv, eps_low, eps_high, dual_clip)
    unclipped = -ratio * adv
    prob = nsr_rescue_probability(r, adv, eps_low, eps_high, u_min)
    if stochastic:
      u = jax.random.uniform(key, noise_shape, r.dtype, minval=u_min, maxval=1.0)
      u = jnp.broadcast_to(u, r.shape)
      rescued = (up & (u * r <= 1.0 + eps_high)) | (down & (r >= (1.0 - eps_low) * u))
      rescued = rescued & valid & (u_min < 1.0)
      loss = jnp.where(rescued, unclipped, clipped)
      rescued_f = rescued.astype(r.dtype)
    else:
      p = jax.lax.stop_gradient(prob)
      loss = p * unclipped + (1.0 - p) * clipped
      rescued_f = p
    return ctx.replace(ratio=ratio).add_term("pg", ctx.weights * loss).log(**{
        "nsr/rescued_frac": ctx.masked_mean(rescued_f),
        "nsr/clipped_frac": ctx.masked_mean((up | down).astype(r.dtype)),
        "nsr/rescue_prob_mean": ctx.masked_mean(prob),
        "ratio/mean": ctx.masked_mean(r),
    })

  return stateless(apply, phase="loss")


# --------------------------------------------------------------------------------------------------
# OWPO


def owpo_weights(eps_acc: float = 0.5, eps_lock: float = 0.2, deviation_source: str = "current"
                 ) -> LossTransform:
  """OWPO's one-way asymmetric advantage reweighting against π_ref (arXiv 2605.22156). Loss.

    d_{b,t} = sign(Â_{b,t}) · (logp_{b,t} − ref_logp_{b,t})       (directional deviation, detached)
    w_{b,t} = clip(exp(−d_{b,t}), 1 − ε_lock, 1 + ε_acc)
    A'_{b,t} = sg(w_{b,t}) · Â_{b,t}
  d < 0 (the policy lags the reference in the verifier's direction) gives w > 1, "Accelerated
  Alignment"; d > 0 (already ahead) gives w < 1, "Gain Locking". w > 0, so sign(A') = sign(Â)
  always ("one way"), and logp == ref_logp gives w = 1 (a freshly refreshed reference is a no-op).
  `deviation_source`: "current" uses the current logp (detached; default), "old" the rollout's
  old_logp (fixed per batch). Pair with `reference_refresh(every=K)`, which tells the trainer to
  set π_ref ← π_θ every K steps (the "Ratchet Effect"), and use no KL-to-reference term.
  Defaults: ε_acc = 0.5, ε_lock = 0.2. Reconstruction: only the structure is sourced (directional
  deviation, asymmetric stop-gradient weight, refresh every K); the map clip(exp(−d)), the clip
  bounds and the deviation source are our reading (modelled on FIPO's weight map). Requires
  `ref_logp`. Reads `logp`/`old_logp`, `ref_logp`, `advantages`; writes `advantages`; logs
  `owpo/weight_*`, `owpo/inferior_frac` (fraction of valid tokens with d < 0).
  """
  _check("OWPO deviation_source", deviation_source, OWPO_SOURCES)
  if eps_acc < 0 or not 0 <= eps_lock < 1:
    raise ValueError(f"owpo_weights needs eps_acc >= 0 and 0 <= eps_lock < 1, got "
                     f"eps_acc={eps_acc}, eps_lock={eps_lock}")

  def apply(ctx: LossContext) -> LossContext:
    if deviation_source == "current":
      ctx.check_loss_phase(by="owpo_weights")
    ref = ctx.require("ref_logp", by="owpo_weights")
    adv = ctx.require("advantages", by="owpo_weights", fix=_ADV_FIX)
    pol = ctx.logp if deviation_source == "current" else ctx.old_logp
    dev = jax.lax.stop_gradient(jnp.where(ctx.mask > 0, pol - ref, 0.0))
    d = jnp.sign(adv) * jnp.clip(dev, -_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    w = jnp.clip(jnp.exp(-d), 1.0 - eps_lock, 1.0 + eps_acc)
    ctx = _scale_advantages(ctx, w, "owpo_weights", "owpo")
    return ctx.log(**{"owpo/inferior_frac": ctx.masked_mean((d < 0).astype(w.dtype))})

  return stateless(apply, requires={"ref_logp"},
                   phase="loss" if deviation_source == "current" else "any")


class RefreshState(NamedTuple):
  """State of `reference_refresh`: `refresh` is true when the trainer must set π_ref ← π_θ now."""
  refresh: Bool[Array, ""]
  last_refresh_step: Int[Array, ""]
  num_refreshes: Int[Array, ""]


def reference_refresh(every: int = 50) -> LossTransform:
  """OWPO's "Ratchet": asks the trainer to replace π_ref by π_θ every K optimiser steps. Any phase.

  Changes nothing in the context; its state (`RefreshState`) carries the decision:
    refresh = (step > 0) and (step mod K == 0),   step = `ctx.step` (optimiser steps so far)
  The trainer reads it with `refresh_due(objective_state)` after the update and, when true, copies
  the policy parameters into the reference (later batches then get `ref_logp` from the new
  reference). Idempotent within a step (several micro-batches of one step agree). Default K = 50
  (reconstruction: K is not given in the sources; sweep {25, 50, 100}). Logs
  `owpo/refreshes` (the count so far).
  """
  if every < 1:
    raise ValueError(f"reference_refresh every must be >= 1, got {every}")

  def init_fn(ctx):
    del ctx
    return RefreshState(jnp.zeros((), bool), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

  def update_fn(ctx, state):
    step = jnp.asarray(ctx.step, jnp.int32)
    due = (step > 0) & (step % every == 0)
    new = due & (state.last_refresh_step != step)
    state = RefreshState(
        refresh=due,
        last_refresh_step=jnp.where(due, step, state.last_refresh_step),
        num_refreshes=state.num_refreshes + new.astype(jnp.int32))
    one = jnp.ones((), ctx.mask.dtype)
    ctx = ctx.log(**{"owpo/refreshes": Mean(state.num_refreshes.astype(one.dtype), one)})
    return ctx, state

  return LossTransform(init_fn, update_fn, frozenset(), "any")


def refresh_due(objective_state) -> Bool[Array, ""]:
  """True when a `reference_refresh` anywhere in `objective_state` asks for π_ref ← π_θ now."""
  found = [s for s in jax.tree.leaves(objective_state,
                                      is_leaf=lambda x: isinstance(x, RefreshState))
           if isinstance(s, RefreshState)]
  if not found:
    return jnp.zeros((), bool)
  return jnp.any(jnp.stack([s.refresh for s in found]))


# --------------------------------------------------------------------------------------------------
# Direction of RLVR (Δlog p) and Sparse-but-Critical


def low_prob_weights(alpha: float = 0.2) -> LossTransform:
  """Low-probability reweighting from "Direction of RLVR updates" (Δlog p, arXiv 2603.22117). Any.

    p_old = exp(old_logp);  A'_{b,t} = (1 + α(1 − p_old_{b,t})) · Â_{b,t}   (weight detached)
  Weights lie in [1, 1 + α], strictly decreasing in p_old; applied to both signs of Â. α = 0 is
  the base objective. Default α = 0.2 (the sources give α ∈ [0.1, 0.2]). Reads only `old_logp`
  and `advantages`, so it runs in either phase. Reconstruction: the form is from two secondary
  readings that agree, not from the paper text. Logs `lowprob/weight_*`.
  """
  if alpha < 0:
    raise ValueError(f"low_prob_weights alpha must be >= 0, got {alpha}")

  def apply(ctx: LossContext) -> LossContext:
    p_old = jnp.exp(jnp.minimum(jnp.where(ctx.mask > 0, ctx.old_logp, 0.0), 0.0))
    return _scale_advantages(ctx, 1.0 + alpha * (1.0 - p_old), "low_prob_weights", "lowprob")

  return stateless(apply)


def divergence_weights(alpha: float = 200.0, scale: float = 0.3) -> LossTransform:
  """Divergence-weighted advantage ("Sparse but Critical", arXiv 2603.22446). Loss phase.

    δ = logp − old_logp;  KL_{b,t} = exp(δ) − 1 − δ  (k3 of KL(π_old‖π_θ) on the sampled token, ≥ 0)
    w_{b,t} = 1 + s·(σ(α·KL_{b,t}) − ½);  A' = sg(w)·Â   (σ the logistic function)
  α > 0 boosts high-divergence tokens (w ∈ [1, 1 + s/2)); α < 0 boosts low-divergence ones
  (w ∈ (1 − s/2, 1]). s = 0, α = 0 or logp == old_logp give w = 1 (the base, DAPO). Defaults:
  s = 0.3 (weights ≈ [0.85, 1.15]); α = 200. Reconstruction: |α| is not in the sources; 200 is
  chosen for KL values of 1e-4–1e-1 (check `divergence/weight_*`). Needs mu >= 2 (else KL = 0).
  Reads `logp`, `old_logp`, `advantages`; writes `advantages`; logs `divergence/weight_*`,
  `divergence/kl_mean`.
  """
  if scale < 0 or scale > 2:
    raise ValueError(f"divergence_weights scale s must be in [0, 2] (w > 0), got {scale}")

  def apply(ctx: LossContext) -> LossContext:
    ctx.check_loss_phase(by="divergence_weights")
    delta = jax.lax.stop_gradient(
        jnp.clip(_valid_log_ratio(ctx, ctx.old_logp), -_MAX_LOG_RATIO, _MAX_LOG_RATIO))
    kl = jnp.expm1(delta) - delta
    w = 1.0 + scale * (jax.nn.sigmoid(alpha * kl) - 0.5)
    ctx = _scale_advantages(ctx, w, "divergence_weights", "divergence")
    return ctx.log(**{"divergence/kl_mean": ctx.masked_mean(kl)})

  return stateless(apply, phase="loss")


# --------------------------------------------------------------------------------------------------
# Rewarding the Unlikely


def _ranks(x: Float[Array, "P G"], same: Bool[Array, "P G G"] | None = None
           ) -> Float[Array, "P G"]:
  """Ascending rank along the last axis (0 = smallest; ties broken by position)."""
  g = x.shape[-1]
  pos = jnp.arange(g)
  xj, xb = x[:, None, :], x[:, :, None]                                    # [P, G(b), G(j)]
  before = (xj < xb) | ((xj == xb) & (pos[None, None, :] < pos[None, :, None]))
  if same is not None:
    before = before & same
  return jnp.sum(before, axis=-1).astype(x.dtype)


def _group_rank(x: Float[Array, " B"], ctx: LossContext) -> tuple[Float[Array, " B"],
                                                                  Float[Array, " B"]]:
  """Ascending rank of each row within its group (0 = smallest; ties by row order), group size.

  Contiguous groups: `[B] -> [P, G]` (resharded to replicated first when a group spans devices,
  as `numerics.group_stats` does). Ragged groups: pairwise comparisons over the (replicated) batch.
  """
  b = ctx.batch_size
  if _contiguous(ctx):
    p, g = ctx.num_groups, ctx.group_size
    if p % _batch_shards(x):
      x = jax.sharding.reshard(x, jax.sharding.PartitionSpec())
    rank = _ranks(x.reshape(p, g)).reshape(b)
    return rank, jnp.full_like(rank, float(g))
  if _batch_shards(x) > 1:
    x = jax.sharding.reshard(x, jax.sharding.PartitionSpec())
  ids = ctx.group_ids
  same = ids[:, None] == ids[None, :]
  rank = _ranks(x[None, :], same[None])[0]
  return rank, jnp.sum(same, axis=1).astype(x.dtype)


def unlikeliness_reward(beta: float = 0.25, variant: str = "code") -> LossTransform:
  """Unlikeliness reward ("Rewarding the Unlikely", He, Fried & Welleck, arXiv 2506.02355). Rollout.

    ℓ̄_b = Σ_t m_{b,t} old_logp_{b,t} / |o_b|         (mean token log-prob under π_old)
    u_b = ascending rank of ℓ̄_b among the n rows of its group (0 = least likely; ties by row order)
    "code" (default):  r'_b = r_b · (1 − β·u_b/n)
    "paper":           r'_b = r_b · (1 − β·(u_b + 1)/n)   (rank from the top, n − rank_b = u_b + 1)
  Ranks are over all n rows of the group (incorrect ones included); with binary rewards incorrect
  rows keep r' = 0, so a group with no correct sample is unchanged; the most likely correct sample
  is penalised most. β = 0 is the identity. Run it before the advantage estimator. Default β =
  0.25 (official code). The paper's recipe also drops groups with 0 or n successes
  (`drop_uniform_groups` before this) and uses 2 PPO epochs per batch (mu = 2: more updates per
  batch also reduce rank bias). Reads `rewards`, `old_logp`, `mask`; writes `rewards`; logs
  `unlikely/penalty_mean` (mean r − r' over rows).
  """
  _check("unlikeliness variant", variant, UNLIKELINESS_VARIANTS)

  def apply(ctx: LossContext) -> LossContext:
    ctx.check_rollout_phase(by="unlikeliness_reward")
    valid = ctx.mask > 0
    mean_logp = (jnp.sum(jnp.where(valid, ctx.old_logp, 0.0), axis=1)
                 / jnp.maximum(ctx.lengths, 1.0))
    rank, n = _group_rank(mean_logp, ctx)
    offset = 0.0 if variant == "code" else 1.0
    rewards = ctx.rewards * (1.0 - beta * (rank + offset) / n)
    return ctx.replace(rewards=rewards).log(
        **{"unlikely/penalty_mean": ctx.row_mean(ctx.rewards - rewards)})

  return stateless(apply, phase="rollout")


# --------------------------------------------------------------------------------------------------
# FIPO


def future_kl(delta: Float[Array, "B T"], gamma: float) -> Float[Array, "B T"]:
  """`F_t = Σ_{k≥t} γ^{k−t} δ_k` per row (the recurrence F_t = δ_t + γF_{t+1}, reverse scan)."""
  def step(carry, d):
    f = d + gamma * carry
    return f, f
  _, out = jax.lax.scan(step, jnp.zeros_like(delta[:, 0]), delta.T, reverse=True)
  return out.T


def future_kl_weights(half_life: float = 32.0, eps_low: float = 0.2, eps_high: float = 0.2,
                      clip_high_only: bool = False, participation: float = 10.0,
                      safety_threshold: float = 4.0, safety_low: float = 0.8,
                      safety_high: float = 1.0) -> LossTransform:
  """FIPO's Future-KL influence weight (arXiv 2603.19835, qwenpilot/FIPO). Loss phase.

    δ_{b,k} = logp − old_logp (detached);  m_{b,k} = mask · 1[ρ_{b,k} ≤ c]
    γ = 2^(−1/τ);  F_{b,t} = Σ_{k≥t} γ^{k−t} m_{b,k} δ_{b,k}      (this token and its future)
    f = clip(exp(F), 1 − ε_f,low, 1 + ε_f,high)     ("clip_high_only": clip(exp(F), 1, 1 + ε_high))
    f ← clip(f, 0.8, 1.0) where Â < 0 and ρ > κ     (safety cap)
    A' = sg(f) · Â
  Then DAPO's loss with dual clip c (the preset `fipo` uses `ppo_clip(0.2, 0.28, dual_clip=c)`).
  F stays within each row; padding contributes nothing (f = 1 there). logp == old_logp gives f = 1,
  i.e. DAPO. Defaults: τ = 32 tokens, ε_f = 0.2 both sides (official 32B run; ms-swift defaults
  to high-only [1, 1.2]), participation threshold c = 10, safety κ = 4 with cap [0.8, 1.0].
  Needs mu >= 2 (on-policy single-step FIPO is DAPO). Reads `logp`, `old_logp`, `advantages`;
  writes `advantages`; logs `fipo/weight_*` (`fipo/weight_std` > 0 once ρ moves),
  `fipo/future_kl_mean`.
  """
  if half_life <= 0:
    raise ValueError(f"future_kl_weights half_life must be > 0, got {half_life}")
  gamma = 2.0 ** (-1.0 / half_life)
  low, high = (1.0, 1.0 + eps_high) if clip_high_only else (1.0 - eps_low, 1.0 + eps_high)

  def apply(ctx: LossContext) -> LossContext:
    ctx.check_loss_phase(by="future_kl_weights")
    adv = ctx.require("advantages", by="future_kl_weights", fix=_ADV_FIX)
    delta = jax.lax.stop_gradient(
        jnp.clip(_valid_log_ratio(ctx, ctx.old_logp), -_MAX_LOG_RATIO, _MAX_LOG_RATIO))
    ratio = jnp.exp(delta)
    part = (ctx.mask > 0) & (ratio <= participation)
    f_kl = jnp.where(ctx.mask > 0, future_kl(jnp.where(part, delta, 0.0), gamma), 0.0)
    f = jnp.clip(jnp.exp(jnp.clip(f_kl, -_MAX_LOG_RATIO, _MAX_LOG_RATIO)), low, high)
    unsafe = (adv < 0) & (ratio > safety_threshold)
    f = jnp.where(unsafe, jnp.clip(f, safety_low, safety_high), f)
    ctx = _scale_advantages(ctx, f, "future_kl_weights", "fipo")
    return ctx.log(**{"fipo/future_kl_mean": ctx.masked_mean(f_kl)})

  return stateless(apply, phase="loss")


# --------------------------------------------------------------------------------------------------
# THR

THR_KEEP_MODES = ("anchor", "quantile")
THR_STEP_WEIGHTS = ("seq_mean_token_mean", "token_mean")


def thr_scores(hidden: Float[Array, "P N D"], tokens: Int[Array, "P N"],
               valid: Bool[Array, "P N"], correct: Bool[Array, "P N"],
               unembedding: Float[Array, "V D"], logz: Float[Array, "P N"]
               ) -> Float[Array, "P N"]:
  """`s_{j,k} = g_{j,k}ᵀ M⁺ h_{j,k}`, `M⁺ = Σ_{correct (i,k')} g_{i,k'} h_{i,k'}ᵀ`, per group.

  `N = G·T` positions of a group. `g = e_y − π(·)` restricted to V*, the distinct token ids the
  group sampled (each id counted once, at its first valid position), without renormalisation;
  `π(v) = exp(h·W_v − logZ)`. Costs O(N²·D) per group (the logits of every position on V*).
  """
  emb = unembedding[tokens]                                                   # [P, N, D]
  logits = jnp.einsum("pad,pnd->pan", hidden, emb)                            # [P, N(a), N(v)]
  probs = jnp.exp(logits - logz[:, :, None])
  same = tokens[:, :, None] == tokens[:, None, :]                             # [P, N, N]
  n = tokens.shape[1]
  earlier = jnp.arange(n)[None, :] < jnp.arange(n)[:, None]                   # [N(v), N(m)]
  dup = jnp.any(same & earlier[None] & valid[:, None, :], axis=-1)            # [P, N(v)]
  in_vocab = valid & ~dup
  g = jnp.where(in_vocab[:, None, :], same.astype(probs.dtype) - probs, 0.0)
  g = jnp.where(valid[:, :, None], g, 0.0)
  pos = (valid & correct).astype(g.dtype)
  m_plus = jnp.einsum("pan,pad->pnd", g * pos[:, :, None], hidden)           # [P, N, D]
  return jnp.einsum("pan,pnd,pad->pa", g, m_plus, hidden)


def thr_weights(p: float = 0.2, beta: float = 1.0, keep_mode: str = "anchor",
                quantile: float = 0.15, step_weight: str = "seq_mean_token_mean",
                correct_reward: float = 1.0, unembedding_key: str = "unembedding",
                logz_key: str = "logz") -> LossTransform:
  """THR (Token Hidden Reward) reweighting (Deng et al., arXiv 2510.03669). Loss phase.

  Per group, from final-layer hidden states h (`ctx.hidden`, detached) and the unembedding W
  (`extras[unembedding_key]`, [V, D]):
    g_{j,k} = e_{y_{j,k}} − π(·|…) on V* (distinct ids sampled in the group, no renormalisation)
    M⁺ = Σ_{i correct} Σ_{k'} g_{i,k'} h_{i,k'}ᵀ;   s_{j,k} = g_{j,k}ᵀ M⁺ h_{j,k}
    THR_{j,k} = c_j · Â_{j,k} · s_{j,k}     (c_j = 1/L_j for "seq_mean_token_mean", 1/Σ_b L_b for
                                             "token_mean": the base loss's step weight)
    keep = 1[|THR| > τ]: "anchor" τ = β · min_{i correct} (1/L_i) Σ_k |THR_{i,k}|;
           "quantile": the top `quantile` fraction of the group's valid tokens by |THR|
    w = keep · (1 + p·sign(THR));  A' = sg(w) · Â
  Groups without both a correct (reward ≥ `correct_reward`) and an incorrect row get w = 1.
  Dropped tokens get weight 0 (denominators unchanged). p > 0 favours exploitation (Pass@1),
  p < 0 exploration (Pass@K). π uses the full-vocabulary log-normaliser `extras[logz_key]` when
  given ([B, T], from the forward pass), else logsumexp(h Wᵀ) (materialises [B, T, V]).
  Defaults: p = 0.2, β = 1 (anchor rule), quantile 0.15 (the reported 14–18 % retention).
  Reconstruction: the THR score is rebuilt from NTHR (arXiv 2505.18830); c_j, the anchor
  threshold and |p| are our reading. Another reading: the spec computes h and π under π_old;
  here h is the current pass's hidden state (equal to π_old's on the first update of a batch).
  Needs contiguous groups in the loss phase (micro-batches holding whole groups). Requires
  `hidden`. Writes `advantages`; logs `thr/kept_frac`, `thr/positive_frac`, `thr/weight_*`.
  """
  _check("THR keep_mode", keep_mode, THR_KEEP_MODES)
  _check("THR step_weight", step_weight, THR_STEP_WEIGHTS)
  if not 0.0 < quantile <= 1.0:
    raise ValueError(f"thr_weights quantile must be in (0, 1], got {quantile}")

  def apply(ctx: LossContext) -> LossContext:
    ctx.check_loss_phase(by="thr_weights")
    hidden = jax.lax.stop_gradient(ctx.require("hidden", by="thr_weights"))
    adv = ctx.require("advantages", by="thr_weights", fix=_ADV_FIX)
    tokens = ctx.require("tokens", by="thr_weights")
    w_out = jax.lax.stop_gradient(jnp.asarray(ctx.require(
        unembedding_key, by="thr_weights",
        fix=f"put the unembedding matrix [V, D] in extras[{unembedding_key!r}]")))
    if not _contiguous(ctx):
      raise ValueError("`thr_weights` needs contiguous groups of equal size in the loss phase "
                       "(LossContext group_size, micro-batches holding whole groups)")
    b, t, d = hidden.shape
    pg, gs = ctx.num_groups, ctx.group_size
    valid = ctx.mask > 0
    h = jnp.where(valid[:, :, None], hidden, 0.0).astype(jnp.float32)
    logz = ctx.extras.get(logz_key)
    if logz is None:
      logz = jax.nn.logsumexp(jnp.einsum("btd,vd->btv", h, w_out.astype(h.dtype)), axis=-1)
    logz = jnp.where(valid, jax.lax.stop_gradient(jnp.asarray(logz, h.dtype)), 0.0)
    correct_row = ctx.rewards >= correct_reward
    correct = jnp.broadcast_to(correct_row[:, None], valid.shape)
    flat = lambda x: x.reshape((pg, gs * t) + x.shape[2:])  # noqa: E731
    s = thr_scores(flat(h), flat(jnp.where(valid, tokens, 0)), flat(valid), flat(correct),
                   w_out.astype(h.dtype), flat(logz)).reshape(b, t)
    lengths = jnp.maximum(ctx.lengths, 1.0)
    c = (1.0 / lengths if step_weight == "seq_mean_token_mean"
         else jnp.full_like(lengths, 1.0 / jnp.maximum(jnp.sum(ctx.mask), 1.0)))
    thr = jnp.where(valid, c[:, None] * adv * s.astype(adv.dtype), 0.0)
    mag = jnp.abs(thr)
    if keep_mode == "anchor":
      row_mean = jnp.sum(mag, axis=1) / lengths                                  # [B]
      cand = jnp.where(correct_row & (ctx.lengths > 0), row_mean, jnp.inf).reshape(pg, gs)
      tau = beta * jnp.min(cand, axis=1)                                         # [P]
      tau = jnp.broadcast_to(tau[:, None], (pg, gs)).reshape(b)[:, None]
    else:
      gmag = jnp.where(valid, mag, -jnp.inf).reshape(pg, gs * t)
      n_valid = jnp.sum(valid.reshape(pg, gs * t), axis=1)
      k = jnp.clip(jnp.ceil(quantile * n_valid).astype(jnp.int32), 1, gs * t)
      kth = jnp.take_along_axis(-jnp.sort(-gmag, axis=1), (k - 1)[:, None], axis=1)  # [P, 1]
      tau = jnp.broadcast_to(kth, (pg, gs)).reshape(b)[:, None]
      # The top-k tokens are kept (ties at the threshold included).
      mag = jnp.where(mag >= tau, jnp.inf, 0.0)
      tau = jnp.zeros_like(tau)
    keep = valid & (mag > tau)
    n_correct = jnp.sum(correct_row.reshape(pg, gs), axis=1)
    mixed = (n_correct > 0) & (n_correct < gs)
    mixed = jnp.broadcast_to(mixed[:, None], (pg, gs)).reshape(b)[:, None]
    w = jnp.where(mixed, keep * (1.0 + p * jnp.sign(thr)), 1.0)
    ctx = _scale_advantages(ctx, w, "thr_weights", "thr")
    mixed_tok = (mixed & valid).astype(w.dtype)
    return ctx.log(**{
        "thr/kept_frac": Mean(ctx.masked_sum(keep * mixed_tok), ctx.masked_sum(mixed_tok)),
        "thr/positive_frac": ctx.masked_mean((thr > 0).astype(w.dtype)),
    })

  return stateless(apply, requires={"hidden"}, phase="loss")
