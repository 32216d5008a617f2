"""Transforms that regroup a rollout batch (`spec/baselines_and_more.md` B2, B4, B5).

  stratified_advantage  advantage (rollout): Stratified GRPO's SAN blended with GRPO (2510.06214)
  copo_advantage        advantage (rollout): COPO's local + global advantages and gate (2508.04138)
  copo_clip             ratio rule (loss): COPO's gated blend of two clipped surrogates
  d3s_downsample        filter (rollout): D3S's variance-maximising rows + top |A|·H tokens
                        (2509.22115)

Each reads per-row inputs the host computes (`extras["stratum"]`, `extras["answer_id"]`, provided
by the `stratum` and `answers` rollout hooks) or the rollout forward's entropy, and keeps every
shape static: regroupings are segment ids with a static number of segments, selections are masks.
Group structure comes from `ctx.group_ids` / `ctx.num_groups`, so ragged groups (explicit
`group_ids`) work like contiguous ones.
"""
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from jaxrl_llm.objectives.advantages import _write, group_advantage
from jaxrl_llm.objectives.base import LossTransform, stateless
from jaxrl_llm.objectives.context import LossContext, Mean
from jaxrl_llm.objectives.numerics import _batch_shards, group_all_equal, group_stats, group_sum
from jaxrl_llm.objectives.ratios import (
    _ADV_FIX, _check_eps, _clip_metrics, _log_ratio, clipped_surrogate)

COPO_GATES = ("soft_with_forced", "only_soft", "only_global", "no_global")
D3S_SCOPES = ("group", "batch")
# ctx.extras names the COPO rollout phase writes for its loss phase.
COPO_GLOBAL_ADV = "copo_global_adv"
COPO_GATE = "copo_gate"


def _check(name: str, value, valid) -> None:
  if value not in valid:
    raise ValueError(f"unknown {name} {value!r}; valid values: {valid}")


def _replicated(x: Array) -> Array:
  """`x` with its batch axis gathered when an Explicit mesh shards it (sorts and segment ops over
  the whole batch need every row; [B] vectors are cheap to gather)."""
  if _batch_shards(x) > 1:
    return jax.sharding.reshard(x, jax.sharding.PartitionSpec())
  return x


def _row_extra(ctx: LossContext, name: str, by: str, fix: str) -> Int[Array, " B"]:
  x = jnp.asarray(ctx.require(name, by=by, fix=fix))
  if x.shape != (ctx.batch_size,):
    raise ValueError(f"`{by}` reads extras[{name!r}] as one integer per row, shape "
                     f"({ctx.batch_size},); got shape {x.shape}")
  return _replicated(x.astype(jnp.int32))


def pair_ids(group_ids: Int[Array, " B"], key: Int[Array, " B"]
             ) -> tuple[Int[Array, " B"], Int[Array, ""]]:
  """Dense ids of the `(group, key)` pairs: rows share an id iff they share group and key.

  Returns (ids in 0..num_pairs−1, num_pairs). The ids index segments of a static count `B` (there
  are at most B distinct pairs), so `jax.ops.segment_*` with `num_segments=B` regroups the batch
  by pair without knowing the number of keys. O(B log B): one lexicographic sort.
  """
  order = jnp.lexsort((key, group_ids))                  # by group, then key
  g, k = group_ids[order], key[order]
  new = jnp.concatenate([jnp.ones((1,), bool), (g[1:] != g[:-1]) | (k[1:] != k[:-1])])
  dense = (jnp.cumsum(new) - 1).astype(jnp.int32)
  return jnp.zeros_like(dense).at[order].set(dense), jnp.sum(new.astype(jnp.int32))


def _regrouped(ctx: LossContext, ids: Int[Array, " B"]) -> LossContext:
  """`ctx` with the rows regrouped by `ids` (B static segments), for `numerics.group_stats`."""
  return ctx.replace(group_ids=ids, num_groups=ctx.batch_size, group_size=None)


