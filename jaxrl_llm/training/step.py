"""The train step: `train_step(state, batch) -> (state, metrics)`, pure, jitted on the mesh.

Exact accumulation (STYLE.md §2.7): every micro-batch contributes the *gradient of its loss
total* (`ctx.loss.total`, a sum over its rows/tokens) and its count; the sums are divided by the
summed count only after the `lax.scan` over micro-batches. The count carries no gradient, so
k micro-batches give exactly the gradient of the full-batch mean, for every aggregation mode.

A step whose loss or gradient is not finite leaves the parameters, optimizer state and objective
state as they were and increments `state.skipped`; `state.step` advances either way.

Forward outputs beyond logp (training/forward.py): the loss chain's `requires` decides them;
"sr_logp" (LaSeR) reaches the loss as the differentiable `ctx.extras["sr_logp"]` [B], computed per
micro-batch from each row's own tokens, so accumulation stays exact.

Randomness (`ctx.rng`, e.g. NSR's rescue draws): every step splits `state.rng` (so each update
and minibatch gets a fresh key, skipped steps included) and micro-batch j of a step sees
`fold_in(step key, j)`, so no two micro-batches or steps draw the same noise.
"""
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from jaxtyping import Array, Float

from jaxrl_llm import models, parallel
from jaxrl_llm.models import ModelConfig
from jaxrl_llm.objectives import LossContext, Mean, Objective
from jaxrl_llm.training.batch import RolloutBatch, split_micro_batches
from jaxrl_llm.training.forward import EXTRA_OUTPUTS, forward_outputs
from jaxrl_llm.training.state import TrainState

PyTree = Any


def _loss_total(params, mb: RolloutBatch, loss_state, step, rng, *, model_config, objective,
                temperature, chunk_size, remat):
  """`ctx.loss.total` of one micro-batch (the quantity that is differentiated), with aux."""
  tags = {r for r in objective.requires if "=" in r}   # sr_token, attn_*: from either phase
  requires = (objective.loss.requires | tags) - {"ref_logp"}
  outs = forward_outputs(params, model_config, mb, requires, temperature=temperature,
                         chunk_size=chunk_size, remat=remat)
  extra_outs = {k: outs.pop(k) for k in EXTRA_OUTPUTS if k in outs}
  ctx = LossContext.from_batch(mb.ctx, step=step, rng=rng, **outs)
  if extra_outs:   # after from_batch, which detaches extras: sr_logp stays differentiable
    ctx = ctx.replace(extras={**ctx.extras, **extra_outs})
  if "hidden" in requires:   # transforms on hidden states (THR) also read the unembedding [V, D]
    head = jax.lax.stop_gradient(models.output_head(params, model_config))
    ctx = ctx.replace(extras={**ctx.extras, "unembedding": head.T})
  ctx, loss_state = objective.loss.update(ctx, loss_state)
  if ctx.loss is None:
    raise ValueError("the objective's loss chain set no ctx.loss: end it with aggregate(mode).")
  return ctx.loss.total, (ctx.loss.count, ctx.metrics, loss_state)


