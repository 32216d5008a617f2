"""`RolloutBatch`: sampled rows (prompt + completion) and their `LossContext`, and how to split it.

Shape letters: B rows (P prompts x G completions, group-major), Lp prompt width (left-padded),
T completion width, L = Lp + T.
"""
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jaxtyping import Array, Float, Int

from jaxrl_llm.objectives import LossContext
from jaxrl_llm.sampling import Completions


@struct.dataclass
class RolloutBatch:
  """One rollout batch, ready for the train step.

  Attributes:
    tokens: prompt + completion ids [B, L] (`Completions.sequences()`).
    attention_mask: [B, L], 1 on real prompt tokens and on completion tokens up to the stop token.
    ctx: the `LossContext` over the T completion positions: `mask`, `old_logp`, `rewards`,
      `group_ids`/`group_size`, `extras` (`sampler_logp`, `truncated`, `lengths`) and, once
      `training.rollout` has run the objective's rollout phase, `advantages`, `weights`, the
      reference logp, filtered `mask`.
    prompt_len: Lp (static): completion token t sits at column Lp + t of `tokens`.
    shared_prompts: (static) True when the rows come in groups of `ctx.group_size` whose prompt
      columns (tokens and mask) are identical (`prompts_shared`), as the sampler lays out n
      completions per prompt. The forward passes then run each prompt once per group
      (`models.forward_shared_prompts`); the result is the same. Batches whose groups are cut
      apart (ragged minibatches, strided micro-batches) clear `group_size`, which turns it off.
  """
  tokens: Int[Array, "B L"]
  attention_mask: Int[Array, "B L"]
  ctx: LossContext
  prompt_len: int = struct.field(pytree_node=False)
  shared_prompts: bool = struct.field(pytree_node=False, default=False)

  @property
  def batch_size(self) -> int:
    return self.tokens.shape[0]

  @property
  def group_size(self) -> int | None:
    return self.ctx.group_size

  @property
  def completion_len(self) -> int:
    return self.tokens.shape[1] - self.prompt_len


def _host_array(x) -> np.ndarray:
  if isinstance(x, jax.Array) and not x.is_fully_addressable:   # multi-process: gather the rows
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


def prompts_shared(prompt_tokens: Int[Array, "B Lp"], prompt_mask: Int[Array, "B Lp"],
                   group_size: int | None) -> bool:
  """Whether rows i·g … i·g + g − 1 have the same prompt tokens and mask (g = group_size > 1)."""
  if not group_size or group_size < 2:
    return False
  out = True
  for x in (prompt_tokens, prompt_mask):
    x = _host_array(x)
    if x.shape[0] % group_size:
      return False
    x = x.reshape(-1, group_size, *x.shape[1:])
    out = out and bool(np.all(x == x[:, :1]))
  return out


def from_completions(completions: Completions, rewards: Float[Array, " B"], *, group_size: int,
                     step: int | Int[Array, ""] = 0) -> RolloutBatch:
  """A batch (before the rollout phase) from the sampler's output and per-row rewards.

  `old_logp` starts as the sampler's logprobs (behaviour policy, tempered untruncated
  distribution); `training.rollout` may replace it by the trainer's recomputation. The sampler's
  values stay in `extras["sampler_logp"]`.
  """
  tokens, attention_mask = completions.sequences()
  mask = jnp.asarray(completions.mask, jnp.float32)
  ctx = LossContext.create(
      mask=mask, rewards=jnp.asarray(rewards, jnp.float32),
      old_logp=jnp.asarray(completions.logp, jnp.float32) * mask, group_size=group_size,
      tokens=jnp.asarray(completions.tokens), step=step,
      extras={"sampler_logp": jnp.asarray(completions.logp, jnp.float32),
              "truncated": jnp.asarray(completions.truncated),
              "lengths": jnp.asarray(completions.lengths, jnp.float32)})
  return RolloutBatch(tokens=jnp.asarray(tokens, jnp.int32),
                      attention_mask=jnp.asarray(attention_mask, jnp.int32), ctx=ctx,
                      prompt_len=int(completions.prompt_tokens.shape[1]),
                      shared_prompts=prompts_shared(completions.prompt_tokens,
                                                    completions.prompt_mask, group_size))


