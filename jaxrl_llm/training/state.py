"""`TrainState`: everything a training run carries from one step to the next, as one pytree."""
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jaxtyping import Array, Int

PyTree = Any


@struct.dataclass
class TrainState:
  """The state of a run (a pytree, so it can be jitted, sharded, donated and checkpointed).

  Attributes:
    step: train steps taken (skipped ones included), int32 scalar; the objective's `ctx.step`.
    params: policy parameters (nested dict, `models.Transformer.params()` layout).
    opt_state: the optax state of `params`.
    ref_params: frozen reference-policy parameters, or None when the objective does not need
      `ref_logp` (then no reference forward pass runs and no memory is spent on it).
    objective_state: `objectives.ObjectiveState` (rollout and loss chains' states).
    rng: PRNG key, split once per step.
    skipped: how many steps had a non-finite loss or gradient and left the parameters unchanged.
  """
  step: Int[Array, ""]
  params: PyTree
  opt_state: PyTree
  ref_params: PyTree | None
  objective_state: PyTree
  rng: jax.Array
  skipped: Int[Array, ""]

  @classmethod
  def create(cls, params: PyTree, optimizer: optax.GradientTransformation, rng: jax.Array, *,
             objective_state: PyTree, ref_params: PyTree | None = None) -> "TrainState":
    """A fresh state at step 0 (`optimizer.init(params)`); jit it with out_shardings to build the
    state directly on a mesh (`step.init_train_state`). `objective_state` comes from
    `rollout.init_objective_state(objective, example_batch)`."""
    return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params),
               ref_params=ref_params, objective_state=objective_state, rng=rng,
               skipped=jnp.zeros((), jnp.int32))