def accumulate_gradients(
    params: PyTree,
    batch: RolloutBatch,
    loss_state: PyTree,
    step: jax.Array,
    rng: jax.Array,
    *,
    model_config: ModelConfig,
    objective: Objective,
    num_micro_batches: int = 1,
    temperature: float = 1.0,
    chunk_size: int = 128,
    remat: bool | str = False,
) -> tuple[Float[Array, ""], PyTree, dict[str, Mean], PyTree]:
  """Full-batch loss and gradient from k micro-batches (a `lax.scan`), exactly.

  Args:
    params: policy parameters.
    batch: the rollout batch (after `training.rollout`), B rows.
    loss_state: the loss chain's state; threads through the micro-batches.
    step: the step count (`ctx.step`); rng: a key, folded with the micro-batch index.
    model_config, objective: the model's config and the objective (static).
    num_micro_batches: k; B must be a multiple of it. Micro-batch j holds rows i·k + j.
    temperature, chunk_size, remat: see `forward_outputs`.
  Returns:
    (loss, grads, metrics, loss_state): loss = Σ total / Σ count, grads = ∇(Σ total) / Σ count,
    metrics the loss chain's `Mean`s summed over micro-batches, the new loss state.
  """
  if "ref_logp" in objective.loss.requires and batch.ctx.ref_logp is None:
    raise ValueError("the objective's loss needs `ref_logp` and the batch has none: run "
                     "training.rollout (with TrainState.ref_params set) before the train step.")
  grad_fn = jax.value_and_grad(functools.partial(
      _loss_total, model_config=model_config, objective=objective, temperature=temperature,
      chunk_size=chunk_size, remat=remat), has_aux=True)

  def one(mb, loss_state, i):
    (total, (count, metrics, loss_state)), grads = grad_fn(
        params, mb, loss_state, step, jax.random.fold_in(rng, i))
    return total, count, grads, metrics, loss_state

  if num_micro_batches == 1:
    total, count, grads, metrics, loss_state = one(batch, loss_state, 0)
  else:
    xs, rebuild = split_micro_batches(batch, num_micro_batches)

    def body(carry, x):
      grads_acc, loss_state = carry
      leaves, i = x
      total, count, grads, metrics, loss_state = one(rebuild(leaves), loss_state, i)
      grads_acc = jax.tree.map(jnp.add, grads_acc, grads)
      return (grads_acc, loss_state), (total, count, metrics)

    zeros = jax.tree.map(jnp.zeros_like, params)
    (grads, loss_state), (totals, counts, metrics) = jax.lax.scan(
        body, (zeros, loss_state), (xs, jnp.arange(num_micro_batches)))
    total, count = jnp.sum(totals), jnp.sum(counts)
    metrics = jax.tree.map(lambda x: jnp.sum(x, axis=0), metrics)
  denom = jnp.maximum(count, 1.0)
  grads = jax.tree.map(lambda g: g / denom.astype(g.dtype), grads)
  return total / denom, grads, metrics, loss_state


def _all_finite(loss, grads) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]
  return jnp.isfinite(loss) & jnp.all(jnp.stack(leaves))


def train_step(
    state: TrainState,
    batch: RolloutBatch,
    *,
    model_config: ModelConfig,
    objective: Objective,
    optimizer: optax.GradientTransformation,
    num_micro_batches: int = 1,
    temperature: float = 1.0,
    chunk_size: int = 128,
    remat: bool | str = False,
) -> tuple[TrainState, dict[str, Float[Array, ""]]]:
  """One optimizer update on one (mini)batch. Pure; `jit_train_step` binds and jits it.

  Args:
    state: the TrainState.
    batch: a RolloutBatch after the rollout phase: tokens [B, L], ctx over [B, T].
    model_config, objective, optimizer: static.
    num_micro_batches: gradient accumulation over k micro-batches (exact, see module docstring).
    temperature: the sampler's temperature (logp is scored under it).
    chunk_size, remat: memory knobs of the forward pass.
  Returns:
    (new state, metrics): "loss", "grad_norm" (of the averaged gradient, before clipping),
    "skipped" (total skipped steps), "update_skipped" (1. if this step was), and the loss chain's
    metrics (e.g. "loss/pg", "clip/frac_high") as scalars.
  """
  rng, step_rng = jax.random.split(state.rng)
  loss, grads, metrics, loss_state = accumulate_gradients(
      state.params, batch, state.objective_state.loss, state.step, step_rng,
      model_config=model_config, objective=objective, num_micro_batches=num_micro_batches,
      temperature=temperature, chunk_size=chunk_size, remat=remat)
  finite = _all_finite(loss, grads)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)

  def keep_if_finite(new, old):
    return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)

  objective_state = state.objective_state._replace(loss=loss_state)
  new_state = state.replace(
      step=state.step + 1,
      params=keep_if_finite(params, state.params),
      opt_state=keep_if_finite(opt_state, state.opt_state),
      objective_state=keep_if_finite(objective_state, state.objective_state),
      rng=rng,
      skipped=state.skipped + jnp.where(finite, 0, 1).astype(jnp.int32))
  out = {k: m.value() for k, m in metrics.items()}
  out.update({"loss": loss, "grad_norm": optax.global_norm(grads),
              "skipped": new_state.skipped.astype(jnp.float32),
              "update_skipped": jnp.where(finite, 0.0, 1.0)})
  return new_state, out


