"""Array helpers shared by transforms: group statistics and KL estimators.

Group statistics go through `group_stats`: it reshapes `[B]` to `[P, G]` when groups are contiguous
and of equal size (works on batch-sharded arrays on Explicit and Auto meshes), and falls back to
`jax.ops.segment_*` with the static `ctx.num_groups` for ragged groups given by `ctx.group_ids`
(on a batch-sharded array of an Explicit mesh, reduced from a replicated copy of the B values).
"""
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from jaxrl_llm.objectives.context import LossContext

KL_ESTIMATORS = ("k1", "k2", "k3")


class GroupStats(NamedTuple):
  """Per-row statistics of the row's group, broadcast back to `[B]`."""
  mean: Float[Array, " B"]
  std: Float[Array, " B"]       # sqrt(Σ(x−μ)²/(n−ddof)); 0 where n − ddof <= 0
  count: Float[Array, " B"]     # n, the size of the row's group


def _contiguous(ctx: LossContext) -> bool:
  return ctx.group_size is not None and ctx.group_size * ctx.num_groups == ctx.batch_size


def _batch_shards(x: Array) -> int:
  """How many ways the leading axis of `x` is sharded in its *type* (Explicit meshes), else 1."""
  sharding = getattr(jax.typeof(x), "sharding", None)
  spec = getattr(sharding, "spec", None)
  if not spec or spec[0] is None:
    return 1
  axes = spec[0] if isinstance(spec[0], tuple) else (spec[0],)
  return math.prod(sharding.mesh.shape[a] for a in axes)


def _per_group(x: Array, ctx: LossContext, reduce_pg, reduce_seg) -> Array:
  """Applies a per-group reduction and broadcasts its value back to every row of the group."""
  if _contiguous(ctx):
    p, g = ctx.num_groups, ctx.group_size
    if p % _batch_shards(x):
      # On an Explicit mesh, [B] -> [P, G] keeps the batch sharding only when the shards hold
      # whole groups (P divisible by the shard count). Otherwise a group spans devices: gather
      # the per-row vector (B scalars, cheap) and compute the statistics replicated.
      x = jax.sharding.reshard(x, jax.sharding.PartitionSpec())
    r = reduce_pg(x.reshape(p, g))                              # [P]
    return jnp.broadcast_to(r[:, None], (p, g)).reshape(p * g)
  ids = ctx.group_ids
  if _batch_shards(x) > 1 or _batch_shards(ids) > 1:
    # Ragged groups on an Explicit mesh: a segment reduction of a batch-sharded [B] into
    # [num_groups] is a scatter whose output sharding JAX cannot pick. Reduce replicated (B
    # scalars gathered, cheap) and read each row's value back with the sharded ids, so the result
    # keeps the rows' sharding (that of `x`, else of the ids).
    replicated = jax.sharding.PartitionSpec()
    r = reduce_seg(jax.sharding.reshard(x, replicated), jax.sharding.reshard(ids, replicated),
                   num_segments=ctx.num_groups)                 # [num_groups], replicated
    rows = x if _batch_shards(x) > 1 else ids
    return r.at[ids].get(out_sharding=jax.typeof(rows).sharding)
  r = reduce_seg(x, ids, num_segments=ctx.num_groups)           # [num_groups]
  return r[ids]


def group_sum(x: Float[Array, " B"], ctx: LossContext) -> Float[Array, " B"]:
  """`Σ_{j ∈ G(b)} x_j` for every row `b`."""
  return _per_group(x, ctx, lambda y: jnp.sum(y, axis=1), jax.ops.segment_sum)


def group_stats(x: Float[Array, " B"], ctx: LossContext, *, ddof: int = 1) -> GroupStats:
  """Mean, std (with `ddof`, Bessel by default) and size of each row's group.

  μ_k = (1/n_k) Σ_{b∈G_k} x_b,  σ_k = sqrt( Σ_{b∈G_k} (x_b − μ_k)² / (n_k − ddof) ).
  """
  if x.shape != (ctx.batch_size,):
    raise ValueError(f"group_stats takes a per-row [B] array, got shape {x.shape}")
  count = group_sum(jnp.ones_like(x), ctx)
  mean = group_sum(x, ctx) / count
  sq = group_sum(jnp.square(x - mean), ctx)
  dof = count - ddof
  std = jnp.where(dof > 0, jnp.sqrt(sq / jnp.where(dof > 0, dof, 1.0)), 0.0)
  return GroupStats(mean, std, count)


def group_all_equal(x: Float[Array, " B"], ctx: LossContext) -> Bool[Array, " B"]:
  """True on every row of a group whose values are all equal (max == min, exactly)."""
  hi = _per_group(x, ctx, lambda y: jnp.max(y, axis=1), jax.ops.segment_max)
  lo = _per_group(x, ctx, lambda y: jnp.min(y, axis=1), jax.ops.segment_min)
  return hi == lo


def kl_estimate(logp: Float[Array, "*shape"], ref_logp: Float[Array, "*shape"],
                estimator: str = "k3") -> Float[Array, "*shape"]:
  """Per-token estimate of KL(π_θ ‖ π_ref) from sampled tokens (Schulman, "Approximating KL").

  With x = ref_logp − logp:  k1 = −x,  k2 = ½x²,  k3 = exp(x) − x − 1 (unbiased, ≥ 0, low variance).
  Gradients w.r.t. logp: 1, logp − ref_logp, 1 − exp(ref_logp − logp).
  """
  if estimator not in KL_ESTIMATORS:
    raise ValueError(f"unknown KL estimator {estimator!r}; valid estimators: {KL_ESTIMATORS}")
  x = ref_logp - logp
  if estimator == "k1":
    return -x
  if estimator == "k2":
    return 0.5 * jnp.square(x)
  return jnp.expm1(x) - x
