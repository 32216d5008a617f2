"""The same objective on 8 simulated CPU devices, batch-sharded, equals 1 device (1e-6).

`tests/conftest.py` forces 8 host devices. The batch axis of every `[B, ...]` leaf is sharded over
a 1-D mesh; group statistics reshape `[B] -> [P, G]`, which must work whether a group sits on one
device or spans two, on Explicit and Auto meshes.
"""
import jax
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from jaxrl_llm import objectives as ob
from tests.objectives.helpers import ctx_of, random_batch

OBJECTIVES = {
    "grpo": lambda: ob.presets.grpo(),
    "dapo": lambda: ob.presets.dapo(max_len=6, cache_len=3),
    "gspo": lambda: ob.presets.gspo(eps_low=0.05, eps_high=0.05),
    "reinforce_pp": lambda: ob.presets.reinforce_pp(kl_coef=0.01),
    "trl_batch": lambda: ob.presets.trl_compatible("grpo", "batch", beta=0.04),
    # Seed papers: a group rank (rollout), action segments (LLDS), a reverse scan over T (FIPO).
    "unlikeliness": lambda: ob.presets.unlikeliness(filter_groups=False),
    "grpo_llds": lambda: ob.presets.grpo_llds(),
    "fipo": lambda: ob.presets.fipo(max_len=6, cache_len=3, half_life=4.0),
}


def _shard(ctx, mesh):
  b = ctx.batch_size

  def place(x):
    spec = P("data") if getattr(x, "ndim", 0) >= 1 and x.shape[0] == b else P()
    return jax.device_put(x, NamedSharding(mesh, spec))
  return jax.tree.map(place, ctx)


def _step(objective):
  def step(ctx):
    (loss, metrics), grad = jax.value_and_grad(
        lambda lp: objective(ctx.replace(logp=lp)), has_aux=True)(ctx.logp)
    return loss, metrics, grad
  return jax.jit(step)


@pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 (simulated) devices")
@pytest.mark.parametrize("name", sorted(OBJECTIVES))
@pytest.mark.parametrize("group_size", [4, 8])            # 4: a group per device; 8: spans two
@pytest.mark.parametrize("axis_type", [AxisType.Explicit, AxisType.Auto])
def test_eight_devices_equal_one(name, group_size, axis_type):
  batch = random_batch(0, num_prompts=32 // group_size, group_size=group_size, width=9)
  ctx = ctx_of(batch)
  objective = OBJECTIVES[name]()
  one = jax.device_put(ctx, jax.devices()[0])
  expected = _step(objective)(one)
  mesh = jax.make_mesh((8,), ("data",), axis_types=(axis_type,))
  sharded = _shard(ctx, mesh)
  assert sharded.logp.sharding.spec == P("data")
  with jax.set_mesh(mesh):
    got = _step(objective)(sharded)
  assert len(got[2].sharding.device_set) == 8
  np.testing.assert_allclose(got[0], expected[0], atol=1e-6)
  np.testing.assert_allclose(got[2], expected[2], atol=1e-6)
  for key in expected[1]:
    np.testing.assert_allclose(got[1][key], expected[1][key], atol=1e-6, err_msg=key)
