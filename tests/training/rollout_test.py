"""Forward outputs, the rollout phase and minibatching, on a tiny model and the real sampler."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_llm import models, objectives as ob, sampling, training
from tests.training.helpers import (
    TINY, objective_with, one_device_mesh, prepared, random_batch, random_completions,
    tiny_params)


def test_forward_outputs_match_full_logits():
  params = tiny_params(0)
  batch = random_batch(0, 2, 3)
  outs = jax.jit(lambda p, b: training.forward_outputs(
      p, TINY, b, {"entropy", "hidden"}, temperature=0.7, chunk_size=4))(params, batch)
  p = batch.prompt_len
  logits = jax.jit(lambda p, b: models.forward(
      p, TINY, b.tokens, attention_mask=b.attention_mask).logits)(params, batch)
  logits = logits[:, p - 1:-1] / 0.7
  logp_all = jax.nn.log_softmax(logits, axis=-1)
  expected = jnp.take_along_axis(logp_all, batch.tokens[:, p:, None], axis=-1)[..., 0]
  np.testing.assert_allclose(outs["logp"], expected, atol=1e-5)
  np.testing.assert_allclose(outs["entropy"], -jnp.sum(jnp.exp(logp_all) * logp_all, -1),
                             atol=1e-5)
  assert outs["hidden"].shape == (6, batch.completion_len, TINY.hidden_size)
  assert set(jax.eval_shape(lambda: training.forward_outputs(params, TINY, batch, ()))) == {"logp"}


def test_sampler_and_trainer_agree_on_logp():
  """Real sampler -> batch -> rollout with the recomputation: the mismatch is float noise."""
  params = tiny_params(0)
  model = models.Transformer(TINY, params)
  cfg = sampling.SamplingConfig(max_new_tokens=6, temperature=0.8, n=4)
  comps = sampling.sample(model, [[1, 2, 3], [4, 5]], jax.random.key(0), cfg)
  rewards = jnp.asarray(jnp.sum(comps.tokens * comps.mask, axis=1) % 5, jnp.float32)
  batch = training.from_completions(comps, rewards, group_size=4)
  objective = ob.presets.grpo(kl_coef=0.04)
  state = training.TrainState.create(
      params, training.optim.optimizer(), jax.random.key(0), ref_params=params,
      objective_state=training.init_objective_state(objective, batch))
  state, rolled, metrics = jax.jit(lambda s, b: training.rollout(
      s, b, model_config=TINY, objective=objective, temperature=0.8,
      recompute_old_logp=True))(state, batch)
  assert float(metrics["rollout/logp_mismatch"]) < 1e-5
  np.testing.assert_allclose(rolled.ctx.ref_logp, rolled.ctx.old_logp, atol=1e-6)
  adv = np.asarray(rolled.ctx.advantages)
  assert adv.shape == comps.tokens.shape and np.abs(adv).max() > 0
  np.testing.assert_allclose(float(metrics["reward/mean"]), float(jnp.mean(rewards)), rtol=1e-6)


def test_rollout_filters_reach_the_train_step():
  """DAPO drops a uniform group in the rollout phase: its rows carry no loss and no gradient."""
  objective = ob.presets.dapo(max_len=6, cache_len=2)
  batch = random_batch(0, 2, 4, empty_row=False)
  batch = batch.replace(ctx=batch.ctx.replace(rewards=batch.ctx.rewards.at[:4].set(1.0)))
  state, _, rolled = prepared(objective, batch, tiny_params(0))
  assert float(jnp.sum(rolled.ctx.mask[:4])) == 0.0 and float(jnp.sum(rolled.ctx.mask[4:])) > 0


def test_group_minibatches_hold_whole_groups():
  batch = random_batch(0, 4, 3)
  parts = training.group_minibatches(batch, 2, jax.random.key(0))
  rows = np.concatenate([np.asarray(p.tokens) for p in parts])
  assert sorted(map(tuple, rows)) == sorted(map(tuple, np.asarray(batch.tokens)))
  for part in parts:
    assert part.batch_size == 6 and part.ctx.num_groups == 2
    prompts = np.asarray(part.tokens[:, :part.prompt_len]).reshape(2, 3, -1)
    assert (prompts == prompts[:, :1]).all()                 # each group shares its prompt
  in_order = training.group_minibatches(batch, 2, None)
  np.testing.assert_array_equal(in_order[0].tokens, batch.tokens[:6])


def test_objective_state_threads_through():
  objective = objective_with("token_mean", kl_coef=0.0)
  state, _, rolled = prepared(objective, random_batch(0, 2, 2), tiny_params(0),
                              mesh=one_device_mesh())
  assert isinstance(state.objective_state, ob.ObjectiveState)
  assert rolled.ctx.phase == "rollout" and rolled.ctx.advantages is not None


def test_concat_completions_left_pads_prompts():
  narrow = random_completions(0, 2, 2, prompt_width=3)
  wide = random_completions(1, 1, 2, prompt_width=5)
  both = training.batch.concat_completions([narrow, wide])
  assert both.prompt_tokens.shape == (6, 5) and both.tokens.shape == (6, 6)
  np.testing.assert_array_equal(both.prompt_tokens[:4, 2:], narrow.prompt_tokens)
  assert not np.asarray(both.prompt_mask[:4, :2]).any()
  tokens, mask = both.sequences()
  np.testing.assert_array_equal(tokens[4:], wide.sequences()[0])
  np.testing.assert_array_equal(
      training.batch.informative_groups(np.asarray([1.0, 1.0, 0.0, 1.0, 2.0, 2.0]), 2),
      [False, True, False])
  np.testing.assert_array_equal(      # groups of unequal size (Knapsack): 3, 1, 2 rows
      training.batch.informative_groups(np.asarray([1.0, 0.0, 1.0, 5.0, 2.0, 2.0]),
                                        group_ids=np.asarray([0, 0, 0, 1, 2, 2])),
      [True, False, False])
