"""The rollout phase: once per rollout batch, on whole groups, outside the gradient.

`rollout(state, batch, ...)` runs the forward passes the objective needs before minibatching
(reference logp; the old logp recomputed by the trainer, if asked) and then `objective.rollout`
(reward shaping, advantages, group filters). Its output batch feeds `mu` train steps.

Old-policy outputs that a rollout-phase transform requires (training/forward.py) are computed in
the same forward as the recomputed old logp: "entropy"/"hidden" as ctx fields, "sr_logp" [B] and
"waad"/"fai" [B, T] as `ctx.extras[name]` (stop-gradient). They are dropped from the batch after
the rollout chain ran.
"""
import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
from jaxtyping import Array, Float

from jaxrl_llm import parallel
from jaxrl_llm.models import ModelConfig
from jaxrl_llm.objectives import Mean, Objective, ObjectiveState
from jaxrl_llm.training.batch import RolloutBatch
from jaxrl_llm.training.forward import (
    EXTRA_OUTPUTS, FORWARD_REQUIRES, forward_outputs, reference_logp)
from jaxrl_llm.training.state import TrainState

PyTree = Any


def init_objective_state(objective: Objective, batch: RolloutBatch) -> ObjectiveState:
  """The objective's initial state, from an example batch (its shapes, not its values)."""
  return objective.check().init(batch.ctx)


def rollout(
    state: TrainState,
    batch: RolloutBatch,
    *,
    model_config: ModelConfig,
    objective: Objective,
    temperature: float = 1.0,
    recompute_old_logp: bool = False,
    chunk_size: int = 128,
) -> tuple[TrainState, RolloutBatch, dict[str, Float[Array, ""]]]:
  """Runs the rollout phase of `objective` on the whole batch. Pure; jit it.

  Args:
    state: the train state (its params for recomputed logp, its ref_params for `ref_logp`, its
      objective state's rollout part, which is updated).
    batch: the batch from `batch.from_completions` (groups contiguous and whole).
    model_config: the model's config (static).
    objective: the `Objective`; its `requires` decides which forward passes run.
    temperature: the sampler's temperature.
    recompute_old_logp: replace the sampler's logprobs by the trainer's recomputation (logs
      the mean |Δlogp| between the two as `rollout/logp_mismatch`).
  Returns:
    (state with the new objective state, batch with the rollout context, scalar metrics).
  """
  objective.check()
  ctx = batch.ctx
  metrics: dict[str, Mean] = {}
  requires = objective.requires
  if "ref_logp" in requires:
    if state.ref_params is None:
      raise ValueError("the objective requires `ref_logp` (a KL term) but TrainState.ref_params "
                       "is None: create the state with ref_params=<the initial params>.")
    ctx = ctx.replace(ref_logp=reference_logp(state.ref_params, model_config, batch,
                                              temperature=temperature, chunk_size=chunk_size))
  rollout_requires = objective.rollout.requires
  wanted = rollout_requires & set(FORWARD_REQUIRES)
  extra_names = [k for k in EXTRA_OUTPUTS if k in wanted]
  if recompute_old_logp or wanted:
    # The old policy's outputs; the objective's tags (sr_token, attn_*: either phase may carry
    # them, they must agree) parametrise them.
    tags = {r for r in objective.requires if "=" in r}
    outs = jax.lax.stop_gradient(forward_outputs(
        state.params, model_config, batch, wanted | tags, temperature=temperature,
        chunk_size=chunk_size))
    if recompute_old_logp:
      sampler_logp = ctx.extras["sampler_logp"]
      metrics["rollout/logp_mismatch"] = ctx.masked_mean(jnp.abs(outs["logp"] - sampler_logp))
      ctx = ctx.replace(old_logp=outs["logp"] * ctx.mask)
    ctx = ctx.replace(entropy=outs.get("entropy"), hidden=outs.get("hidden"),
                      extras={**ctx.extras, **{k: outs[k] for k in extra_names}})
  ctx = ctx.replace(step=state.step, phase="rollout")
  rctx, rstate = objective.rollout.update(ctx, state.objective_state.rollout)
  # Rollout-only forward outputs leave the batch (the loss phase recomputes what it requires).
  rctx = rctx.replace(entropy=None, hidden=None,
                      extras={k: v for k, v in rctx.extras.items() if k not in extra_names})
  metrics["reward/mean"] = Mean(jnp.sum(ctx.rewards), jnp.asarray(ctx.batch_size, jnp.float32))
  metrics["rollout/tokens"] = Mean(jnp.sum(ctx.mask), jnp.ones((), jnp.float32))
  metrics.update(rctx.metrics)
  new_state = state.replace(objective_state=state.objective_state._replace(rollout=rstate))
  return new_state, batch.replace(ctx=rctx), {k: m.value() for k, m in metrics.items()}


def jit_rollout(mesh, state: TrainState, batch: RolloutBatch, *, donate: bool = True,
                **static: Any):
  """`rollout` with its static arguments bound, jitted with state shardings on `mesh`.

  `state` and `batch` are examples (arrays or `jax.eval_shape` structs) that fix the structures.
  Each call places the batch's rows over ('data', 'fsdp'); the output batch (which gains
  advantages, reference logp, ...) keeps them there.
  """
  fn = functools.partial(rollout, **static)
  out_state, _, _ = jax.eval_shape(fn, state, batch)
  state_sh = parallel.tree_shardings(state, mesh)
  jitted = jax.jit(fn, in_shardings=(state_sh, None),
                   out_shardings=(parallel.tree_shardings(out_state, mesh), None,
                                  NamedSharding(mesh, P())),
                   donate_argnums=(0,) if donate else ())

  def run(state: TrainState, batch: RolloutBatch):
    batch = jax.device_put(batch, parallel.batch_shardings(batch, batch.batch_size, mesh))
    state, batch, metrics = jitted(state, batch)
    return state, jax.device_put(
        batch, parallel.batch_shardings(batch, batch.batch_size, mesh)), metrics
  run.jitted = jitted
  return run
