"""The sampler's draw primitives against NumPy: argmax ties and NaN, categorical frequencies."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_llm.sampling import processors


def test_argmax_is_the_first_maximum():
  rng = np.random.default_rng(0)
  z = rng.integers(0, 5, (64, 700)).astype(np.float32)      # many ties at the maximum
  z[3] = -np.inf
  z[4, 699] = 9.0                                              # maximum in the last column
  got = np.asarray(processors.argmax(jnp.asarray(z)))
  np.testing.assert_array_equal(got, np.argmax(z, axis=-1))
  z[5, 10] = np.nan
  z[6] = np.nan
  got = np.asarray(processors.argmax(jnp.asarray(z)))
  assert 0 <= got[5] < 700 and 0 <= got[6] < 700               # a NaN never gives an id >= V


def _target():
  """A 700-token distribution (3 blocks of 256, the last partial) with -inf tokens at both
  ends of a block, mass in the padded last block and on the last token, and a tail of tiny
  but nonzero tokens: float64 probabilities."""
  p = np.full(700, 1e-9)
  p[5], p[300], p[650], p[699] = 0.3, 0.2, 0.2, 0.1
  p[200:240] = 0.2 / 40
  p[[0, 6, 255, 256]] = 0.0
  z = np.log(np.where(p > 0, p, 1.0))
  z[p == 0] = -np.inf
  return z.astype(np.float32), p / p.sum()


def test_categorical_matches_the_softmax():
  z, p = _target()
  n = 60000
  draws = np.asarray(processors.categorical(jax.random.key(0), jnp.asarray(np.tile(z, (n, 1)))))
  counts = np.bincount(draws, minlength=700)
  assert counts[p == 0].sum() == 0, "a -inf token was drawn"
  tv = 0.5 * np.abs(counts / n - p).sum()
  assert tv < 0.015, tv
  # each heavy token within 5 standard errors
  for i in (5, 300, 650, 699):
    assert abs(counts[i] / n - p[i]) < 5 * np.sqrt(p[i] * (1 - p[i]) / n), (i, counts[i] / n)


def test_categorical_keys():
  z = jnp.asarray(np.tile(_target()[0], (32, 1)))
  a = processors.categorical(jax.random.key(1), z)
  b = processors.categorical(jax.random.key(1), z)
  c = processors.categorical(jax.random.key(2), z)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not np.array_equal(np.asarray(a), np.asarray(c))
  assert a.dtype == jnp.int32 and a.shape == (32,)