def state_shardings(state: TrainState, mesh: Mesh) -> TrainState:
  """NamedShardings of a TrainState (arrays or `jax.eval_shape` structs): params, optimizer
  moments and ref params by the logical-axis rules, everything else replicated."""
  return parallel.tree_shardings(state, mesh)


def init_train_state(
    params: PyTree,
    optimizer: optax.GradientTransformation,
    rng: jax.Array,
    mesh: Mesh,
    *,
    objective_state: PyTree,
    ref_params: PyTree | None = None,
) -> tuple[TrainState, TrainState]:
  """A TrainState placed on `mesh`, and its shardings (for `jit_train_step`).

  Shardings come from `jax.eval_shape` first, so the optimizer state is created directly in its
  sharded layout (never whole on one device).
  """
  def create(params, ref_params, rng, objective_state):
    return TrainState.create(params, optimizer, rng, objective_state=objective_state,
                             ref_params=ref_params)
  abstract = jax.eval_shape(create, params, ref_params, rng, objective_state)
  shardings = state_shardings(abstract, mesh)
  params = jax.device_put(params, shardings.params)
  if ref_params is not None:
    ref_params = jax.device_put(ref_params, shardings.ref_params)
  state = jax.jit(create, out_shardings=shardings)(params, ref_params, rng, objective_state)
  return state, shardings


def compiler_options(mesh: Mesh) -> dict[str, Any]:
  """XLA options of the jitted train step on `mesh`'s platform.

  On CPU, copy insertion with region analysis. Without it XLA:CPU copies the optimizer's first
  and second moments (2 x the parameter bytes, 1.08 GB for SmolLM2-135M) on every step: the
  parameter update re-derives the new moments from the old ones, and the moment outputs
  overwrite the old ones in place (donation), so the default analysis keeps a copy of each.
  Region analysis sees that the reads come first. Same values; at the RL benchmark's shape
  (32 rows x 160, 4 micro-batches) the step's temporaries go from 2.24 to 2.08 GB. The copies
  took ~40 ms of a ~12 s step, so the step time does not change measurably.
  """
  if mesh.devices.flat[0].platform == "cpu":
    return {"xla_cpu_copy_insertion_use_region_analysis": True}
  return {}


def jit_train_step(
    mesh: Mesh,
    shardings: TrainState,
    batch: RolloutBatch | None = None,
    *,
    donate: bool = True,
    **static: Any,
) -> Callable[[TrainState, RolloutBatch], tuple[TrainState, dict[str, jax.Array]]]:
  """`train_step` with its static arguments bound, jitted with shardings and state donation.

  The state's in/out shardings are `shardings`; metrics come back replicated. Each call places
  the batch with its rows over ('data', 'fsdp') (`shard_batch`: free when it already is) after
  checking that the rows divide into groups x batch shards x micro-batches; the batch's sharding
  is then what the compiled step sees. One compilation per batch shape (`.jitted._cache_size()`).

  Args:
    mesh: the mesh.
    shardings: the state's shardings (`init_train_state`).
    batch: optional example batch, checked now so that a bad shape fails at start.
    donate: donate the input state's buffers to the output state.
    **static: keyword arguments of `train_step` (model_config, objective, optimizer, ...).
  """
  num_micro_batches = static.get("num_micro_batches", 1)
  if batch is not None:
    parallel.check_batch(batch.batch_size, batch.group_size or 1, mesh, num_micro_batches)
  replicated = NamedSharding(mesh, P())
  jitted = jax.jit(functools.partial(train_step, **static), in_shardings=(shardings, None),
                   out_shardings=(shardings, replicated), donate_argnums=(0,) if donate else (),
                   compiler_options=compiler_options(mesh))

  def step(state: TrainState, batch: RolloutBatch):
    parallel.check_batch(batch.batch_size, batch.group_size or 1, mesh, num_micro_batches)
    return jitted(state, shard_batch(batch, mesh))
  step.jitted = jitted
  return step


def shard_batch(batch: RolloutBatch, mesh: Mesh) -> RolloutBatch:
  """Places a batch on the mesh: rows over ('data', 'fsdp'), other leaves replicated."""
  return jax.device_put(batch, parallel.batch_shardings(batch, batch.batch_size, mesh))
