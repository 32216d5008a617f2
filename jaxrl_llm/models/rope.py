"""Rotary position embeddings (RoPE), with the default, linear and Llama-3 frequency rules.

Convention: the "rotate half" layout of Hugging Face Llama/Qwen, where dimension i is paired with
dimension i + H/2 (llama.cpp's interleaved layout is undone at GGUF load time).
"""

import math

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from jaxrl_llm.models.config import ModelConfig


def inverse_frequencies(config: ModelConfig) -> np.ndarray:
  """inv_freq[i] = theta^(-2i/H), i < H/2, after the config's scaling rule; float32 numpy [H/2]."""
  h = config.head_dim
  inv_freq = 1.0 / (config.rope_theta ** (np.arange(0, h, 2, dtype=np.float32) / np.float32(h)))
  inv_freq = inv_freq.astype(np.float32)
  rs = config.rope_scaling
  if rs.rope_type == "linear":
    inv_freq = inv_freq / np.float32(rs.factor)
  elif rs.rope_type == "llama3":
    # Wavelengths longer than old_len/low_freq_factor are slowed by `factor`; shorter than
    # old_len/high_freq_factor are kept; in between, a smooth interpolation of the two.
    old_len = rs.original_max_position_embeddings
    low_wavelen = old_len / rs.low_freq_factor
    high_wavelen = old_len / rs.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > low_wavelen, inv_freq / rs.factor, inv_freq)
    smooth = (old_len / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor)
    smoothed = (1 - smooth) * scaled / rs.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    inv_freq = np.where(medium, smoothed, scaled).astype(np.float32)
  return inv_freq


def rope_cos_sin(
    positions: Int[Array, "B T"], config: ModelConfig
) -> tuple[Float[Array, "B T H"], Float[Array, "B T H"]]:
  """cos and sin tables for the given integer positions, float32, duplicated over both halves."""
  inv_freq = jnp.asarray(inverse_frequencies(config))
  angles = positions.astype(jnp.float32)[..., None] * inv_freq[None, None, :]
  angles = jnp.concatenate([angles, angles], axis=-1)
  return jnp.cos(angles), jnp.sin(angles)


def apply_rope(
    x: Float[Array, "B T N H"], cos: Float[Array, "B T H"], sin: Float[Array, "B T H"]
) -> Float[Array, "B T N H"]:
  """x·cos + rotate_half(x)·sin, computed in float32 and cast back to x's dtype."""
  half = x.shape[-1] // 2
  xf = x.astype(jnp.float32)
  rotated = jnp.concatenate([-xf[..., half:], xf[..., :half]], axis=-1)
  out = xf * cos[:, :, None, :] + rotated * sin[:, :, None, :]
  return out.astype(x.dtype)