def _normalised(x, stats, eps):
  denom = stats.std + eps
  return jnp.where(denom > 0, (x - stats.mean) / jnp.where(denom > 0, denom, 1.0), 0.0)


# --------------------------------------------------------------------------------------------------
# Stratified GRPO (B2)


def stratified_advantage(alpha: float = 0.8, eps: float = 1e-6, max_stratum: int | None = None,
                         key: str = "stratum") -> LossTransform:
  """Stratified GRPO's advantage (Zhu et al., arXiv 2510.06214). Rollout phase.

    S_{k,c} = {b ∈ G_k : stratum_b = c}                    (strata inside each prompt group)
    A^SAN_b = (r_b − μ_{k,c}) / (σ_{k,c} + ε)              (Stratified Advantage Normalisation)
    A^GN_b  = (r_b − μ_k) / (σ_k + ε)                       (GRPO)
    A_b = sg(α·A^SAN_b + (1 − α)·A^GN_b)
  `stratum_b = extras[key][b]` (int [B]; the `stratum` rollout hook counts `<search>` calls);
  strata ≥ `max_stratum` are merged into one. Bessel stds, ε = 1e-6 as GRPO. Rows alone in their
  stratum get A^SAN = 0 (as GRPO's singleton groups). r_b − μ_k = (r_b − μ_{k,c}) + (μ_{k,c} − μ_k):
  the second term is the cross-stratum bias that SAN removes.
  Uncertain in the spec (reconstructions, marked so there): α (not found; 0.8, sweep {0.5, 0.8,
  1}), the singleton rule, strata per prompt group rather than per batch, the merge of large
  counts. Each (group, stratum) pair is a segment of a static count B (`pair_ids`), so strata of
  ragged groups work too. Reads `rewards`, `extras[key]`; writes `advantages`; logs `adv/*`,
  `stratified/num_strata` (mean strata per group), `stratified/cross_bias` (mean |μ_{k,c} − μ_k|
  over rows), `stratified/singleton_frac` (rows alone in their stratum).
  """
  if not 0.0 <= alpha <= 1.0:
    raise ValueError(f"stratified_advantage alpha must be in [0, 1], got {alpha}")
  if max_stratum is not None and max_stratum < 0:
    raise ValueError(f"max_stratum must be >= 0 (or None: no merging), got {max_stratum}")
  fix = (f"turn on the stratum hook (config.hooks.stratum, which counts a regex in each "
         f"completion) or put one integer per row in extras[{key!r}]")

  def apply(ctx: LossContext) -> LossContext:
    ctx.check_rollout_phase(by="stratified_advantage")
    stratum = _row_extra(ctx, key, "stratified_advantage", fix)
    if max_stratum is not None:
      stratum = jnp.minimum(stratum, max_stratum)
    r = ctx.rewards
    gn = group_stats(r, ctx)
    ids, num_pairs = pair_ids(_replicated(ctx.group_ids), stratum)
    san = group_stats(_replicated(r), _regrouped(ctx, ids))
    a_gn = jnp.where(gn.count > 1, _normalised(r, gn, eps), 0.0)
    a_san = jnp.where(san.count > 1, _normalised(_replicated(r), san, eps), 0.0)
    adv = alpha * a_san + (1.0 - alpha) * a_gn
    one = jnp.ones((), r.dtype)
    return _write(ctx, adv).log(**{
        "stratified/num_strata": Mean(num_pairs.astype(r.dtype), ctx.num_groups * one),
        "stratified/cross_bias": ctx.row_mean(jnp.abs(san.mean - gn.mean)),
        "stratified/singleton_frac": ctx.row_mean((san.count <= 1).astype(r.dtype)),
    })

  return stateless(apply, requires={key}, phase="rollout")


# --------------------------------------------------------------------------------------------------
# COPO (B4)


