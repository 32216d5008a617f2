"""Prompts run once per group in the trainer's forward passes (`RolloutBatch.shared_prompts`).

Reference: the same batch with the flag off, which runs `models.forward` on whole rows; the
step's own references (full logits, 1 device) in step_test.py run on flagged batches too.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import training
from jaxrl_llm.training import forward as fwd
from tests.training.helpers import (
    TINY, objective_with, one_device_mesh, prepared, random_batch, random_completions,
    tiny_params)


def test_sampler_batches_are_flagged_and_a_differing_prompt_is_not():
  comps = random_completions(0, 3, 4)
  assert training.prompts_shared(comps.prompt_tokens, comps.prompt_mask, 4)
  assert random_batch(0, 3, 4).shared_prompts
  assert not training.prompts_shared(comps.prompt_tokens, comps.prompt_mask, 1)
  assert not training.prompts_shared(comps.prompt_tokens, comps.prompt_mask, None)
  assert not training.prompts_shared(comps.prompt_tokens, comps.prompt_mask, 5)   # 12 % 5
  tokens = np.asarray(comps.prompt_tokens).copy()
  tokens[5, -1] = (tokens[5, -1] + 1) % TINY.vocab_size           # row 5: group 1, 2nd member
  assert not training.prompts_shared(tokens, comps.prompt_mask, 4)
  mask = np.asarray(comps.prompt_mask).copy()
  mask[9, 0] = 1 - mask[9, 0]
  assert not training.prompts_shared(comps.prompt_tokens, mask, 4)
  rewards = jnp.zeros((12,), jnp.float32)
  assert not training.from_completions(comps.replace(prompt_tokens=jnp.asarray(tokens)), rewards,
                                       group_size=4).shared_prompts


@pytest.mark.parametrize("remat", ["none", "dots"])
def test_forward_outputs_are_those_of_whole_rows(remat):
  """logp, entropy, hidden and LaSeR's sr_logp (read after each row's last token, one row empty,
  one full) agree with the whole-row forward, values and gradients."""
  batch = random_batch(0, 3, 4)
  p = batch.prompt_len
  am = np.asarray(batch.attention_mask).copy()
  am[0, p:] = 1                                   # a truncated row
  batch = batch.replace(attention_mask=jnp.asarray(am),
                        ctx=batch.ctx.replace(mask=jnp.asarray(am[:, p:], jnp.float32)))
  assert batch.shared_prompts
  params = tiny_params(0)
  requires = {"entropy", "hidden", "sr_logp", fwd.sr_token_tag(7)}
  mask = batch.ctx.mask

  def outputs(params, shared):
    out = fwd.forward_outputs(params, TINY, batch.replace(shared_prompts=shared), requires,
                              temperature=0.7, remat=remat)
    return {k: v * (mask if v.ndim == 2 else mask[..., None] if v.ndim == 3 else 1.0)
            for k, v in out.items()}

  plain, shared = outputs(params, False), outputs(params, True)
  assert set(shared) == {"logp", "entropy", "hidden", "sr_logp"}
  for k in plain:
    np.testing.assert_allclose(shared[k], plain[k], rtol=2e-6, atol=2e-6, err_msg=k)

  def loss(shared):
    def f(params):
      out = outputs(params, shared)
      return (jnp.sum(out["logp"]) + 0.3 * jnp.sum(out["entropy"]) + jnp.sum(out["sr_logp"])
              + jnp.sum(jnp.sin(out["hidden"])))
    return f
  g_plain, g_shared = jax.grad(loss(False))(params), jax.grad(loss(True))(params)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(g_shared), jax.tree.leaves(g_plain)):
    scale = float(jnp.max(jnp.abs(b)))    # summation order differs: compare at the leaf's scale
    assert float(jnp.max(jnp.abs(a - b))) <= 4e-6 * scale + 1e-7, jax.tree_util.keystr(path)


@pytest.mark.parametrize("num_micro_batches", [1, 2, 3])
def test_train_step_is_the_same_with_and_without_sharing(num_micro_batches):
  """The whole step (rollout phase with recomputed old and reference logp, then the update):
  the same parameters. With 3 micro-batches over 6 groups each holds 2 whole groups; with a
  split that cuts groups (strided rows) the flag is ignored (see split_micro_batches)."""
  objective = objective_with("token_mean")
  results = []
  for shared in (False, True):
    batch = random_batch(1, 6, 2).replace(shared_prompts=shared)
    state, shardings, rolled = prepared(objective, batch, tiny_params(0),
                                        ref_params=tiny_params(1), mesh=one_device_mesh())
    step = training.jit_train_step(one_device_mesh(), shardings, model_config=TINY,
                                   objective=objective,
                                   optimizer=training.optim.optimizer(learning_rate=1e-3),
                                   num_micro_batches=num_micro_batches)
    state, metrics = step(state, rolled)
    results.append((rolled.ctx.old_logp, rolled.ctx.ref_logp, state.params, metrics["loss"]))
  (old0, ref0, params0, loss0), (old1, ref1, params1, loss1) = results
  np.testing.assert_allclose(old1, old0, rtol=2e-6, atol=2e-6)
  np.testing.assert_allclose(ref1, ref0, rtol=2e-6, atol=2e-6)
  np.testing.assert_allclose(loss1, loss0, rtol=1e-5, atol=1e-7)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(params1), jax.tree.leaves(params0)):
    np.testing.assert_allclose(a, b, atol=1e-5, err_msg=jax.tree_util.keystr(path))
  moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), params0, tiny_params(0))
  assert min(jax.tree.leaves(moved)) > 5e-4, moved     # Adam moves every leaf by ~lr


def test_ragged_minibatches_and_strided_micro_batches_turn_sharing_off():
  batch = random_batch(0, 4, 4)
  parts = training.ragged_minibatches(batch, 2, jax.random.key(0))
  assert all(part.ctx.group_size is None for part in parts)          # rows of different groups
  xs, rebuild = training.split_micro_batches(batch, 8)               # 4 groups into 8: strided
  assert rebuild(xs).ctx.group_size is None
  whole = training.group_minibatches(batch, 2, jax.random.key(0))
  assert all(part.shared_prompts and part.ctx.group_size == 4 for part in whole)


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (simulated) devices")
def test_rows_sharded_over_whole_groups_stay_sharded_without_communication():
  """8 groups of 2 rows over data=8 (one group per device), parameters replicated: the shared
  forward compiles to no collective at all and returns logp sharded like the rows, i.e. each
  device runs its own groups' prompts and completions (packing keeps rows = groups)."""
  from jax.sharding import NamedSharding, PartitionSpec as P
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:8]), ("data",))
  batch = random_batch(0, 8, 2)
  assert batch.shared_prompts
  rows = NamedSharding(mesh, P("data"))
  tokens = jax.device_put(batch.tokens, rows)
  mask = jax.device_put(batch.attention_mask, rows)
  params = jax.device_put(tiny_params(0), NamedSharding(mesh, P()))

  @jax.jit
  def logp(params, tokens, mask):
    return fwd.forward_outputs(params, TINY, batch.replace(tokens=tokens, attention_mask=mask),
                               ())["logp"]
  text = logp.lower(params, tokens, mask).compile().as_text()
  for op in ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter"):
    assert f" {op}(" not in text and f" {op}-start(" not in text, op
  out = logp(params, tokens, mask)
  assert out.sharding.spec == P("data")
  np.testing.assert_allclose(out, fwd.forward_outputs(tiny_params(0), TINY, batch, ())["logp"],
                             rtol=2e-6, atol=2e-6)
