"""The device mesh: axes `('data', 'fsdp', 'tensor')`, shape from the config's `mesh` section.

  mesh = make_mesh({"data": 2, "fsdp": -1, "tensor": 1})   # -1: whatever the other axes leave

Axis roles: `data` splits the batch only (parameters replicated along it); `fsdp` splits the batch
*and* shards parameters (gathered per layer inside the step); `tensor` shards attention heads and
MLP width (`rules.py` holds the mapping).

Axis types: **Auto**, deliberately. With Explicit axes the sharding of every intermediate is part
of its type, and an einsum whose operands are sharded on the same mesh axis along different
dimensions is a type error until the caller picks an `out_sharding`. FSDP does exactly that: the
`fsdp` axis shards the batch of the activations and the `embed` dimension of the weights, so under
Explicit axes every matmul of `models.forward` would need an annotation, and the model package is
(by the dependency rules) sharding-agnostic. Under Auto the jitted step pins only its inputs and
outputs (parameters by the logical-axis rules, the batch over `('data', 'fsdp')`) and the compiler
inserts the all-gathers and reduce-scatters. The objectives' group statistics reshape `[B] -> [P,
G]`, which works on both axis types (tests/objectives/sharding_test.py).
"""
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

MESH_AXES = ("data", "fsdp", "tensor")
# The axes the batch dimension is split over (in this order).
BATCH_AXES = ("data", "fsdp")


def mesh_shape(config: Mapping[str, Any] | Sequence[int], num_devices: int
               ) -> tuple[int, int, int]:
  """Resolves `{'data': d, 'fsdp': f, 'tensor': t}` (one entry may be -1) against `num_devices`.

  Raises:
    ValueError: unknown or missing axis names, sizes < 1 (other than one -1), or a product that
      does not equal (or, with a -1, divide) the device count; the message gives the numbers.
  """
  if isinstance(config, Mapping) or hasattr(config, "items"):
    items = dict(config.items())
    unknown = sorted(set(items) - set(MESH_AXES))
    if unknown:
      raise ValueError(f"unknown mesh axes {unknown}; the mesh axes are {MESH_AXES}.")
    sizes = [int(items.get(a, 1)) for a in MESH_AXES]
  else:
    sizes = [int(s) for s in config]
    if len(sizes) != len(MESH_AXES):
      raise ValueError(f"a mesh shape needs {len(MESH_AXES)} sizes {MESH_AXES}; got {sizes}.")
  described = " x ".join(f"{a}={s}" for a, s in zip(MESH_AXES, sizes))
  fill = [i for i, s in enumerate(sizes) if s == -1]
  if len(fill) > 1 or any(s < 1 and s != -1 for s in sizes):
    raise ValueError(f"mesh {described}: sizes must be >= 1, with at most one -1 (meaning 'the "
                     "remaining devices').")
  known = int(np.prod([s for s in sizes if s != -1]))
  if fill:
    if num_devices % known:
      raise ValueError(
          f"mesh {described}: the fixed axes use {known} devices, which does not divide the "
          f"{num_devices} devices available; choose sizes whose product divides {num_devices}.")
    sizes[fill[0]] = num_devices // known
  elif known != num_devices:
    raise ValueError(
        f"mesh {described} = {known} devices, but {num_devices} are available: the product of the "
        f"mesh axes must equal {num_devices} (set one axis to -1 to take the rest).")
  return tuple(sizes)


def make_mesh(config: Mapping[str, Any] | Sequence[int] = None,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A `('data', 'fsdp', 'tensor')` mesh of Auto axes over `devices` (default: all devices).

  Args:
    config: the `mesh` config section (`data`, `fsdp`, `tensor`; one may be -1; optional
      `num_devices`, -1 for all, else the first that many) or three sizes. Default: all devices on
      `fsdp`.
    devices: the devices to use (e.g. `jax.devices()[:1]` for a one-device mesh).
  """
  devices = list(jax.devices() if devices is None else devices)
  if config is None:
    config = {"data": 1, "fsdp": -1, "tensor": 1}
  if hasattr(config, "items"):
    config = dict(config.items())
    count = int(config.pop("num_devices", -1))
    if count > len(devices) or count == 0 or count < -1:
      raise ValueError(f"mesh num_devices={count}, but {len(devices)} devices are available: use "
                       f"-1 (all) or a number from 1 to {len(devices)}.")
    if count > 0:
      devices = devices[:count]
  shape = mesh_shape(config, len(devices))
  return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES),
                       devices=devices)


def batch_shards(mesh: Mesh) -> int:
  """How many pieces the batch dimension is split into: the product of the `BATCH_AXES` sizes."""
  return int(np.prod([mesh.shape[a] for a in BATCH_AXES if a in mesh.shape]))


def check_batch(batch_size: int, group_size: int, mesh: Mesh, num_micro_batches: int = 1) -> None:
  """Raises unless `batch_size` is a multiple of group_size x batch shards (x micro-batches).

  Each batch shard must hold whole groups (the rollout phase's group statistics stay local), and
  each micro-batch must split evenly over the shards.
  """
  shards = batch_shards(mesh)
  if group_size < 1:
    raise ValueError(f"group_size must be >= 1; got {group_size}.")
  unit = group_size * shards
  if batch_size % unit:
    raise ValueError(
        f"batch of {batch_size} rows is not divisible by group_size ({group_size}) x batch shards "
        f"({shards}) = {unit} (batch shards = data x fsdp of the mesh {dict(mesh.shape)}): use a "
        f"multiple of {unit} rows, i.e. prompts per batch a multiple of {shards}.")
  if num_micro_batches < 1 or batch_size % (num_micro_batches * shards):
    raise ValueError(
        f"batch of {batch_size} rows does not split into {num_micro_batches} micro-batches of a "
        f"multiple of the {shards} batch shards: choose num_micro_batches dividing "
        f"{batch_size // shards}.")