def answer_entropy(answer_id: Int[Array, " B"], ctx: LossContext) -> Float[Array, " B"]:
  """`H_k = −Σ_a p_k(a) log2 p_k(a)` (bits) of each row's group k, from group-local answer ids.

  `answer_id = −1` (no answer extracted) is a class of its own for every such row. Each row b adds
  −(1/n_k) log2(c_b/n_k), c_b = rows of its group with its answer: summed over a class of c rows
  that is −p log2 p.
  """
  ans = _replicated(answer_id.astype(jnp.int32))
  ids, _ = pair_ids(_replicated(ctx.group_ids), ans)
  same = group_stats(_replicated(jnp.ones_like(ctx.rewards)), _regrouped(ctx, ids)).count
  same = jnp.where(ans < 0, 1.0, same)
  n = group_sum(jnp.ones_like(ctx.rewards), ctx)
  return group_sum(-jnp.log2(same / n), ctx) / n


def copo_advantage(kappa: float = 20.0, h0: float = 0.5, gate: str = "soft_with_forced",
                   consistency_discount: bool = False, eps: float = 1e-6,
                   key: str = "answer_id") -> LossTransform:
  """COPO's advantages and gate (Han et al., arXiv 2508.04138; official code). Rollout phase.

    H_k   = −Σ_a p_k(a) log2 p_k(a)          answers of group k (extras[key]; −1: own class)
    R^g_k = c_k · mean_{b∈G_k} r_b,   c_k = 1, or with `consistency_discount` 1 − λH_k,
            λ = (1 − 1/n_k)/log2 n_k
    A^g_b = sg((R^g_{g(b)} − mean_k R^g_k) / (std_k R^g_k + ε))   over the K prompts (Bessel)
    A^l_b = GRPO's (r_b − μ_{g(b)}) / (σ_{g(b)} + ε)
    w_k   = sigmoid(κ(H_k − h0));  gate "soft_with_forced": w_b = w_k·1[A^l_b ≠ 0];
            "only_soft": w_k;  "only_global": 0;  "no_global": 1
  Writes `advantages` = A^l (token level, as `group_advantage`) and, for `copo_clip`, the per-row
  `extras["copo_global_adv"]` = A^g and `extras["copo_gate"]` = w. A^g = 0 when all prompts have
  the same global reward (or K = 1). A row counts as A^l = 0 when its group's rewards are all
  equal (exactly 0 in exact arithmetic). Defaults (code scripts): κ = 20, h0 = 0.5 bits, c_k = 1.
  Which gate the paper's tables use is not confirmed; "soft_with_forced" (spec's reconstruction)
  is the only one that gives all-wrong groups with diverse answers a signal. Answers are compared
  by exact equality of the extracted answer (the `answers` hook's group-local ids).
  Logs `adv/*` (of A^l), `copo/entropy` (bits, mean over rows), `copo/gate_mean`,
  `copo/forced_frac` (rows whose gate was forced to 0), `copo/global_adv_abs_mean`,
  `copo/global_reward_mean`.
  """
  _check("COPO gate", gate, COPO_GATES)
  local = group_advantage("group", eps=eps)
  fix = (f"turn on the answers hook (config.hooks.answers) or put group-local answer ids in "
         f"extras[{key!r}] (−1 where no answer was extracted)")

  def apply(ctx: LossContext) -> LossContext:
    ctx.check_rollout_phase(by="copo_advantage")
    answer_id = _row_extra(ctx, key, "copo_advantage", fix)
    r = ctx.rewards
    h = answer_entropy(answer_id, ctx)
    n = group_sum(jnp.ones_like(r), ctx)
    acc = group_sum(r, ctx) / n
    if consistency_discount:
      lam = (1.0 - 1.0 / n) / jnp.where(n > 1, jnp.log2(jnp.maximum(n, 2.0)), 1.0)
      acc = jnp.where(n > 1, 1.0 - lam * h, 1.0) * acc
    k = ctx.num_groups
    mean = jnp.sum(acc / n) / k                       # every group weighs 1 (its rows 1/n_k)
    var = jnp.sum(jnp.square(acc - mean) / n) / max(k - 1, 1)
    spread = jnp.max(acc) - jnp.min(acc)
    a_global = jnp.where((spread > 0) & (k > 1),
                         (acc - mean) / (jnp.sqrt(var) + eps), 0.0)
    ctx, _ = local.update(ctx, local.init(ctx))
    local_zero = ~jnp.any(ctx.advantages != 0, axis=1) | group_all_equal(r, ctx)
    soft = jax.nn.sigmoid(kappa * (h - h0))
    w = {"soft_with_forced": jnp.where(local_zero, 0.0, soft), "only_soft": soft,
         "only_global": jnp.zeros_like(soft), "no_global": jnp.ones_like(soft)}[gate]
    a_global, w = jax.lax.stop_gradient(a_global), jax.lax.stop_gradient(w)
    extras = {**ctx.extras, COPO_GLOBAL_ADV: a_global, COPO_GATE: w}
    forced = (local_zero if gate == "soft_with_forced" else jnp.zeros_like(local_zero))
    return ctx.replace(extras=extras).log(**{
        "copo/entropy": ctx.row_mean(h),
        "copo/gate_mean": ctx.row_mean(w),
        "copo/forced_frac": ctx.row_mean(forced.astype(r.dtype)),
        "copo/global_adv_abs_mean": ctx.row_mean(jnp.abs(a_global)),
        "copo/global_reward_mean": Mean(mean, jnp.ones_like(mean)),
    })

  return stateless(apply, requires={key}, phase="rollout")


