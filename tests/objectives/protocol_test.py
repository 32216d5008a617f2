"""The protocol: LossContext, Mean, chain/named_chain, requires, phases, Objective, detaching."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import objectives as ob
from tests.objectives.helpers import ctx_of, random_batch, worked_example_ctx


def test_mean_adds_totals_and_counts():
  a, b = ob.Mean(jnp.asarray(3.0), jnp.asarray(2.0)), ob.Mean(jnp.asarray(5.0), jnp.asarray(6.0))
  assert float(a.merge(b).value()) == 1.0
  assert float(ob.sum_means([a, b, b]).total) == 13.0
  assert float(ob.Mean(jnp.asarray(4.0), jnp.asarray(0.0)).value()) == 4.0   # max(count, 1)


def test_context_is_a_pytree_with_static_group_layout():
  ctx = worked_example_ctx()
  leaves, treedef = jax.tree.flatten(ctx)
  back = jax.tree.unflatten(treedef, leaves)
  assert back.group_size == 4 and back.num_groups == 2
  out = jax.jit(lambda c: c.replace(rewards=c.rewards + 1))(ctx)
  np.testing.assert_array_equal(out.rewards, np.asarray(ctx.rewards) + 1)


def test_create_validates_shapes_and_groups():
  mask = jnp.ones((6, 3))
  with pytest.raises(ValueError, match="rewards must have shape"):
    ob.LossContext.create(mask=mask, rewards=jnp.zeros(5), old_logp=jnp.zeros((6, 3)))
  with pytest.raises(ValueError, match="group_size=4 must divide the batch size B=6"):
    ob.LossContext.create(mask=mask, rewards=jnp.zeros(6), old_logp=jnp.zeros((6, 3)),
                          group_size=4)
  with pytest.raises(ValueError, match="static num_groups"):
    ob.LossContext.create(mask=mask, rewards=jnp.zeros(6), old_logp=jnp.zeros((6, 3)),
                          group_ids=jnp.zeros(6, jnp.int32))
  with pytest.raises(ValueError, match="needs old_logp"):
    ob.LossContext.create(mask=mask, rewards=jnp.zeros(6))


def test_one_update_per_batch_uses_detached_logp_as_old_logp():
  ctx = worked_example_ctx()
  fresh = ob.LossContext.create(logp=ctx.logp, mask=ctx.mask, rewards=ctx.rewards, group_size=4)
  grad = jax.grad(lambda lp: ob.presets.grpo(kl_coef=0.0)(fresh.replace(logp=lp))[0])(ctx.logp)
  adv = np.asarray(ob.group_advantage().update(fresh, ())[0].advantages)
  lengths = np.asarray(fresh.lengths)[:, None]
  np.testing.assert_allclose(grad, -adv / (8 * lengths), atol=1e-7)   # ratio 1 everywhere


def test_batch_inputs_carry_no_gradient():
  """create/from_batch detach every batch leaf: only logp/entropy/hidden are differentiable."""
  ctx = worked_example_ctx()
  objective = ob.presets.grpo()

  def loss_of(old_logp, ref_logp, rewards):
    c = ob.LossContext.create(logp=ctx.logp, old_logp=old_logp, ref_logp=ref_logp,
                              mask=ctx.mask, rewards=rewards, group_size=4)
    return objective(c)[0]

  grads = jax.grad(loss_of, argnums=(0, 1, 2))(ctx.old_logp, ctx.ref_logp, ctx.rewards)
  for g in grads:
    assert np.all(np.asarray(g) == 0.0)

  def loss_from_batch(old_logp, logp):
    batch = ctx.replace(old_logp=old_logp, advantages=jnp.ones_like(ctx.mask))
    lctx = ob.LossContext.from_batch(batch, logp=logp)
    lctx, _ = objective.loss.update(lctx, objective.loss.init(lctx))
    return lctx.loss.value()

  g_old, g_logp = jax.grad(loss_from_batch, argnums=(0, 1))(ctx.old_logp, ctx.logp)
  assert np.all(np.asarray(g_old) == 0.0) and np.any(np.asarray(g_logp) != 0.0)


def test_chain_threads_state_and_unions_requires():
  tx = ob.chain(ob.ppo_clip(), ob.kl_penalty(0.1), ob.entropy_bonus(0.01), ob.aggregate())
  assert tx.requires == {"ref_logp", "entropy"}
  assert tx.phase == "loss"
  assert ob.chain(ob.group_advantage(), ob.tis_weights()).phase == "rollout"
  assert ob.chain(ob.group_advantage(), ob.ppo_clip()).phase == "mixed"
  assert ob.chain().phase == "any" and ob.chain().requires == frozenset()
  ctx = ctx_of(random_batch(0), with_advantages=True)
  state = tx.init(ctx)
  assert isinstance(state, tuple) and len(state) == 4
  with pytest.raises(ValueError, match="state of length"):
    tx.update(ctx, state[:2])
  with pytest.raises(TypeError, match="forget to call the factory"):
    ob.chain(ob.ppo_clip)


def test_objective_requires_only_what_its_terms_need():
  assert ob.presets.grpo().requires == {"ref_logp"}
  assert ob.presets.grpo(kl_coef=0.0).requires == frozenset()
  assert ob.presets.dapo().requires == frozenset()
  assert ob.presets.rloo(kl_coef=0.1).requires == {"ref_logp"}
  top = ob.Objective(ob.chain(ob.group_advantage()),
                     ob.chain(ob.top_entropy(), ob.ppo_clip(), ob.aggregate()))
  assert top.requires == {"entropy"}


def test_named_chain_prefixes_metrics_and_terms_so_stages_can_repeat():
  ctx = ctx_of(random_batch(1), with_advantages=True)
  tx = ob.named_chain(("pg", ob.ppo_clip()), ("kl_a", ob.kl_penalty(0.1, "k1")),
                      ("kl_b", ob.kl_penalty(0.2, "k3")), ("agg", ob.aggregate()))
  state = tx.init(ctx)
  assert set(state) == {"pg", "kl_a", "kl_b", "agg"}
  out, _ = tx.update(ctx, state)
  assert set(out.terms) == {"pg/pg", "kl_a/kl", "kl_b/kl"}
  assert {"kl_a/kl/mean", "kl_b/kl/mean", "pg/clip/frac", "agg/loss/kl_a/kl"} <= set(out.metrics)
  plain = ob.chain(ob.ppo_clip(), ob.kl_penalty(0.1, "k1"), ob.aggregate())
  plain_out, _ = plain.update(ctx, plain.init(ctx))
  k3 = ob.chain(ob.kl_penalty(0.2, "k3"), ob.aggregate())
  k3_out, _ = k3.update(ctx, k3.init(ctx))
  assert float(out.loss.value()) == pytest.approx(
      float(plain_out.loss.value()) + float(k3_out.loss.value()), rel=1e-6)
  with pytest.raises(ValueError, match="already set"):
    ob.chain(ob.kl_penalty(0.1), ob.kl_penalty(0.1)).update(ctx, ((), ()))
  with pytest.raises(ValueError, match="unique"):
    ob.named_chain(("a", ob.ppo_clip()), ("a", ob.aggregate()))


def test_objective_returns_scalar_loss_and_plain_metrics():
  loss, metrics = ob.presets.grpo()(worked_example_ctx())
  assert jnp.shape(loss) == ()
  assert {"adv/mean", "reward/mean", "clip/frac", "kl/mean", "loss/pg", "loss/kl"} <= set(metrics)
  assert all(jnp.shape(v) == () for v in metrics.values())
  assert all("/" in k and k == k.lower() for k in metrics)
  assert float(metrics["reward/mean"]) == pytest.approx(0.625)


def test_objective_errors_point_to_the_fix():
  ctx = worked_example_ctx()
  no_agg = ob.Objective(ob.chain(ob.group_advantage()), ob.chain(ob.ppo_clip()))
  with pytest.raises(ValueError, match="end it with aggregate"):
    no_agg(ctx)
  empty = ob.Objective(ob.chain(ob.group_advantage()), ob.chain(ob.aggregate()))
  with pytest.raises(ValueError, match="found no loss terms"):
    empty(ctx)
  with pytest.raises(ValueError, match="needs ctx.logp"):
    ob.presets.grpo()(ctx.replace(logp=None))
  with pytest.raises(ValueError, match="`kl_penalty` needs `ref_logp`.*training.forward_outputs"):
    ob.presets.grpo()(ctx.replace(ref_logp=None))
  with pytest.raises(ValueError, match="`ppo_clip` needs `advantages`.*advantage estimator"):
    ob.chain(ob.ppo_clip(), ob.aggregate()).update(ctx, ((), ()))


def test_split_rows_keeps_groups_when_possible():
  ctx = ctx_of(random_batch(2))
  halves = ob.split_rows(ctx, 2)
  assert [h.batch_size for h in halves] == [8, 8]
  assert all(h.group_size == 4 and h.num_groups == 2 for h in halves)
  eighths = ob.split_rows(ctx, 8)
  assert all(h.group_size is None for h in eighths)
  np.testing.assert_array_equal(np.concatenate([h.mask for h in halves]), ctx.mask)
  with pytest.raises(ValueError, match="cannot split"):
    ob.split_rows(ctx, 3)


def test_stateless_and_identity():
  ctx = worked_example_ctx()
  tx = ob.stateless(lambda c: c.replace(rewards=c.rewards * 2), requires=("hidden",))
  assert tx.requires == {"hidden"} and tx.init(ctx) == ob.EmptyState()
  out, _ = tx.update(ctx, tx.init(ctx))
  np.testing.assert_array_equal(out.rewards, 2 * np.asarray(ctx.rewards))
  out, _ = ob.identity().update(ctx, ())
  assert out is ctx
  with pytest.raises(ValueError, match="phase must be one of"):
    ob.stateless(lambda c: c, phase="train")
