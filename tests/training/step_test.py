"""The train step: exact micro-batch accumulation, 1 vs 8 devices, non-finite skips, traces.

Independent references: the full-batch gradient of the mean loss computed from the full
`[B, T, V]` logits (no chunking, no micro-batches, no sum/count split), and the 1-device result.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import models, objectives as ob, parallel, training
from tests.training.helpers import (
    TINY, objective_with, one_device_mesh, prepared, random_batch, rollout_fn, tiny_params)

MODES = ob.AGGREGATION_MODES


def _reference_grad(params, batch, objective, loss_state):
  """∇ of the full-batch mean loss, from full log-softmaxed logits."""
  p = batch.prompt_len

  def loss(params):
    logits = models.forward(params, TINY, batch.tokens,
                            attention_mask=batch.attention_mask).logits[:, p - 1:-1]
    logp_all = jax.nn.log_softmax(logits, axis=-1)
    logp = jnp.take_along_axis(logp_all, batch.tokens[:, p:, None], axis=-1)[..., 0]
    entropy = -jnp.sum(jnp.exp(logp_all) * logp_all, axis=-1)
    ctx = ob.LossContext.from_batch(batch.ctx, logp=logp, entropy=entropy, step=0)
    ctx, _ = objective.loss.update(ctx, loss_state)
    return ctx.loss.value()
  return jax.value_and_grad(loss)(params)


def _assert_trees_close(a, b, atol, rtol=0.0):
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=rtol,
                               err_msg=jax.tree_util.keystr(path))


@pytest.fixture(scope="module")
def rolled():
  """A rolled-out batch of 4 groups of 4 (one empty row) with reference logp, and its params."""
  objective = objective_with("token_mean")      # every mode below shares this rollout chain
  state, _, batch = prepared(objective, random_batch(0, 4, 4), tiny_params(0),
                             ref_params=tiny_params(1))
  return state.params, batch


@pytest.mark.parametrize("mode", MODES)
def test_micro_batches_equal_full_batch(mode, rolled):
  params, batch = rolled
  objective = objective_with(mode)
  loss_state = training.init_objective_state(objective, batch).loss

  @jax.jit
  def run(params, batch):
    out = {"reference": _reference_grad(params, batch, objective, loss_state)}
    for k in (1, 4, 8):   # 4: whole groups per micro-batch; 8: rows (4 groups do not split in 8)
      loss, grads, _, _ = training.accumulate_gradients(
          params, batch, loss_state, jnp.int32(0), jax.random.key(0), model_config=TINY,
          objective=objective, num_micro_batches=k)
      out[f"k{k}"] = (loss, grads)
    return out

  out = run(params, batch)
  expected_loss, expected = out["reference"]
  assert optax_norm(expected) > 1e-2             # not trivially small: a wrong count would show
  # k micro-batches = the full batch, through the same code path: float32 summation-order noise
  # only, within 1e-6 on the scale of the gradient (seq_mean_token_sum's entries here reach 1.3,
  # where float32 summation in another order moved one by 2.6e-6 on CI: 2e-7 of the norm).
  scale = max(1.0, optax_norm(out["k1"][1]))
  for k in (4, 8):
    np.testing.assert_allclose(out[f"k{k}"][0], out["k1"][0], atol=1e-6 * scale)
    _assert_trees_close(out[f"k{k}"][1], out["k1"][1], atol=1e-6 * scale)
  # ... and both equal the gradient of the full-batch mean from unchunked logits.
  for k in (1, 4):
    np.testing.assert_allclose(out[f"k{k}"][0], expected_loss, atol=1e-6, rtol=1e-5)
    _assert_trees_close(out[f"k{k}"][1], expected, atol=1e-6, rtol=1e-5)


def optax_norm(tree):
  return float(jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree.leaves(tree))))


def test_mean_of_micro_batch_means_would_differ(rolled):
  """The batch above discriminates: averaging per-micro-batch token means is not the token mean."""
  params, batch = rolled
  objective = objective_with("token_mean", kl_coef=0.0, entropy_coef=0.0)
  loss_state = training.init_objective_state(objective, batch).loss
  xs, rebuild = training.split_micro_batches(batch, 4)

  @jax.jit
  def losses(params, xs):
    def loss(b, k):
      return training.accumulate_gradients(
          params, b, loss_state, jnp.int32(0), jax.random.key(0), model_config=TINY,
          objective=objective, num_micro_batches=k)[0]
    return jnp.stack([loss(rebuild([x[j] for x in xs]), 1) for j in range(4)]), loss(batch, 4)

  per_micro_batch, full = losses(params, xs)
  assert abs(float(jnp.mean(per_micro_batch)) - float(full)) > 1e-4


def _run_two_steps(mesh, params, ref_params, batches, objective, num_micro_batches):
  optimizer = training.optim.optimizer(learning_rate=1e-3, eps=1e-6, warmup_steps=0)
  state, shardings, first = prepared(objective, batches[0], params, ref_params=ref_params,
                                     mesh=mesh, optimizer=optimizer)
  step = training.jit_train_step(mesh, shardings, first, model_config=TINY, objective=objective,
                                 optimizer=optimizer, num_micro_batches=num_micro_batches)
  state, m1 = step(state, first)
  second = training.shard_batch(batches[1], mesh)
  state, second, _ = rollout_fn(mesh, state, second, objective)(state, second)
  state, m2 = step(state, second)
  return state, (m1, m2)


def _eight_device_case():
  objective = objective_with("seq_mean_token_mean")
  params, ref_params = tiny_params(0), tiny_params(1)
  batches = [random_batch(0, 8, 2), random_batch(1, 8, 2)]
  return objective, params, ref_params, batches


@pytest.fixture(scope="module")
def one_device_run():
  """Two steps of the 8-device case on one device (shared by both mesh shapes)."""
  case = _eight_device_case()
  objective, params, ref_params, batches = case
  state, metrics = _run_two_steps(one_device_mesh(), params, ref_params, batches, objective, 2)
  return case, jax.device_get(state.params), jax.device_get(metrics)


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (simulated) devices")
@pytest.mark.parametrize("shape", [{"data": 2, "fsdp": 4, "tensor": 1},
                                   {"data": 1, "fsdp": 4, "tensor": 2}],
                         ids=["data2xfsdp4", "fsdp4xtensor2"])
def test_eight_devices_equal_one(shape, one_device_run):
  (objective, params, ref_params, batches), one_params, m_one = one_device_run
  mesh = parallel.make_mesh(shape)
  eight, m_eight = _run_two_steps(mesh, params, ref_params, batches, objective, 2)
  wq = eight.params["layers"]["wq"]
  assert len(wq.sharding.device_set) == 8
  assert wq.sharding.spec == parallel.logical_to_spec(
      models.LOGICAL_AXES["layers/wq"], wq.shape, mesh)
  assert wq.sharding.spec != jax.sharding.PartitionSpec()   # really sharded, not replicated
  for a, b in zip(m_one, m_eight):
    assert float(a["update_skipped"]) == 0.0
    np.testing.assert_allclose(a["loss"], b["loss"], atol=1e-5)
    np.testing.assert_allclose(a["grad_norm"], b["grad_norm"], rtol=1e-5)
  _assert_trees_close(jax.device_get(eight.params), one_params, atol=1e-5)
  assert not np.allclose(one_params["embed"], np.asarray(params["embed"]))


def test_non_finite_loss_is_skipped_and_counted_and_traces_once_per_shape(monkeypatch):
  # Count traces with a wrapper whose Python body runs only when jit traces (the jit fast-path
  # cache size is not a reliable count: it read 0 on CI after three calls).
  traces = []
  real_train_step = training.step.train_step

  def counting_train_step(*args, **kwargs):
    traces.append(1)
    return real_train_step(*args, **kwargs)
  monkeypatch.setattr(training.step, "train_step", counting_train_step)
  objective = ob.presets.grpo(kl_coef=0.0)
  params = tiny_params(0)
  batch = random_batch(0, 2, 4, empty_row=False)
  bad_rewards = batch.ctx.rewards.at[0].set(jnp.nan)             # group 0's advantages -> NaN
  bad = batch.replace(ctx=batch.ctx.replace(rewards=bad_rewards))
  optimizer = training.optim.optimizer(learning_rate=1e-2)
  state, shardings, bad = prepared(objective, bad, params, optimizer=optimizer)
  step = training.jit_train_step(one_device_mesh(), shardings, bad, model_config=TINY,
                                 objective=objective, optimizer=optimizer)
  before = jax.device_get(state)
  state, metrics = step(state, bad)
  assert not np.isfinite(float(metrics["loss"]))
  assert float(metrics["update_skipped"]) == 1.0 and int(state.skipped) == 1
  assert int(state.step) == 1
  _assert_trees_close(state.params, before.params, atol=0.0)
  _assert_trees_close(state.opt_state, before.opt_state, atol=0.0)
  _, _, good = prepared(objective, batch, params, optimizer=optimizer)
  state, metrics = step(state, good)
  assert float(metrics["update_skipped"]) == 0.0 and int(state.skipped) == 1
  assert np.all(np.isfinite(np.asarray(state.params["embed"])))
  assert not np.allclose(np.asarray(state.params["embed"]), np.asarray(before.params["embed"]))
  # Three steps on batches of one shape: one trace. A new batch shape: one more.
  _, _, other = prepared(objective, random_batch(5, 2, 4), params, optimizer=optimizer)
  state, _ = step(state, other)
  assert len(traces) == 1
  _, _, bigger = prepared(objective, random_batch(6, 4, 4), params, optimizer=optimizer)
  state, metrics = step(state, bigger)
  assert np.isfinite(float(metrics["loss"])) and len(traces) == 2


def test_batch_not_divisible_by_groups_times_shards():
  mesh = parallel.make_mesh({"data": 2, "fsdp": 4, "tensor": 1})
  batch = random_batch(0, 3, 4)                                    # 12 rows, 8 shards, G = 4
  objective = ob.presets.grpo(kl_coef=0.0)
  with pytest.raises(ValueError, match=r"12 rows .* group_size \(4\) x batch shards \(8\)"):
    training.jit_train_step(mesh, None, batch, model_config=TINY, objective=objective,
                            optimizer=training.optim.optimizer())


def test_missing_ref_params_is_a_clear_error():
  objective = ob.presets.grpo(kl_coef=0.04)
  with pytest.raises(ValueError, match="ref_params"):
    prepared(objective, random_batch(0, 2, 4), tiny_params(0))


def test_remat_gives_the_same_gradient(rolled):
  params, batch = rolled
  objective = objective_with("seq_mean_token_mean", entropy_coef=0.0)
  loss_state = training.init_objective_state(objective, batch).loss

  @jax.jit
  def grads(params, batch):
    return [training.accumulate_gradients(
        params, batch, loss_state, jnp.int32(0), jax.random.key(0), model_config=TINY,
        objective=objective, num_micro_batches=2, remat=remat)[1]
        for remat in ("none", "full", "dots")]

  plain, *rematted = grads(params, batch)
  for remat in rematted:
    _assert_trees_close(remat, plain, atol=1e-6, rtol=1e-5)   # fusion order only


def test_hidden_state_objective_gets_hidden_and_unembedding(rolled):
  """THR reads ctx.hidden and extras["unembedding"]: the step provides both, and it trains."""
  params, batch = rolled
  objective = ob.presets.grpo_thr(kl_coef=0.0)
  assert "hidden" in objective.requires
  loss_state = training.init_objective_state(objective, batch).loss
  loss, grads, metrics, _ = jax.jit(lambda p, b: training.accumulate_gradients(
      p, b, loss_state, jnp.int32(0), jax.random.key(0), model_config=TINY,
      objective=objective, num_micro_batches=2))(params, batch)
  assert np.isfinite(float(loss)) and optax_norm(grads) > 0
  assert any(k.startswith("thr/") for k in metrics)


def _draw_recorder(num_calls):
  """A loss transform that writes one uniform draw from `ctx.rng` per call into its state."""
  def init_fn(ctx):
    del ctx
    return jnp.zeros((), jnp.int32), jnp.full((num_calls,), -1.0)

  def update_fn(ctx, state):
    i, draws = state
    return ctx, (i + 1, draws.at[i].set(jax.random.uniform(ctx.rng)))
  return ob.LossTransform(init_fn, update_fn, frozenset(), "loss")


def test_every_micro_batch_and_step_draws_its_own_noise():
  """Transforms that draw from ctx.rng (NSR's rescue) get a fresh key per micro-batch and per
  optimizer step: 2 steps x 4 micro-batches make 8 different draws. Reusing the step's key
  across micro-batches, or `state.rng` across steps, would repeat draws."""
  k, steps = 4, 2
  objective = ob.Objective(
      rollout=ob.chain(ob.group_advantage("group")),
      loss=ob.chain(ob.ppo_clip(0.2, 0.2), _draw_recorder(k * steps),
                    ob.aggregate("token_mean"))).check()
  optimizer = training.optim.optimizer(learning_rate=1e-3, eps=1e-6)
  state, shardings, batch = prepared(objective, random_batch(0, 4, 4), tiny_params(0),
                                     optimizer=optimizer)
  step = training.jit_train_step(one_device_mesh(), shardings, model_config=TINY,
                                 objective=objective, optimizer=optimizer, num_micro_batches=k)
  for _ in range(steps):
    state, _ = step(state, batch)
  calls, draws = state.objective_state.loss[1]
  draws = np.asarray(draws)
  assert int(calls) == k * steps and draws.min() >= 0.0
  assert len(set(draws.tolist())) == k * steps, draws


def _copied_state_buffers(step, state, batch) -> list[str]:
  """Names of entry parameters (the donated state) that the compiled step copies whole."""
  hlo = step.jitted.lower(state, training.step.shard_batch(batch, one_device_mesh())).compile(
  ).as_text()
  return [line.split(" copy(")[1].split(")")[0] for line in hlo.splitlines()
          if " copy(%" in line and "opt_state" in line.split(" copy(")[1]]


def test_optimizer_state_is_updated_in_place_without_copies(monkeypatch):
  # AdamW's parameter update re-derives the new moments from the old ones while the moment
  # outputs overwrite the old buffers (donation); XLA:CPU's default copy insertion then copies
  # both moments every step (2x the parameter bytes). `compiler_options` asks for region analysis.
  objective = ob.presets.grpo(kl_coef=0.0)
  optimizer = training.optim.optimizer(learning_rate=1e-2)
  state, shardings, batch = prepared(objective, random_batch(0, 2, 4, empty_row=False),
                                     tiny_params(0), optimizer=optimizer)
  kwargs = dict(model_config=TINY, objective=objective, optimizer=optimizer)
  step = training.jit_train_step(one_device_mesh(), shardings, batch, **kwargs)
  assert _copied_state_buffers(step, state, batch) == []
  # The check can fail: without the option the same step copies the moments.
  monkeypatch.setattr(training.step, "compiler_options", lambda mesh: {})
  default = training.jit_train_step(one_device_mesh(), shardings, batch, **kwargs)
  copied = _copied_state_buffers(default, state, batch)
  assert any("mu" in name for name in copied) and any("nu" in name for name in copied), copied