def copo_clip(eps_low: float = 0.2, eps_high: float | None = None,
              dual_clip: float | None = 3.0) -> LossTransform:
  """COPO's per-token blend of a global and a local clipped surrogate. Loss phase.

    ℓ_{b,t} = (1 − w_b)·ℓ^clip(ρ_{b,t}, A^g_b) + w_b·ℓ^clip(ρ_{b,t}, A^l_{b,t});  pg = weights·ℓ
  with ℓ^clip the PPO surrogate of `ratios.clipped_surrogate` (ε_low, ε_high; dual clip c on each
  branch where its advantage is negative: verl's default c = 3, which COPO's code uses; None turns
  it off). A^l = `advantages`, A^g and w from `copo_advantage` (extras "copo_global_adv",
  "copo_gate"). With w ≡ 1 it is `ppo_clip` exactly. Logs `clip/*` and `ratio/mean` (of the
  local branch) and `copo/global_weight` (token mean of 1 − w).
  """
  eps_high = eps_low if eps_high is None else eps_high
  _check_eps(eps_low, eps_high, dual_clip)
  fix = "run copo_advantage in the rollout phase first"

  def apply(ctx: LossContext) -> LossContext:
    ctx.check_loss_phase(by="copo_clip")
    a_local = ctx.require("advantages", by="copo_clip", fix=_ADV_FIX)
    a_global = ctx.token_broadcast(ctx.require(COPO_GLOBAL_ADV, by="copo_clip", fix=fix))
    w = ctx.require(COPO_GATE, by="copo_clip", fix=fix)[:, None]
    ratio = jnp.exp(_log_ratio(ctx))
    loss = ((1.0 - w) * clipped_surrogate(ratio, a_global, eps_low, eps_high, dual_clip)
            + w * clipped_surrogate(ratio, a_local, eps_low, eps_high, dual_clip))
    ctx = ctx.log(**_clip_metrics(ctx, ratio, a_local, eps_low, eps_high, dual_clip))
    ctx = ctx.log(**{"copo/global_weight": ctx.masked_mean(jnp.broadcast_to(1.0 - w,
                                                                             ratio.shape))})
    return ctx.replace(ratio=ratio).add_term("pg", ctx.weights * loss)

  return stateless(apply, phase="loss")


# --------------------------------------------------------------------------------------------------
# D3S (B5)


def _segmented_cumsum(x: Float[Array, " N"], starts: Bool[Array, " N"]) -> Float[Array, " N"]:
  """Inclusive cumulative sum that restarts where `starts` is true (each segment exact alone)."""
  def combine(a, b):
    va, fa = a
    vb, fb = b
    return jnp.where(fb, vb, va + vb), fa | fb
  return jax.lax.associative_scan(combine, (x, starts))[0]


