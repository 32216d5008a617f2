"""Logical-axis rules: which mesh axes shard each named dimension of parameters and batches.

Parameters carry logical axis names (`models.LOGICAL_AXES`: `vocab`, `embed`, `heads`,
`kv_heads`, `head_dim`, `mlp`, `layers`). `PARAM_RULES` maps them onto the mesh:

| logical  | mesh axis | why                                                        |
|----------|-----------|------------------------------------------------------------|
| embed    | fsdp      | FSDP: every matrix has an `embed` side; gathered per layer |
| vocab    | tensor    | the embedding / LM head split by vocabulary rows           |
| heads    | tensor    | tensor parallel attention (query heads)                    |
| kv_heads | tensor    | ... and key/value heads                                    |
| mlp      | tensor    | tensor parallel MLP width                                  |
| layers, head_dim | — | replicated                                                |

A dimension falls back to replication when its size is not divisible by the mesh axes' product,
when those axes have size 1, or when an earlier dimension of the same array already uses the axis
(a mesh axis shards at most one dimension). The batch dimension goes over `('data', 'fsdp')`.
Optimizer states and reference parameters mirror the parameters: `tree_shardings` matches any leaf
whose trailing dict keys form a parameter path (e.g. `mu/layers/wq` of an Adam state).
"""
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxrl_llm.models.transformer import LOGICAL_AXES
from jaxrl_llm.parallel.mesh import BATCH_AXES

PyTree = Any

PARAM_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("embed", ("fsdp",)),
    ("vocab", ("tensor",)),
    ("heads", ("tensor",)),
    ("kv_heads", ("tensor",)),
    ("mlp", ("tensor",)),
    ("head_dim", ()),
    ("layers", ()),
)


def logical_to_spec(logical_axes: Sequence[str | None], shape: Sequence[int], mesh: Mesh,
                    rules: Sequence[tuple[str, Sequence[str]]] = PARAM_RULES) -> P:
  """The PartitionSpec of one array from its logical axis names (see the module docstring).

  Raises ValueError when `logical_axes` and `shape` differ in rank or a name has no rule.
  """
  if len(logical_axes) != len(shape):
    raise ValueError(f"logical axes {tuple(logical_axes)} do not match the shape {tuple(shape)}.")
  table = dict(rules)
  used: set[str] = set()
  spec = []
  for name, size in zip(logical_axes, shape):
    if name is None:
      spec.append(None)
      continue
    if name not in table:
      raise ValueError(f"no sharding rule for logical axis {name!r}; rules cover {sorted(table)}. "
                       "Add a rule (an empty tuple replicates).")
    axes = tuple(a for a in table[name] if a in mesh.shape and mesh.shape[a] > 1 and a not in used)
    parts = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
    if not axes or size % parts:
      spec.append(None)
      continue
    used.update(axes)
    spec.append(axes[0] if len(axes) == 1 else axes)
  return P(*spec)


def _path_str(path) -> str:
  """`(…, DictKey('layers'), DictKey('wq'))` -> 'layers/wq' (trailing dict keys only)."""
  keys = []
  for k in reversed(path):
    if isinstance(k, jax.tree_util.DictKey):
      keys.append(str(k.key))
    else:
      break
  return "/".join(reversed(keys))


def _param_path(path) -> str | None:
  """The longest suffix of the dict-key path that names a parameter, if any."""
  full = _path_str(path)
  parts = full.split("/") if full else []
  for i in range(len(parts)):
    candidate = "/".join(parts[i:])
    if candidate in LOGICAL_AXES:
      return candidate
  return None


def tree_specs(tree: PyTree, mesh: Mesh,
               rules: Sequence[tuple[str, Sequence[str]]] = PARAM_RULES,
               logical_axes: Mapping[str, Sequence[str]] = LOGICAL_AXES) -> PyTree:
  """PartitionSpecs for a tree of parameters, or of anything shaped like them (optimizer states).

  A leaf whose trailing dict keys name a parameter with a matching rank is sharded by the rules;
  every other leaf (step counters, scalars) is replicated. Leaves may be arrays or
  `jax.ShapeDtypeStruct`s (from `jax.eval_shape`), so shardings exist before any allocation.
  """
  def spec(path, leaf):
    shape = getattr(leaf, "shape", ())
    name = _param_path(path)
    if name is None or len(logical_axes[name]) != len(shape):
      return P()
    return logical_to_spec(logical_axes[name], shape, mesh, rules)
  return jax.tree_util.tree_map_with_path(spec, tree)


def tree_shardings(tree: PyTree, mesh: Mesh,
                   rules: Sequence[tuple[str, Sequence[str]]] = PARAM_RULES) -> PyTree:
  """`tree_specs` as NamedShardings on `mesh`."""
  return jax.tree.map(lambda s: NamedSharding(mesh, s), tree_specs(tree, mesh, rules),
                      is_leaf=lambda x: isinstance(x, P))


def batch_spec(mesh: Mesh, ndim: int) -> P:
  """Spec of a `[B, ...]` array: the batch over ('data', 'fsdp') (axes of size > 1), rest whole."""
  axes = tuple(a for a in BATCH_AXES if a in mesh.shape and mesh.shape[a] > 1)
  lead = None if not axes else (axes[0] if len(axes) == 1 else axes)
  return P(lead, *([None] * (ndim - 1)))


def batch_shardings(tree: PyTree, batch_size: int, mesh: Mesh) -> PyTree:
  """NamedShardings for a batch pytree: leaves with leading dimension `batch_size` are split over
  the batch axes, every other leaf (scalars, PRNG keys) is replicated."""
  def sharding(leaf):
    shape = getattr(leaf, "shape", ())
    if len(shape) >= 1 and shape[0] == batch_size:
      return NamedSharding(mesh, batch_spec(mesh, len(shape)))
    return NamedSharding(mesh, P())
  return jax.tree.map(sharding, tree)


def kv_cache_specs(cache, mesh: Mesh):
  """Specs of a `models.KVCache`: keys/values `[L, B, K, S, H]` (or, unstacked, L buffers
  `[B, K, S, H]`) split by batch and kv heads, `valid [B, S]` by batch, the write index
  replicated (same rules as the parameters)."""
  batch = batch_spec(mesh, 1)[0]
  if isinstance(cache.k, (tuple, list)):
    heads = logical_to_spec(("kv_heads",), (cache.k[0].shape[1],), mesh)[0]
    kv = (P(batch, heads, None, None),) * len(cache.k)
  else:
    heads = logical_to_spec(("kv_heads",), (cache.k.shape[2],), mesh)[0]
    kv = P(None, batch, heads, None, None)
  return type(cache)(k=kv, v=kv, valid=P(batch, None), index=P())
