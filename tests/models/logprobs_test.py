"""Chunked token logp / entropy against the naive float64 NumPy computation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import models


def _naive64(hidden, head, targets, temperature):
  z = hidden.astype(np.float64) @ head.astype(np.float64) / temperature
  z = z - z.max(-1, keepdims=True)
  logz = np.log(np.exp(z).sum(-1, keepdims=True))
  logp_all = z - logz
  logp = np.take_along_axis(logp_all, targets[..., None], -1)[..., 0]
  entropy = -(np.exp(logp_all) * logp_all).sum(-1)
  return logp, entropy


@pytest.mark.parametrize("t,chunk", [(37, 8), (16, 16), (5, 128), (64, 7)])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_chunked_equals_naive_float64(t, chunk, temperature):
  rng = np.random.default_rng(t * 31 + chunk)
  b, d, v = 3, 16, 211
  hidden = rng.normal(size=(b, t, d)).astype(np.float32)
  head = (0.5 * rng.normal(size=(d, v))).astype(np.float32)
  targets = rng.integers(0, v, (b, t)).astype(np.int32)
  logp, entropy = models.token_logp(jnp.asarray(hidden), jnp.asarray(head), jnp.asarray(targets),
                                    temperature=temperature, chunk_size=chunk, return_entropy=True)
  ref_logp, ref_entropy = _naive64(hidden, head, targets, temperature)
  np.testing.assert_allclose(np.asarray(logp), ref_logp, atol=2e-5, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(entropy), ref_entropy, atol=2e-5, rtol=1e-5)


def test_gradient_equals_unchunked():
  rng = np.random.default_rng(0)
  hidden = jnp.asarray(rng.normal(size=(2, 30, 8)), jnp.float32)
  head = jnp.asarray(rng.normal(size=(8, 50)), jnp.float32)
  targets = jnp.asarray(rng.integers(0, 50, (2, 30)), jnp.int32)

  def chunked(h, w):
    logp, ent = models.token_logp(h, w, targets, chunk_size=7, return_entropy=True)
    return jnp.sum(logp) + 0.3 * jnp.sum(ent)

  def full(h, w):
    logits = jnp.einsum("btd,dv->btv", h, w)
    lp = jax.nn.log_softmax(logits, -1)
    ent = -jnp.sum(jnp.exp(lp) * lp, -1)
    return jnp.sum(jnp.take_along_axis(lp, targets[..., None], -1)) + 0.3 * jnp.sum(ent)

  g1 = jax.grad(chunked, argnums=(0, 1))(hidden, head)
  g2 = jax.grad(full, argnums=(0, 1))(hidden, head)
  for a, b in zip(g1, g2):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4, rtol=1e-4)


def test_never_materialises_full_logits():
  """The compiled program's temporaries stay far below one [B, T, V] float32 buffer."""
  b, t, d, v = 4, 512, 32, 8192
  hidden = jax.ShapeDtypeStruct((b, t, d), jnp.float32)
  head = jax.ShapeDtypeStruct((d, v), jnp.float32)
  targets = jax.ShapeDtypeStruct((b, t), jnp.int32)

  def loss(h, w, y):
    return jnp.sum(models.token_logp(h, w, y, chunk_size=32)[0])

  compiled = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(hidden, head, targets).compile()
  full_bytes = b * t * v * 4
  temp = compiled.memory_analysis().temp_size_in_bytes
  assert temp < full_bytes / 4, (temp, full_bytes)


def test_sequence_logp_matches_model_logits(smollm2_tiny_params):
  params, config = smollm2_tiny_params
  rng = np.random.default_rng(3)
  tokens = jnp.asarray(rng.integers(0, config.vocab_size, (2, 12)), jnp.int32)
  mask = jnp.asarray(np.array([[1] * 12, [0] * 4 + [1] * 8]), jnp.int32)
  logp, _ = models.sequence_logp(params, config, tokens, mask, chunk_size=5)
  logits = models.forward(params, config, tokens, attention_mask=mask).logits
  ref = np.take_along_axis(np.asarray(jax.nn.log_softmax(logits[:, :-1], -1)),
                           np.asarray(tokens[:, 1:])[..., None], -1)[..., 0]
  real = np.asarray(mask[:, 1:]).astype(bool)
  np.testing.assert_allclose(np.asarray(logp)[real], ref[real], atol=1e-5)


@pytest.fixture(scope="module")
def smollm2_tiny_params():
  config = models.ModelConfig(model_type="llama", vocab_size=64, hidden_size=32,
                              intermediate_size=48, num_layers=2, num_heads=4, num_kv_heads=2,
                              head_dim=8, tie_word_embeddings=True)
  return models.init_params(config, jax.random.key(0), std=0.3), config
