"""The optimizer from its config section: schedule values, clipping, AdamW, key checks."""
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrl_llm.training import optim


def test_warmup_then_constant():
  lr = optim.learning_rate_schedule(1e-3, warmup_steps=10)
  np.testing.assert_allclose([lr(0), lr(5), lr(10), lr(500)], [0.0, 5e-4, 1e-3, 1e-3], rtol=1e-6)


def test_warmup_then_cosine():
  lr = optim.learning_rate_schedule(1e-3, warmup_steps=10, schedule="cosine", decay_steps=110,
                                    min_lr_ratio=0.1)
  np.testing.assert_allclose(lr(10), 1e-3, rtol=1e-6)
  np.testing.assert_allclose(lr(60), 1e-4 + 0.5 * 9e-4, rtol=1e-5)   # half-way down the cosine
  np.testing.assert_allclose([lr(110), lr(1000)], [1e-4, 1e-4], rtol=1e-5)


def test_clipping_then_adamw_matches_optax_reference():
  params = {"w": jnp.asarray([1.0, -2.0, 3.0])}
  grads = {"w": jnp.asarray([30.0, 40.0, 0.0])}                       # norm 50
  tx = optim.optimizer(learning_rate=0.1, max_grad_norm=1.0, weight_decay=0.01)
  updates, _ = tx.update(grads, tx.init(params), params)
  # First Adam step: m̂/√v̂ = sign(g) (clipping does not change the sign); decoupled decay.
  expected = -0.1 * (np.sign([30.0, 40.0, 0.0]) + 0.01 * np.asarray([1.0, -2.0, 3.0]))
  np.testing.assert_allclose(updates["w"], expected, rtol=1e-5, atol=1e-7)
  clipped = optax.clip_by_global_norm(1.0).update(grads, None)[0]["w"]
  np.testing.assert_allclose(clipped, [0.6, 0.8, 0.0], rtol=1e-6)


def test_config_round_trip_and_unknown_key():
  section = optim.default_config()
  assert section.learning_rate == 1e-6 and section.max_grad_norm == 1.0
  optim.from_config(section)
  with pytest.raises(ValueError, match=r"unknown key 'learning_rte'.*did you mean 'learning_rate'"):
    optim.from_config({"learning_rte": 1e-5})
  with pytest.raises(ValueError, match="unknown schedule 'linear'"):
    optim.from_config({"schedule": "linear"})
  lr = optim.schedule_from_config({"learning_rate": 2e-5, "b1": 0.8})
  np.testing.assert_allclose(lr(3), 2e-5)
