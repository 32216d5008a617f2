"""Groups of unequal size (Knapsack RL's per-prompt budgets) through the whole pipeline.

A ragged host batch (group sizes 3, 1, 6, 2, 40, 4, 8: a singleton, uniform groups, a group of 40
with one success whose GRPO advantage ≈ 6.2 is clipped at 5) goes the loop's way:
`hooks.to_rollout_batch` (explicit `group_ids`, static `num_groups`), the rollout phase
(segment statistics), `group_minibatches` (ragged: equal slices of shuffled rows), micro-batches
(`split_micro_batches`' strided rows) and the loss. Checked against independent references:
float64 NumPy advantages per group; the gradient of each minibatch's mean loss from unchunked
full logits with no micro-batches; shuffled rows (non-contiguous groups) give the permuted
result (spec §5.5); and 8 simulated devices (Explicit and Auto meshes) give the 1-device numbers.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from jaxrl_llm import objectives as ob, parallel, sampling, training
from jaxrl_llm.objectives import presets
from jaxrl_llm.training import hooks as hooks_lib
from tests.training.helpers import TINY, load_config, one_device_mesh, prepared, tiny_params
from tests.training.step_test import _assert_trees_close, _reference_grad, optax_norm

SIZES = [3, 1, 6, 2, 40, 4, 8]        # B = 64
CLIP = 5.0


def _rewards(sizes, seed=0):
  """Binary rewards; for `SIZES`: group 1 a singleton, group 3 all correct, group 4 (40 rows)
  one success."""
  rng = np.random.default_rng(seed)
  out = []
  for k, n in enumerate(sizes):
    r = rng.integers(0, 2, n).astype(np.float32)
    if list(sizes) != SIZES:
      out.append(r)
      continue
    if k == 3:
      r[:] = 1.0
    if n == 40:
      r[:] = 0.0
      r[7] = 1.0
    if k == 0:
      r[:] = [1.0, 0.0, 0.0]
    out.append(r)
  return np.concatenate(out)


def host_batch(sizes=SIZES, seed=0, width=6, prompt_width=4, vocab=TINY.vocab_size):
  """A host batch as the loop builds it: rows group-major, a prompt shared per group."""
  rng = np.random.default_rng(seed)
  b, k = int(sum(sizes)), len(sizes)
  ids = np.repeat(np.arange(k), sizes)
  plens = rng.integers(1, prompt_width + 1, k)[ids]
  prompts = rng.integers(1, vocab - 1, (k, prompt_width))[ids]
  pmask = np.arange(prompt_width)[None, :] >= prompt_width - plens[:, None]
  lengths = rng.integers(1, width + 1, b)
  lengths[5] = 0                                       # an empty row: N' excludes it
  mask = np.arange(width)[None, :] < lengths[:, None]
  comps = sampling.Completions(
      tokens=np.where(mask, rng.integers(1, vocab - 1, (b, width)), 0).astype(np.int32),
      mask=mask.astype(np.int32),
      logp=np.where(mask, -rng.uniform(2.0, 5.0, (b, width)), 0.0).astype(np.float32),
      lengths=lengths.astype(np.int32), truncated=lengths == width,
      prompt_tokens=np.where(pmask, prompts, 0).astype(np.int32),
      prompt_mask=pmask.astype(np.int32))
  return hooks_lib.HostBatch(
      completions=comps, rewards=_rewards(sizes, seed), examples=[{"k": int(g)} for g in ids],
      texts=[""] * b, group_ids=ids, prompts=[f"p{g}" for g in range(k)],
      extras={"row": np.arange(b, dtype=np.int32)})


def reference_advantages(rewards, ids, clip=CLIP, eps=1e-6):
  """float64 GRPO per group (Bessel std, singleton → 0), clipped to [−clip, clip]."""
  r = np.asarray(rewards, np.float64)
  out = np.zeros_like(r)
  for g in np.unique(ids):
    rows = np.flatnonzero(ids == g)
    if rows.size < 2:
      continue
    x = r[rows]
    out[rows] = (x - x.mean()) / (x.std(ddof=1) + eps)
  return out if clip is None else np.clip(out, -clip, clip)


def knapsack_objective():
  return presets.build(load_config("knapsack").objective)


def _rollout_ctx(objective, ctx):
  state = objective.init(ctx)
  out, _ = objective.rollout.update(ctx.replace(phase="rollout"), state.rollout)
  return out


def test_the_batch_is_ragged_and_the_clip_binds():
  hb = host_batch()
  batch = hooks_lib.to_rollout_batch(hb)
  assert batch.ctx.group_size is None and batch.ctx.num_groups == len(SIZES)
  np.testing.assert_array_equal(batch.ctx.group_ids, np.repeat(np.arange(len(SIZES)), SIZES))
  unclipped = reference_advantages(hb.rewards, hb.group_ids, clip=None)
  assert np.abs(unclipped).max() > 6.0                 # the group of 40 with one success


def test_advantages_equal_the_float64_reference():
  hb = host_batch()
  ctx = _rollout_ctx(knapsack_objective(), hooks_lib.to_rollout_batch(hb).ctx)
  expected = reference_advantages(hb.rewards, hb.group_ids)
  m = np.asarray(ctx.mask)
  np.testing.assert_allclose(np.asarray(ctx.advantages), expected[:, None] * m, atol=1e-5,
                             rtol=1e-5)
  assert float(ctx.metrics["adv/clipped_frac"].value()) == pytest.approx(1 / 64)
  # Without the clip the same preset gives the unclipped reference (the clip is what binds).
  plain = _rollout_ctx(presets.grpo(kl_coef=0.0), hooks_lib.to_rollout_batch(hb).ctx)
  np.testing.assert_allclose(np.asarray(plain.advantages)[:, 0] * m[:, 0],
                             reference_advantages(hb.rewards, hb.group_ids, clip=None) * m[:, 0],
                             atol=1e-5, rtol=1e-5)


def _permuted(ctx, perm):
  b = ctx.batch_size
  return jax.tree.map(lambda x: x[perm] if getattr(x, "ndim", 0) >= 1 and x.shape[0] == b else x,
                      ctx)


def test_shuffled_rows_give_the_permuted_result():
  """Spec §5.5: rows shuffled (groups non-contiguous) → advantages, loss and ∂loss/∂logp are the
  same permutation of the ordered batch's."""
  hb = host_batch()
  objective = knapsack_objective()
  ctx = hooks_lib.to_rollout_batch(hb).ctx
  b = ctx.batch_size
  perm = np.random.default_rng(3).permutation(b)
  shuffled = _permuted(ctx, perm)
  assert np.any(np.diff(np.asarray(shuffled.group_ids)) < 0)
  logp = jnp.asarray(np.random.default_rng(4).uniform(-5, -1, ctx.mask.shape), jnp.float32)
  logp = jnp.where(ctx.mask > 0, logp, 7.0)           # garbage off the mask

  def loss_and_grad(c, lp):
    return jax.value_and_grad(lambda x: objective(c.replace(logp=x))[0])(lp)

  a = _rollout_ctx(objective, ctx).advantages
  a_shuffled = _rollout_ctx(objective, shuffled).advantages
  np.testing.assert_allclose(a_shuffled, np.asarray(a)[perm], atol=1e-6)
  loss, grad = loss_and_grad(ctx, logp)
  loss_s, grad_s = loss_and_grad(shuffled, logp[perm])
  np.testing.assert_allclose(loss_s, loss, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(grad_s, np.asarray(grad)[perm], rtol=1e-5, atol=1e-8)
  assert float(jnp.abs(grad).sum()) > 0


@pytest.fixture(scope="module")
def rolled():
  """The ragged batch after the rollout phase of the knapsack objective on the tiny model."""
  objective = knapsack_objective()
  batch = hooks_lib.to_rollout_batch(host_batch())
  state, _, rolled = prepared(objective, batch, tiny_params(0))
  return objective, state.params, batch, rolled


def test_ragged_minibatches_partition_the_rows_with_static_shapes(rolled):
  _, _, _, batch = rolled
  b = batch.batch_size
  parts = training.group_minibatches(batch, 4, jax.random.key(7))
  rows = np.concatenate([np.asarray(p.ctx.extras["row"]) for p in parts])
  assert sorted(rows.tolist()) == list(range(b))
  assert rows.tolist() != list(range(b))               # shuffled across minibatches
  for p in parts:
    r = np.asarray(p.ctx.extras["row"])
    assert p.batch_size == b // 4 and p.ctx.group_size is None
    assert p.ctx.num_groups == len(SIZES)              # static: one compiled step
    np.testing.assert_array_equal(p.ctx.group_ids, np.asarray(batch.ctx.group_ids)[r])
    np.testing.assert_array_equal(p.ctx.advantages, np.asarray(batch.ctx.advantages)[r])
    np.testing.assert_array_equal(p.tokens, np.asarray(batch.tokens)[r])
  with pytest.raises(ValueError, match="equal minibatches"):
    training.group_minibatches(batch, 5, None)


def test_minibatched_micro_batched_steps_equal_the_full_batch_objective(rolled):
  """Each minibatch's loss and gradient, through micro-batches of strided rows, equals the
  gradient of that minibatch's mean loss from unchunked full logits (no micro-batches)."""
  objective, params, _, batch = rolled
  loss_state = training.init_objective_state(objective, batch).loss
  parts = training.group_minibatches(batch, 2, jax.random.key(1))

  @jax.jit
  def run(params, mb):
    out = {"reference": _reference_grad(params, mb, objective, loss_state)}
    for k in (1, 4):
      loss, grads, _, _ = training.accumulate_gradients(
          params, mb, loss_state, jnp.int32(0), jax.random.key(0), model_config=TINY,
          objective=objective, num_micro_batches=k)
      out[f"k{k}"] = (loss, grads)
    return out

  for mb in parts:                                   # one shape: one compilation
    out = run(params, mb)
    expected_loss, expected = out["reference"]
    assert optax_norm(expected) > 1e-3
    for k in ("k1", "k4"):
      np.testing.assert_allclose(out[k][0], expected_loss, atol=1e-6, rtol=1e-5)
      _assert_trees_close(out[k][1], expected, atol=1e-6, rtol=1e-5)


def _shard_rows(ctx, mesh):
  b = ctx.batch_size

  def place(x):
    spec = P("data") if getattr(x, "ndim", 0) >= 1 and x.shape[0] == b else P()
    return jax.device_put(x, NamedSharding(mesh, spec))
  return jax.tree.map(place, ctx)


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (simulated) devices")
@pytest.mark.parametrize("axis_type", [AxisType.Explicit, AxisType.Auto])
def test_objective_on_eight_devices_equals_one(axis_type):
  """Segment statistics of ragged groups on a batch-sharded array (groups span devices)."""
  hb = host_batch()
  objective = knapsack_objective()
  ctx = hooks_lib.to_rollout_batch(hb).ctx
  ctx = ctx.replace(logp=jnp.asarray(np.random.default_rng(5).uniform(-5, -1, ctx.mask.shape),
                                     jnp.float32))

  @jax.jit
  def step(c):
    (loss, metrics), grad = jax.value_and_grad(
        lambda lp: objective(c.replace(logp=lp)), has_aux=True)(c.logp)
    return loss, _rollout_ctx(objective, c).advantages, grad

  one = step(jax.device_put(ctx, jax.devices()[0]))
  mesh = jax.make_mesh((8,), ("data",), axis_types=(axis_type,))
  with jax.set_mesh(mesh):
    eight = step(_shard_rows(ctx, mesh))
  assert len(eight[2].sharding.device_set) == 8
  for a, b in zip(one, eight):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-6, rtol=1e-6)