def _is_row_leaf(leaf: Any, batch_size: int) -> bool:
  return getattr(leaf, "ndim", 0) >= 1 and leaf.shape[0] == batch_size


def split_micro_batches(batch: RolloutBatch, num_micro_batches: int
                        ) -> tuple[list[Any], Any]:
  """Cuts the rows into k strided micro-batches, for a `lax.scan` over them.

  With contiguous groups and k dividing the number of groups P, micro-batch j holds the whole
  groups i·k + j (so loss-phase transforms that need groups, e.g. THR, still see them; the
  context's `num_groups` becomes P/k and `group_ids` local). Otherwise row i·k + j goes to
  micro-batch j and `group_size` is cleared (`group_ids` keep their global values). Striding
  keeps a batch that is sharded in contiguous blocks sharded the same way inside every
  micro-batch when the blocks hold a multiple of k groups (rows); else XLA moves rows, with the
  same result.

  Returns:
    (xs, rebuild): `xs` the row leaves reshaped to [k, B/k, ...], and `rebuild(leaves)` that puts
    one micro-batch's leaves back into a `RolloutBatch` (other leaves, e.g. `ctx.step`, shared).
  """
  b, k = batch.batch_size, num_micro_batches
  if b % k:
    raise ValueError(f"cannot split a batch of {b} rows into {k} equal micro-batches; choose a "
                     f"num_micro_batches that divides {b}.")
  g = batch.group_size
  by_groups = k > 1 and g is not None and g * batch.ctx.num_groups == b and (b // g) % k == 0
  if by_groups:
    p = b // g
    local_ids = (jnp.arange(b, dtype=jnp.int32) // g) // k
    batch = batch.replace(ctx=batch.ctx.replace(group_ids=local_ids, num_groups=p // k))

    def split(x):
      x = x.reshape((p // k, k, g) + x.shape[1:]).swapaxes(0, 1)
      return x.reshape((k, b // k) + x.shape[3:])
  else:
    if k > 1:
      batch = batch.replace(ctx=batch.ctx.replace(group_size=None))

    def split(x):
      return x.reshape((b // k, k) + x.shape[1:]).swapaxes(0, 1)
  leaves, treedef = jax.tree.flatten(batch)
  is_row = [_is_row_leaf(x, b) for x in leaves]
  xs = [split(x) for x, r in zip(leaves, is_row) if r]

  def rebuild(row_leaves):
    it = iter(row_leaves)
    return jax.tree.unflatten(treedef, [next(it) if r else x for x, r in zip(leaves, is_row)])
  return xs, rebuild


def group_minibatches(batch: RolloutBatch, num_minibatches: int, key: jax.Array | None
                      ) -> list[RolloutBatch]:
  """Splits a rollout batch into minibatches, shuffled by `key` (None: in order).

  For `mu` updates per rollout batch. Contiguous groups of equal size (`ctx.group_size`): each
  minibatch holds P / num_minibatches complete groups (group ids local to it). Ragged groups
  (explicit `group_ids`, e.g. Knapsack RL's per-prompt budgets): `ragged_minibatches`, B /
  num_minibatches shuffled rows each. Either way every minibatch has B / num_minibatches rows, so
  the jitted train step keeps one shape.
  """
  g, b = batch.group_size, batch.batch_size
  if g is None or g * batch.ctx.num_groups != b:
    return ragged_minibatches(batch, num_minibatches, key)
  p = b // g
  if p % num_minibatches:
    raise ValueError(f"{p} groups do not split into {num_minibatches} equal minibatches; choose "
                     f"num_minibatches dividing {p}.")
  order = np.arange(p) if key is None else np.asarray(jax.random.permutation(key, p))
  per = p // num_minibatches
  out = []
  for i in range(num_minibatches):
    groups = order[i * per:(i + 1) * per]
    rows = jnp.asarray((groups[:, None] * g + np.arange(g)[None, :]).reshape(-1))
    part = jax.tree.map(lambda x: x[rows] if _is_row_leaf(x, b) else x, batch)
    ctx = part.ctx.replace(group_ids=jnp.arange(per * g, dtype=jnp.int32) // g, num_groups=per)
    out.append(part.replace(ctx=ctx))
  return out


def ragged_minibatches(batch: RolloutBatch, num_minibatches: int, key: jax.Array | None
                       ) -> list[RolloutBatch]:
  """Minibatches of B / num_minibatches rows of a batch with groups of unequal size.

  Rows are shuffled by `key` (None: in order) and cut into equal slices, so every minibatch has
  the same static shape whatever the group sizes (packing whole groups of varying sizes into
  equal bins would need padding rows and a shape that changes with the allocation). This is
  exact because the rollout phase has already computed everything that needs whole groups
  (advantages, group filters) on the whole batch, and loss-phase transforms are per row / per
  token (rollout-phase transforms cannot run in the loss chain; `thr_weights`, which reads groups
  in the loss, raises on ragged groups). A minibatch keeps the rows' global `group_ids` and the
  static `num_groups`, with `group_size` None. The rows of a minibatch keep their batch order.
  """
  b = batch.batch_size
  if num_minibatches < 1 or b % num_minibatches:
    raise ValueError(f"a batch of {b} rows does not split into {num_minibatches} equal "
                     f"minibatches; choose num_minibatches dividing {b}.")
  order = np.arange(b) if key is None else np.asarray(jax.random.permutation(key, b))
  per = b // num_minibatches
  batch = batch.replace(ctx=batch.ctx.replace(group_size=None))
  out = []
  for i in range(num_minibatches):
    rows = jnp.asarray(np.sort(order[i * per:(i + 1) * per]))
    out.append(jax.tree.map(lambda x, rows=rows: x[rows] if _is_row_leaf(x, b) else x, batch))
  return out


def take_rows(completions: Completions, rows: np.ndarray) -> Completions:
  """The completions of `rows` (host-side selection, e.g. whole groups)."""
  rows = jnp.asarray(rows)
  return jax.tree.map(lambda x: x[rows], completions)


def concat_completions(parts: list[Completions]) -> Completions:
  """Stacks the rows of several sampler outputs; narrower prompts are left-padded (mask 0)."""
  width = max(c.prompt_tokens.shape[1] for c in parts)

  def pad(x):
    return jnp.pad(x, ((0, 0), (width - x.shape[1], 0)))
  parts = [c.replace(prompt_tokens=pad(c.prompt_tokens), prompt_mask=pad(c.prompt_mask))
           for c in parts]
  return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *parts)


def informative_groups(rewards: np.ndarray, group_size: int | None = None, *,
                       group_ids: np.ndarray | None = None) -> np.ndarray:
  """[P] bool: groups whose rewards are not all equal (DAPO's dynamic-sampling criterion).

  Groups are contiguous rows of `group_size`, or given by `group_ids` (0..P-1, any sizes).
  """
  r = np.asarray(rewards, np.float64)
  if group_ids is None:
    if group_size is None:
      raise ValueError("informative_groups needs group_size or group_ids")
    r = r.reshape(-1, group_size)
    return ~np.all(r == r[:, :1], axis=1)
  ids = np.asarray(group_ids)
  num = int(ids.max()) + 1 if ids.size else 0
  hi, lo = np.full(num, -np.inf), np.full(num, np.inf)
  np.maximum.at(hi, ids, r)
  np.minimum.at(lo, ids, r)
  return hi > lo
