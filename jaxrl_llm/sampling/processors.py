"""Composable logit processors: functions `[B, V] float32 logits -> [B, V] logits`.

Removed tokens get -inf. They compose left to right with `compose(...)`, in the order Hugging Face
`generate` applies them (temperature, top-k, top-p, min-p), so that truncation sees tempered
probabilities.
"""

from typing import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

Processor = Callable[[Float[Array, "B V"]], Float[Array, "B V"]]
NEG_INF = -jnp.inf


def compose(*processors: Processor) -> Processor:
  def apply(logits):
    for p in processors:
      logits = p(logits)
    return logits
  return apply


def temperature(t: float) -> Processor:
  """logits / t (t > 0)."""
  if t <= 0:
    raise ValueError(f"temperature must be > 0 for this processor; got {t} (0 means greedy: "
                     "use argmax instead).")
  return lambda logits: logits / jnp.float32(t)


def top_k(k: int) -> Processor:
  """Keeps the k largest logits (ties at the k-th value are kept too)."""
  def apply(logits):
    kth = jax.lax.top_k(logits, k)[0][..., -1:]
    return jnp.where(logits < kth, NEG_INF, logits)
  return apply


def top_p(p: float) -> Processor:
  """Nucleus: keeps the smallest set of most probable tokens whose probability reaches p."""
  def apply(logits):
    sorted_logits = -jnp.sort(-logits, axis=-1)
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs           # mass strictly above each token
    keep_sorted = before < p                                # the token crossing p is kept
    # the smallest kept logit is the threshold; ties with it are kept as well
    threshold = jnp.min(jnp.where(keep_sorted, sorted_logits, jnp.inf), axis=-1, keepdims=True)
    return jnp.where(logits < threshold, NEG_INF, logits)
  return apply


def min_p(p: float) -> Processor:
  """Keeps tokens whose probability is at least p times the most probable token's."""
  def apply(logits):
    logp = jax.nn.log_softmax(logits, axis=-1)
    cutoff = jnp.max(logp, axis=-1, keepdims=True) + jnp.log(jnp.float32(p))
    return jnp.where(logp < cutoff, NEG_INF, logits)
  return apply


def extrapolate(rl_logits: Float[Array, "B V"], base_logits: Float[Array, "B V"],
                gamma: float = 0.5) -> Float[Array, "B V"]:
  """Test-time extrapolation along the RL update: (1 + γ)·z_RL − γ·z_base.

  From "On the Direction of RLVR Updates" (arXiv 2603.22117; spec seed_methods.md §5). Written as
  the issue's `base + α·(rl − base)` it is the same with α = 1 + γ. γ = 0 gives the RL model; γ > 0
  moves further along the direction the RL update moved each token's logit. Reconstruction: the
  paper's exact formula was not reachable; this is the spec's log-linear reading, and its default
  γ = 0.5 is the spec's proposal. Apply temperature and truncation after combining (the sampler
  does). Both inputs are raw logits from the same context.
  """
  return (1.0 + gamma) * rl_logits.astype(jnp.float32) - gamma * base_logits.astype(jnp.float32)