def _two_steps(mesh, objective, batches, num_micro_batches=2, num_minibatches=2):
  """Rollout + `num_minibatches` train steps on each batch, as the loop runs them."""
  optimizer = training.optim.optimizer(learning_rate=1e-3, eps=1e-6, warmup_steps=0)
  state, shardings, first = prepared(objective, batches[0], tiny_params(0), mesh=mesh,
                                     optimizer=optimizer)
  step = training.jit_train_step(mesh, shardings, model_config=TINY, objective=objective,
                                 optimizer=optimizer, num_micro_batches=num_micro_batches)
  roll = training.jit_rollout(mesh, state, batches[1], model_config=TINY, objective=objective,
                              recompute_old_logp=True)
  metrics = []
  for i, batch in enumerate(batches):
    if i:
      state, batch, _ = roll(state, training.shard_batch(batch, mesh))
    else:
      batch = first
    for mb in training.group_minibatches(batch, num_minibatches, jax.random.key(i)):
      state, m = step(state, mb)
      metrics.append(m)
  return jax.device_get(state.params), jax.device_get(metrics)


@pytest.mark.slow
@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (simulated) devices")
def test_train_steps_on_eight_devices_equal_one():
  """Rollout, ragged minibatches and micro-batched steps on a data x fsdp mesh of 8 = 1 device."""
  objective = knapsack_objective()
  batches = [hooks_lib.to_rollout_batch(host_batch(seed=s)) for s in (0, 1)]
  one_params, m_one = _two_steps(one_device_mesh(), objective, batches)
  mesh = parallel.make_mesh({"data": 2, "fsdp": 4, "tensor": 1})
  eight_params, m_eight = _two_steps(mesh, objective, batches)
  for a, b in zip(m_one, m_eight):
    assert float(a["update_skipped"]) == 0.0
    np.testing.assert_allclose(a["loss"], b["loss"], atol=1e-5)
    np.testing.assert_allclose(a["grad_norm"], b["grad_norm"], rtol=1e-5)
  _assert_trees_close(eight_params, one_params, atol=1e-5)
  assert not np.allclose(one_params["embed"], np.asarray(tiny_params(0)["embed"]))


def test_grpo_adv_clip_is_validated():
  with pytest.raises(ValueError, match="clip must be positive"):
    ob.group_advantage(clip=0.0)