def variance_max_subset(values: Float[Array, " B"], sizes: Int[Array, " B"],
                        group_ids: Int[Array, " B"], num_groups: int) -> Bool[Array, " B"]:
  """In every group, the `sizes` rows (the row's group's subset size) whose values have the
  largest variance: the `j` largest and `size − j` smallest values, best `j` by exact scan.

  For scalars a variance-maximising subset of a given size consists of extremes, so scanning j
  finds the optimum (ties: the smallest j). Exact, O(B log B): rows sorted by (group, value),
  per-group prefix sums of x and x², every row of sorted rank j scores the candidate with j
  largest (j ≤ size). A size ≥ n keeps the whole group.
  """
  b = values.shape[0]
  order = jnp.lexsort((values, group_ids))
  x, g = values[order], group_ids[order]
  pos = jnp.arange(b, dtype=jnp.int32)
  starts = jnp.concatenate([jnp.ones((1,), bool), g[1:] != g[:-1]])
  first = jax.ops.segment_min(pos, g, num_segments=num_groups)[g]      # group's first position
  rank = pos - first                                                     # j of the candidate
  n = jax.ops.segment_sum(jnp.ones_like(pos), g, num_segments=num_groups)[g]
  s = jnp.clip(sizes[order], 1, n)
  c1 = _segmented_cumsum(x, starts)
  c2 = _segmented_cumsum(jnp.square(x), starts)

  def prefix(c, i):           # Σ of the first i sorted values of the row's group
    return jnp.where(i > 0, c[jnp.clip(first + i - 1, 0, b - 1)], 0.0)

  j = rank
  lo = s - j                   # smallest values taken
  s1 = prefix(c1, lo) + prefix(c1, n) - prefix(c1, n - j)
  s2 = prefix(c2, lo) + prefix(c2, n) - prefix(c2, n - j)
  sf = s.astype(x.dtype)
  var = s2 / sf - jnp.square(s1 / sf)
  valid = j <= s
  best = jax.ops.segment_max(jnp.where(valid, var, -jnp.inf), g, num_segments=num_groups)[g]
  best_j = jax.ops.segment_min(jnp.where(valid & (var >= best), j, b), g,
                               num_segments=num_groups)[g]
  keep = (rank < s - best_j) | (rank >= n - best_j)
  return jnp.zeros((b,), bool).at[order].set(keep)


def curriculum(frac: float, ramp_steps: int | None, step) -> Float[Array, ""]:
  """κ(τ) = κ_min + (1 − κ_min)·min(1, τ/τ_ramp) (constant κ_min when `ramp_steps` is None)."""
  frac = jnp.asarray(frac, jnp.float32)
  if ramp_steps is None:
    return frac
  t = jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / ramp_steps)
  return jnp.minimum(1.0, frac + (1.0 - frac) * t)


