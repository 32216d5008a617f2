"""Per-token log-probabilities and entropies, computed in chunks over the sequence.

logp[b, t] = log softmax(z[b, t])[target[b, t]] and entropy[b, t] = -Σ_v p_v log p_v, where
z = (h · W_head) / temperature. The [B, T, V] logits never exist at once: the sequence is cut into
chunks of `chunk_size` positions and each chunk's [B, c, V] float32 logits are built, reduced and
dropped; under `jax.checkpoint` the backward pass rebuilds them chunk by chunk too. This is what
keeps a 150k-vocabulary model's loss from needing B·T·V·4 bytes.
"""

import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from jaxrl_llm.models.config import ModelConfig
from jaxrl_llm.models.transformer import PyTree, forward, output_head


def _chunk_stats(h_bcd, w_dv, targets_bc, temperature):
  logits = jnp.einsum("bcd,dv->bcv", h_bcd, w_dv, preferred_element_type=jnp.float32)
  logits = logits / temperature
  lse = jax.nn.logsumexp(logits, axis=-1)
  target_logit = jnp.take_along_axis(logits, targets_bc[..., None], axis=-1)[..., 0]
  logp = target_logit - lse
  probs = jnp.exp(logits - lse[..., None])
  entropy = lse - jnp.sum(probs * logits, axis=-1)
  return logp, entropy


def token_logp(
    hidden: Float[Array, "B T D"],
    head: Float[Array, "D V"],
    targets: Int[Array, "B T"],
    *,
    temperature: float = 1.0,
    chunk_size: int = 128,
    return_entropy: bool = False,
) -> tuple[Float[Array, "B T"], Float[Array, "B T"] | None]:
  """Log-probability of `targets` (and entropy) from final hidden states, chunked over T.

  Args:
    hidden: final hidden states (after the last norm), [B, T, D].
    head: the LM-head matrix [D, V] (`transformer.output_head`).
    targets: token ids [B, T] whose log-probabilities are wanted.
    temperature: logits are divided by it (the sampler's temperature, so logp is the behaviour
      policy's).
    chunk_size: positions per chunk; memory is B·chunk_size·V·4 bytes.
    return_entropy: also return the per-token entropy of the tempered distribution.
  Returns:
    (logp [B, T] float32, entropy [B, T] float32 or None).
  """
  b, t, d = hidden.shape
  c = max(1, min(chunk_size, t))
  num_chunks = -(-t // c)
  pad = num_chunks * c - t
  if pad:
    hidden = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0)))
    targets = jnp.pad(targets, ((0, 0), (0, pad)))
  h_nbcd = hidden.reshape(b, num_chunks, c, d).swapaxes(0, 1)
  t_nbc = targets.reshape(b, num_chunks, c).swapaxes(0, 1)
  stats = functools.partial(_chunk_stats, temperature=temperature)
  if num_chunks > 1:   # one chunk: its logits exist in the backward pass either way, keep them
    stats = jax.checkpoint(stats)

  def body(_, xs):
    h_bcd, t_bc = xs
    return None, stats(h_bcd, head, t_bc)

  _, (logp, entropy) = jax.lax.scan(body, None, (h_nbcd, t_nbc))
  logp = logp.swapaxes(0, 1).reshape(b, num_chunks * c)[:, :t]
  entropy = entropy.swapaxes(0, 1).reshape(b, num_chunks * c)[:, :t]
  return logp, (entropy if return_entropy else None)


def sequence_logp(
    params: PyTree,
    config: ModelConfig,
    tokens: Int[Array, "B T"],
    attention_mask: Int[Array, "B T"],
    *,
    temperature: float = 1.0,
    chunk_size: int = 128,
    return_entropy: bool = False,
    remat: bool | str = False,
) -> tuple[Float[Array, "B T-1"], Float[Array, "B T-1"] | None]:
  """logp[b, t] = log π(tokens[b, t+1] | tokens[b, ≤t]) for a full (prompt + completion) sequence.

  Position t of the result scores token t + 1, so the result has T - 1 columns; callers slice the
  completion part. Never materialises [B, T, V].
  """
  out = forward(params, config, tokens, attention_mask=attention_mask, return_logits=False,
                return_hidden=True, remat=remat)
  return token_logp(out.hidden[:, :-1], output_head(params, config), tokens[:, 1:],
                    temperature=temperature, chunk_size=chunk_size, return_entropy=return_entropy)
