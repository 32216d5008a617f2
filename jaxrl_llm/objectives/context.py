"""The carrier of a loss computation: `LossContext`, and exact-accumulation pairs `Mean`.

A `LossContext` is a pytree that flows through a chain of loss transforms. Batch inputs carry no
gradient (they are detached once, by `LossContext.create` / `LossContext.from_batch`); the
outputs of the current forward pass (`logp`, `entropy`, `hidden`) are differentiable. Transforms
build up `advantages`, `weights`, `ratio`, named per-token `terms`, and finally `loss`, a
`Mean(total, count)` pair whose totals and counts add across micro-batches and devices.

Shape letters: `B` sequences (rows), `T` completion tokens, `P` prompts, `G` group size (`B = P·G`,
groups contiguous unless built from explicit `group_ids`).
"""
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct
from jaxtyping import Array, Float, Int

PHASES = ("rollout", "loss")

# Fields that come from the current forward pass: the only differentiable inputs.
_FORWARD_FIELDS = ("logp", "entropy", "hidden")
# Fields the trainer computes on request (a transform's `requires`).
_COMPUTED_FIELDS = _FORWARD_FIELDS + ("ref_logp",)


class Mean(NamedTuple):
  """A mean kept as a (total, count) pair so that it adds exactly across micro-batches and devices.

  `value()` is `total / max(count, 1)`. Sum totals and counts first (`merge`, `sum_means`), divide
  last: that is how the trainer gets the full-batch loss and gradient from k micro-batches.
  """
  total: Float[Array, ""]
  count: Float[Array, ""]

  def value(self) -> Float[Array, ""]:
    return self.total / jnp.maximum(self.count, 1.0)

  def merge(self, other: "Mean") -> "Mean":
    return Mean(self.total + other.total, self.count + other.count)


def sum_means(means) -> Mean:
  """Adds a sequence of `Mean`s (totals and counts separately)."""
  means = list(means)
  out = means[0]
  for m in means[1:]:
    out = out.merge(m)
  return out


def _detach(tree):
  return jax.tree.map(jax.lax.stop_gradient, tree)