def d3s_downsample(sample_frac: float = 0.5, token_frac: float = 0.2,
                   ramp_steps: int | None = 100, scope: str = "group") -> LossTransform:
  """D3S, Dynamic Dual-Level Down-Sampling (Wang et al., arXiv 2509.22115). Rollout phase.

    schedule:  κ(τ) = κ_min + (1 − κ_min)·min(1, τ/τ_ramp),  τ = `ctx.step` (optimizer steps)
    rows:      S_k = argmax_{S ⊂ G_k, |S| = ⌈κ_s n_k⌉} Var_{b∈S}(A_b)   (`variance_max_subset`)
    tokens:    score_{b,t} = |A_{b,t}|·H_{b,t} (H: the rollout policy's entropy); keep the tokens
               of kept rows whose score is in the top ⌈κ_t·N⌉, N = valid tokens of kept rows in
               the batch (ties at the threshold kept)
    m'_{b,t} = m_{b,t}·1[b ∈ S_{g(b)}]·1[token kept]        (advantages zeroed likewise)
  Place it after the advantage estimator (advantages come from the full groups). A filter: dropped
  rows and tokens leave every denominator (the preset aggregates with token_mean). κ_s = κ_t = 1
  leaves the batch exactly as it was; raising κ_t never drops a kept token. `scope="batch"` is the
  cross-group variant (one subset over the whole batch). The row advantage is the mean of
  `advantages` over the row's valid tokens.
  Uncertain (no code; the spec marks the details as reconstructions): subset sizes κ_s = 0.5 → 1,
  κ_t = 0.2 → 1, the linear schedule and τ_ramp (half of training; the config sets it), the
  intra-group default. Requires `entropy` (the rollout forward computes it). Logs
  `d3s/kept_rows_frac` (of rows with valid tokens), `d3s/kept_tokens_frac` (of valid tokens),
  `d3s/sample_frac`, `d3s/token_frac` (κ_s, κ_t at this step).
  """
  for name, frac in (("sample_frac", sample_frac), ("token_frac", token_frac)):
    if not 0.0 < frac <= 1.0:
      raise ValueError(f"d3s_downsample {name} must be in (0, 1], got {frac}")
  if ramp_steps is not None and ramp_steps <= 0:
    raise ValueError(f"d3s_downsample ramp_steps must be > 0 (or None: constant fractions), "
                     f"got {ramp_steps}")
  _check("D3S scope", scope, D3S_SCOPES)

  def apply(ctx: LossContext) -> LossContext:
    ctx.check_rollout_phase(by="d3s_downsample")
    h = jax.lax.stop_gradient(ctx.require("entropy", by="d3s_downsample"))
    adv = ctx.require("advantages", by="d3s_downsample", fix=_ADV_FIX)
    valid = ctx.mask > 0
    kappa_s = curriculum(sample_frac, ramp_steps, ctx.step)
    kappa_t = curriculum(token_frac, ramp_steps, ctx.step)
    lengths = ctx.lengths
    a_row = _replicated(jnp.sum(jnp.where(valid, adv, 0.0), axis=1) / jnp.maximum(lengths, 1.0))
    if scope == "group":
      gids, num_groups = _replicated(ctx.group_ids), ctx.num_groups
    else:
      gids, num_groups = jnp.zeros((ctx.batch_size,), jnp.int32), 1
    n = jax.ops.segment_sum(jnp.ones_like(gids), gids, num_segments=num_groups)[gids]
    sizes = jnp.ceil(kappa_s * n.astype(jnp.float32)).astype(jnp.int32)
    rows = variance_max_subset(a_row, sizes, gids, num_groups)
    cand = valid & rows[:, None]
    score = jnp.where(cand, jnp.abs(adv) * jnp.where(valid, h, 0.0), -jnp.inf)
    flat = _replicated(score).reshape(-1)            # the threshold is over the whole batch
    num = jnp.sum(cand)
    k = jnp.clip(jnp.ceil(kappa_t * num.astype(jnp.float32)).astype(jnp.int32), 1, flat.shape[0])
    threshold = -jnp.sort(-flat)[k - 1]
    keep = (cand & (score >= threshold)).astype(ctx.mask.dtype)
    has_tokens = (lengths > 0).astype(ctx.mask.dtype)
    new_mask = ctx.mask * keep
    ctx = ctx.log(**{
        "d3s/kept_rows_frac": ctx.row_mean(rows.astype(ctx.mask.dtype), has_tokens),
        "d3s/kept_tokens_frac": Mean(jnp.sum(new_mask), jnp.sum(ctx.mask)),
        "d3s/sample_frac": Mean(kappa_s, jnp.ones_like(kappa_s)),
        "d3s/token_frac": Mean(kappa_t, jnp.ones_like(kappa_t)),
    })
    return ctx.replace(mask=new_mask, advantages=adv * keep)

  return stateless(apply, requires={"entropy"}, phase="rollout")


__all__ = ["COPO_GATES", "D3S_SCOPES", "answer_entropy", "copo_advantage", "copo_clip",
           "curriculum", "d3s_downsample", "pair_ids", "stratified_advantage",
           "variance_max_subset"]