@struct.dataclass
class LossContext:
  """Everything a loss transform may read or write (a pytree; see `STYLE.md` §2.2).

  Batch inputs (detached): `tokens`, `mask`, `old_logp`, `ref_logp`, `rewards`, `group_ids`,
  `extras` (e.g. `sampler_logp`, `truncated`, `lengths`), `step`, `rng`.
  Forward outputs (differentiable): `logp` (None in the rollout phase), `entropy`, `hidden`.
  Built by transforms: `advantages` (token level, 0 off-mask), `weights` (default 1; never changes a
  denominator), `ratio`, `terms` (per-token loss terms by name, add-only), `loss`, `metrics`
  (`"<ns>/<quantity>"` -> `Mean`).
  Static: `group_size` (None when groups are given by explicit, possibly ragged, `group_ids`),
  `num_groups`, and `phase` (None, "rollout" or "loss"), used for the phase checks.
  """
  mask: Float[Array, "B T"]
  old_logp: Float[Array, "B T"]
  rewards: Float[Array, " B"]
  group_ids: Int[Array, " B"]
  weights: Float[Array, "B T"]
  step: Int[Array, ""]
  logp: Float[Array, "B T"] | None = None
  ref_logp: Float[Array, "B T"] | None = None
  tokens: Int[Array, "B T"] | None = None
  entropy: Float[Array, "B T"] | None = None
  hidden: Float[Array, "B T D"] | None = None
  advantages: Float[Array, "B T"] | None = None
  ratio: Float[Array, "B T"] | None = None
  rng: Any = None
  extras: dict[str, Any] = struct.field(default_factory=dict)
  terms: dict[str, Float[Array, "B T"]] = struct.field(default_factory=dict)
  metrics: dict[str, Mean] = struct.field(default_factory=dict)
  loss: Mean | None = None
  group_size: int | None = struct.field(pytree_node=False, default=None)
  num_groups: int = struct.field(pytree_node=False, default=1)
  phase: str | None = struct.field(pytree_node=False, default=None)

  # ----------------------------------------------------------------------------------------------
  # Construction
  @classmethod
  def create(
      cls,
      *,
      mask: Float[Array, "B T"],
      rewards: Float[Array, " B"],
      logp: Float[Array, "B T"] | None = None,
      old_logp: Float[Array, "B T"] | None = None,
      ref_logp: Float[Array, "B T"] | None = None,
      group_size: int | None = None,
      group_ids: Int[Array, " B"] | None = None,
      num_groups: int | None = None,
      tokens: Int[Array, "B T"] | None = None,
      entropy: Float[Array, "B T"] | None = None,
      hidden: Float[Array, "B T D"] | None = None,
      advantages: Float[Array, "B T"] | None = None,
      weights: Float[Array, "B T"] | None = None,
      extras: Mapping[str, Any] | None = None,
      step: int | Int[Array, ""] = 0,
      rng: Any = None,
      phase: str | None = None,
  ) -> "LossContext":
    """Builds a context from `[B, T]` arrays and `[B]` rewards; batch leaves are detached.

    Groups: pass `group_size=G` for contiguous groups of equal size (rows `i*G .. i*G+G-1` are the
    completions of prompt `i`; `B` must be a multiple of `G`), or `group_ids` with a static
    `num_groups` for ragged groups (statistics then use segment sums). With neither, every row is
    its own group. `old_logp=None` means one update per rollout batch: `old_logp = sg(logp)`, as
    TRL does when it skips the recomputation.
    """
    if phase not in (None,) + PHASES:
      raise ValueError(f"phase must be one of {(None,) + PHASES}, got {phase!r}")
    mask = jnp.asarray(mask)
    if mask.ndim != 2:
      raise ValueError(f"mask must be [B, T], got shape {mask.shape}")
    b, t = mask.shape
    dtype = jnp.result_type(logp) if logp is not None else (
        jnp.result_type(old_logp) if old_logp is not None else jnp.float32)
    if not jnp.issubdtype(dtype, jnp.floating):
      dtype = jnp.float32
    mask = mask.astype(dtype)
    if old_logp is None:
      if logp is None:
        raise ValueError("LossContext.create needs old_logp (rollout phase) or logp (then "
                         "old_logp = stop_gradient(logp), one update per batch)")
      old_logp = jax.lax.stop_gradient(logp)
    rewards = jnp.asarray(rewards, dtype)
    for name, x, shape in (("old_logp", old_logp, (b, t)), ("ref_logp", ref_logp, (b, t)),
                           ("logp", logp, (b, t)), ("entropy", entropy, (b, t)),
                           ("advantages", advantages, (b, t)), ("weights", weights, (b, t)),
                           ("tokens", tokens, (b, t)), ("rewards", rewards, (b,))):
      if x is not None and tuple(jnp.shape(x)) != shape:
        raise ValueError(f"{name} must have shape {shape} (mask is [B, T] = {(b, t)}), "
                         f"got {tuple(jnp.shape(x))}")
    if group_size is not None:
      if group_ids is not None:
        raise ValueError("pass either group_size (contiguous groups) or group_ids, not both")
      if group_size < 1 or b % group_size:
        raise ValueError(f"group_size={group_size} must divide the batch size B={b} "
                         "(groups are contiguous: B = P*G)")
      group_ids = jnp.arange(b, dtype=jnp.int32) // group_size
      num_groups = b // group_size
    elif group_ids is not None:
      if num_groups is None:
        raise ValueError("group_ids needs a static num_groups (an int), for segment sums in jit")
      group_ids = jnp.asarray(group_ids, jnp.int32)
    else:
      group_size, num_groups = 1, b
      group_ids = jnp.arange(b, dtype=jnp.int32)
    ctx = cls(
        mask=mask,
        old_logp=jnp.asarray(old_logp, dtype),
        rewards=rewards,
        group_ids=group_ids,
        weights=jnp.ones((b, t), dtype) if weights is None else jnp.asarray(weights, dtype),
        step=jnp.asarray(step, jnp.int32),
        ref_logp=None if ref_logp is None else jnp.asarray(ref_logp, dtype),
        tokens=None if tokens is None else jnp.asarray(tokens),
        advantages=None if advantages is None else jnp.asarray(advantages, dtype),
        rng=rng,
        extras=dict(extras or {}),
        group_size=group_size,
        num_groups=int(num_groups),
        phase=phase,
    )
    ctx = _detach(ctx)
    return ctx.replace(logp=logp, entropy=entropy, hidden=hidden)

  @classmethod
  def from_batch(
      cls,
      batch: "LossContext",
      *,
      logp: Float[Array, "B T"],
      entropy: Float[Array, "B T"] | None = None,
      hidden: Float[Array, "B T D"] | None = None,
      step: int | Int[Array, ""] | None = None,
      rng: Any = None,
  ) -> "LossContext":
    """The loss-phase context of a (micro-)batch, for use inside `value_and_grad`.

    `batch` is the output of the rollout phase (or a slice of it, see `split_rows`). Every batch
    leaf is detached once here; only `logp`/`entropy`/`hidden` of the current pass carry gradient.
    Terms, ratio, loss and metrics of the rollout phase are dropped (log those once per rollout).
    """
    ctx = _detach(batch.replace(logp=None, entropy=None, hidden=None, ratio=None, terms={},
                                metrics={}, loss=None))
    ctx = ctx.replace(logp=logp, entropy=entropy, hidden=hidden, phase="loss")
    if step is not None:
      ctx = ctx.replace(step=jnp.asarray(step, jnp.int32))
    if rng is not None:
      ctx = ctx.replace(rng=rng)
    if tuple(logp.shape) != tuple(ctx.mask.shape):
      raise ValueError(f"logp has shape {logp.shape}, the batch mask {ctx.mask.shape}")
    return ctx

  # ----------------------------------------------------------------------------------------------
  # Helpers for transform authors
  @property
  def batch_size(self) -> int:
    return self.mask.shape[0]

  @property
  def lengths(self) -> Float[Array, " B"]:
    """`|o_b| = Σ_t m_{b,t}`: trainable tokens per row."""
    return jnp.sum(self.mask, axis=1)

  def require(self, name: str, *, by: str, fix: str | None = None) -> Any:
    """Returns field or extra `name`, or raises naming the transform, the field and the fix."""
    value = getattr(self, name, None) if name in _FIELD_NAMES else self.extras.get(name)
    if value is None:
      if fix is None and name in _COMPUTED_FIELDS:
        fix = (f"the objective's `requires` includes {name!r}, so the trainer should have "
               f"computed it (check training.forward_outputs); when building the context by "
               f"hand, pass {name}=... to LossContext.create")
      elif fix is None and name in _FIELD_NAMES:
        fix = f"pass {name}=... to LossContext.create"
      elif fix is None:
        fix = f"put it in the batch as extras[{name!r}]"
      raise ValueError(f"`{by}` needs `{name}`, which is missing from the LossContext: {fix}.")
    return value

  def check_loss_phase(self, *, by: str) -> None:
    """Raises unless this context can run a loss-phase transform (needs the current `logp`)."""
    if self.phase == "rollout" or self.logp is None:
      why = ("it runs in the rollout chain" if self.phase == "rollout"
             else "ctx.logp is None (no forward pass of the current policy)")
      raise ValueError(f"`{by}` is a loss-phase transform and {why}: put it in the loss phase "
                       "(Objective.loss), which runs per minibatch inside value_and_grad.")

  def check_rollout_phase(self, *, by: str) -> None:
    """Raises if a rollout-phase transform (group statistics, reward shaping) runs in the loss."""
    if self.phase == "loss":
      raise ValueError(f"`{by}` is a rollout-phase transform (it needs whole groups / the whole "
                       "batch, once per rollout batch) and it runs in the loss chain: put it in "
                       "the rollout phase (Objective.rollout).")

  def masked_sum(self, x: Float[Array, "B T"]) -> Float[Array, ""]:
    """`Σ_{b,t} m_{b,t} x_{b,t}`, ignoring whatever `x` holds off the mask."""
    return jnp.sum(jnp.where(self.mask > 0, x, 0.0) * self.mask)

  def masked_mean(self, x: Float[Array, "B T"]) -> Mean:
    """Token mean of `x` over the mask, as a `Mean` pair (exact across micro-batches)."""
    return Mean(self.masked_sum(x), jnp.sum(self.mask))

  def row_mean(self, x: Float[Array, " B"], where: Float[Array, " B"] | None = None) -> Mean:
    """Mean of a per-row quantity over rows (or the rows where `where` > 0), as a `Mean`."""
    w = jnp.ones_like(x) if where is None else where.astype(x.dtype)
    return Mean(jnp.sum(jnp.where(w > 0, x, 0.0) * w), jnp.sum(w))

  def add_term(self, name: str, x: Float[Array, "B T"]) -> "LossContext":
    """Adds a named per-token loss term (zeroed off the mask); raises on a duplicate name."""
    if name in self.terms:
      raise ValueError(f"loss term {name!r} is already set (terms are add-only); to use two "
                       "stages of the same kind, give them names with named_chain")
    if tuple(x.shape) != tuple(self.mask.shape):
      raise ValueError(f"term {name!r} has shape {x.shape}, expected [B, T] = {self.mask.shape}")
    return self.replace(terms={**self.terms, name: jnp.where(self.mask > 0, x, 0.0)})

  def log(self, **metrics: Mean) -> "LossContext":
    """Adds metrics (`Mean` pairs; keys `"<ns>/<quantity>"`, passed as `**{"kl/mean": ...}`)."""
    for key, m in metrics.items():
      if not isinstance(m, Mean):
        raise TypeError(f"metric {key!r} must be a Mean(total, count), got {type(m).__name__}")
    detached = {k: Mean(*_detach(tuple(m))) for k, m in metrics.items()}
    return self.replace(metrics={**self.metrics, **detached})

  def token_broadcast(self, x: Float[Array, " B"]) -> Float[Array, "B T"]:
    """`x_b · m_{b,t}`: a per-row quantity on every valid token, 0 elsewhere."""
    return x[:, None] * self.mask

  def at_step(self, coef: float | Callable[[Any], Any]) -> Float[Array, ""]:
    """Evaluates a `ScalarOrSchedule` coefficient at `ctx.step`."""
    return coef(self.step) if callable(coef) else jnp.asarray(coef, self.mask.dtype)


_FIELD_NAMES = frozenset(f.name for f in LossContext.__dataclass_fields__.values())


def split_rows(ctx: LossContext, num_splits: int) -> list[LossContext]:
  """Splits a context into `num_splits` consecutive row blocks (micro-batches).

  Group structure is kept when `G` divides the block size; otherwise each block is marked as
  having no usable groups (group-level transforms belong to the rollout phase anyway).
  """
  b = ctx.batch_size
  if b % num_splits:
    raise ValueError(f"cannot split B={b} rows into {num_splits} equal micro-batches")
  size = b // num_splits
  out = []
  for i in range(num_splits):
    part = jax.tree.map(lambda x, i=i: _take_rows(x, i * size, size, b), ctx.replace(rng=None))
    part = part.replace(rng=ctx.rng)
    if ctx.group_size is not None and size % ctx.group_size == 0:
      part = part.replace(num_groups=size // ctx.group_size)
    else:
      part = part.replace(group_size=None, num_groups=ctx.num_groups)
    out.append(part)
  return out


def _take_rows(x, start, size, b):
  if hasattr(x, "ndim") and x.ndim >= 1 and x.shape[0] == b:
    return x[start:start + size]
  return x
