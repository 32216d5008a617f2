"""The decoder-only transformer (Llama / SmolLM2, Qwen2/2.5, Qwen3) as one Flax NNX module.

The maths is a pure function, `forward(params, config, tokens, ...)`, over a plain dict of arrays;
`Transformer` is the NNX module that holds those arrays as `nnx.Param`s annotated with logical axis
names, so that `nnx.split(model)` gives a (graphdef, state) pair for jitted code and `parallel/` can
map the axes onto a mesh. Layers are stacked along a leading `layers` axis and run with `lax.scan`:
one compilation of one layer, whatever the depth.

Shape letters: B batch, T new tokens, S key slots (T without a cache, the cache length with one),
D hidden, N query heads, K kv heads, G = N // K, H head dim, F MLP width, V vocab, L layers.
"""

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.struct
import jax
from jax.ad_checkpoint import checkpoint_name
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Bool, Float, Int

from jaxrl_llm.models import rope
from jaxrl_llm.models.config import ModelConfig

PyTree = Any

# Logical axis names of every parameter: the one table `parallel/` maps onto mesh axes.
LOGICAL_AXES: dict[str, tuple[str, ...]] = {
    "embed": ("vocab", "embed"),
    "final_norm": ("embed",),
    "lm_head": ("embed", "vocab"),
    "layers/attn_norm": ("layers", "embed"),
    "layers/wq": ("layers", "embed", "heads", "head_dim"),
    "layers/wk": ("layers", "embed", "kv_heads", "head_dim"),
    "layers/wv": ("layers", "embed", "kv_heads", "head_dim"),
    "layers/bq": ("layers", "heads", "head_dim"),
    "layers/bk": ("layers", "kv_heads", "head_dim"),
    "layers/bv": ("layers", "kv_heads", "head_dim"),
    "layers/wo": ("layers", "heads", "head_dim", "embed"),
    "layers/bo": ("layers", "embed"),
    "layers/q_norm": ("layers", "head_dim"),
    "layers/k_norm": ("layers", "head_dim"),
    "layers/mlp_norm": ("layers", "embed"),
    "layers/w_gate": ("layers", "embed", "mlp"),
    "layers/w_up": ("layers", "embed", "mlp"),
    "layers/w_down": ("layers", "mlp", "embed"),
    "layers/b_gate": ("layers", "mlp"),
    "layers/b_up": ("layers", "mlp"),
    "layers/b_down": ("layers", "embed"),
}


def param_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
  """Flat `path -> shape` of every parameter this config has (optional ones only when enabled)."""
  c = config
  L, D, N, K, H, F, V = (c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim,
                         c.intermediate_size, c.vocab_size)
  shapes = {
      "embed": (V, D), "final_norm": (D,),
      "layers/attn_norm": (L, D), "layers/wq": (L, D, N, H), "layers/wk": (L, D, K, H),
      "layers/wv": (L, D, K, H), "layers/wo": (L, N, H, D), "layers/mlp_norm": (L, D),
      "layers/w_gate": (L, D, F), "layers/w_up": (L, D, F), "layers/w_down": (L, F, D),
  }
  if not c.tie_word_embeddings:
    shapes["lm_head"] = (D, V)
  if c.qkv_bias:
    shapes.update({"layers/bq": (L, N, H), "layers/bk": (L, K, H), "layers/bv": (L, K, H)})
  if c.o_bias:
    shapes["layers/bo"] = (L, D)
  if c.qk_norm:
    shapes.update({"layers/q_norm": (L, H), "layers/k_norm": (L, H)})
  if c.mlp_bias:
    shapes.update({"layers/b_gate": (L, F), "layers/b_up": (L, F), "layers/b_down": (L, D)})
  return shapes


def init_params(config: ModelConfig, key: jax.Array, dtype=jnp.float32, std: float = 0.02
                ) -> dict[str, Any]:
  """Random parameters (normal(0, std) matrices, unit norms, zero biases) as a nested dict."""
  flat = {}
  shapes = param_shapes(config)
  keys = jax.random.split(key, len(shapes))
  for k, (path, shape) in zip(keys, sorted(shapes.items())):
    name = path.split("/")[-1]
    if name.endswith("norm"):
      flat[path] = jnp.ones(shape, dtype)
    elif name.startswith("b"):
      flat[path] = jnp.zeros(shape, dtype)
    else:
      flat[path] = (std * jax.random.normal(k, shape, jnp.float32)).astype(dtype)
  return unflatten(flat)


def flatten(params: PyTree) -> dict[str, Any]:
  """{'layers': {'wq': x}} -> {'layers/wq': x}."""
  out = {}
  for name, value in params.items():
    if isinstance(value, dict):
      out.update({f"{name}/{k}": v for k, v in flatten(value).items()})
    else:
      out[name] = value
  return out


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
  out: dict[str, Any] = {}
  for path, value in flat.items():
    node = out
    *parents, leaf = path.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return out


# ----------------------------------------------------------------------------------- KV cache


@flax.struct.dataclass
class KVCache:
  """Preallocated key/value cache shared by all layers.

  Rows of a batch advance together: slot `index` is the next one written for every row. Left
  padding is handled by `valid`, which marks slots holding real tokens (pads never are). The
  layout is [L, B, K, S, H] so that a layer's keys feed the attention matmul without a transpose;
  after `unstack()`, k and v are tuples of L [B, K, S, H] buffers instead.
  """
  k: Float[Array, "L B K S H"] | tuple[Float[Array, "B K S H"], ...]
  v: Float[Array, "L B K S H"] | tuple[Float[Array, "B K S H"], ...]
  valid: Bool[Array, "B S"]
  index: Int[Array, ""]

  @classmethod
  def create(cls, config: ModelConfig, batch_size: int, max_len: int, dtype=jnp.float32
             ) -> "KVCache":
    shape = (config.num_layers, batch_size, config.num_kv_heads, max_len, config.head_dim)
    return cls(k=jnp.zeros(shape, dtype), v=jnp.zeros(shape, dtype),
               valid=jnp.zeros((batch_size, max_len), bool), index=jnp.zeros((), jnp.int32))

  @property
  def max_len(self) -> int:
    return self.k[0].shape[2] if isinstance(self.k, (tuple, list)) else self.k.shape[3]

  def unstack(self) -> "KVCache":
    """The same cache with k and v as tuples of per-layer [B, K, S, H] buffers, the form that
    pairs with `unstack_layers` parameters (each layer's slots are then updated in place)."""
    if isinstance(self.k, (tuple, list)):
      return self
    return self.replace(k=tuple(self.k), v=tuple(self.v))

  def repeat(self, n: int) -> "KVCache":
    """Every row repeated n times, consecutively (row i becomes rows i·n .. i·n + n − 1): the
    cache of prompts prefilled once, for n completions each."""
    if isinstance(self.k, (tuple, list)):
      k = tuple(jnp.repeat(x, n, axis=0) for x in self.k)
      v = tuple(jnp.repeat(x, n, axis=0) for x in self.v)
    else:
      k, v = jnp.repeat(self.k, n, axis=1), jnp.repeat(self.v, n, axis=1)
    return self.replace(k=k, v=v, valid=jnp.repeat(self.valid, n, axis=0))


class AttentionStats(NamedTuple):
  """Per-token statistics of head-averaged attention (`forward(attention_stats=...)`), float32.

  With Ā^loc = Σ_{l,n} w^loc_{l,n} P_{l,n} and Ā^glob likewise (P the softmax attention of head n
  of layer l, weights summing to 1: a weighted average of the chosen heads):
    waad[b, t] = Σ_{s ≤ t} Ā^loc_{t,s} · min(t − s, W)                        (every position t)
    fai[b, s]  = Σ_{t > s, r_t = 1} Ā^glob_{t,s} / max(#{t > s : r_t = 1}, 1)  (receivers r)
    mad[l, n]  = mean over receiver queries t of Σ_s P_{l,n}[t, s] · (t − s)   (whole batch)
  Distances are column differences (left padding precedes the prompt, so within a row's real
  tokens they equal position differences). Both statistics are linear in Ā, so each layer adds its
  weighted heads' share and no [B, T, T] average is ever formed.
  """
  waad: Float[Array, "B T"]
  fai: Float[Array, "B T"]
  mad: Float[Array, "L N"]


class AttentionRequest(NamedTuple):
  """What `forward(attention_stats=...)` computes (see `AttentionStats`).

  Attributes:
    local_weights: [L, N] weight of each (layer, head) in Ā^loc (sum 1; zeros select nothing).
    global_weights: [L, N] the same for Ā^glob.
    receivers: [B, T] 1 on the query positions that count for `fai` and `mad` (response tokens).
    window: W, the clip of the WAAD distance (a Python int).
  """
  local_weights: Float[Array, "L N"]
  global_weights: Float[Array, "L N"]
  receivers: Float[Array, "B T"]
  window: int


class ModelOutput(NamedTuple):
  logits: Float[Array, "B T V"] | None   # float32; None when return_logits=False
  hidden: Float[Array, "B T D"] | None   # final hidden states (after the last norm), on request
  cache: KVCache | None                  # the updated cache, when one was given
  attention: AttentionStats | None = None  # on request (`attention_stats`), cache-free pass only


# ----------------------------------------------------------------------------------- the maths


def rms_norm(x: Float[Array, "... D"], weight: Float[Array, "D"], eps: float) -> Float[Array, "... D"]:
  """weight · x / sqrt(mean(x²) + eps), normalised in float32 (as HF does), cast back to x's dtype."""
  xf = x.astype(jnp.float32)
  xf = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + eps)
  return _lead(weight, x.ndim) * xf.astype(x.dtype)


def _lead(w: Array, ndim: int) -> Array:
  """Adds leading unit axes so `w` broadcasts against an ndim-rank array (rank promotion is explicit)."""
  return w.reshape((1,) * (ndim - w.ndim) + w.shape)


FUSE_MIN_ROWS = 256   # B·T from which q/k/v (and gate/up) run as one concatenated matmul
ATTENTION_BLOCK = 64  # query block of the causal (cache-free) path: skips fully masked key blocks


def _attention_core(q_bkgth, k_bksh, v_bksh, allowed, return_probs=False):
  """softmax(q·kᵀ/√H + mask)·v with the G query heads of a kv head folded into the matmul rows.

  With `return_probs`, also the float32 probabilities [B, K, G, T, S] (attention statistics)."""
  b, kv, g, t, h = q_bkgth.shape
  s = k_bksh.shape[2]
  scores = jnp.einsum("bkmh,bksh->bkms", q_bkgth.reshape(b, kv, g * t, h), k_bksh,
                      preferred_element_type=jnp.float32)
  scores = scores.reshape(b, kv, g, t, s) * jnp.float32(1.0 / np.sqrt(h))
  scores = jnp.where(allowed, scores, jnp.finfo(jnp.float32).min)
  probs32 = jax.nn.softmax(scores, axis=-1)
  probs = probs32.astype(v_bksh.dtype).reshape(b, kv, g * t, s)
  out = jnp.einsum("bkms,bksh->bkmh", probs, v_bksh).reshape(b, kv, g, t, h)
  return (out, probs32) if return_probs else out


def _attention(q: Float[Array, "B T N H"], k_bksh: Float[Array, "B K T H"],
               v_bksh: Float[Array, "B K T H"], k_valid: Bool[Array, "B T"]) -> Float[Array, "B T N H"]:
  """Causal grouped-query attention of T tokens over themselves (no cache); k_valid masks pads.

  Queries are processed in blocks of ATTENTION_BLOCK that skip the key blocks lying wholly in
  their future, which removes close to half of the work for long sequences. Fully masked rows
  (left-padding queries) get a uniform distribution instead of NaN; their outputs are never used.
  """
  b, t, n, h = q.shape
  kv = k_bksh.shape[1]
  q_bkgth = q.reshape(b, t, kv, n // kv, h).transpose(0, 2, 3, 1, 4)
  outs = []
  for start in range(0, t, ATTENTION_BLOCK):
    end = min(start + ATTENTION_BLOCK, t)
    causal = jnp.arange(end)[None, :] <= jnp.arange(start, end)[:, None]
    allowed = causal[None, None, None] & k_valid[:, None, None, None, :end]
    outs.append(_attention_core(q_bkgth[:, :, :, start:end], k_bksh[:, :, :end],
                                v_bksh[:, :, :end], allowed))
  out = jnp.concatenate(outs, axis=3)
  return out.transpose(0, 3, 1, 2, 4).reshape(b, t, n, h)


def _attention_stats(q: Float[Array, "B T N H"], k_bksh: Float[Array, "B K T H"],
                     v_bksh: Float[Array, "B K T H"], k_valid: Bool[Array, "B T"],
                     w_loc: Float[Array, " N"], w_glob: Float[Array, " N"],
                     receivers: Float[Array, "B T"], window: int):
  """`_attention` plus one layer's share of `AttentionStats` (same blocks, same probabilities).

  Returns (out [B, T, N, H], waad [B, T], fai numerator [B, T], Σ distance per head [N]). Each
  query block's probabilities [B, N, blk, S] are reduced as soon as they exist.
  """
  b, t, n, h = q.shape
  kv = k_bksh.shape[1]
  q_bkgth = q.reshape(b, t, kv, n // kv, h).transpose(0, 2, 3, 1, 4)
  outs, waads = [], []
  fai_num = jnp.zeros((b, t), jnp.float32)
  dist_sum = jnp.zeros((n,), jnp.float32)
  recv = receivers.astype(jnp.float32)
  for start in range(0, t, ATTENTION_BLOCK):
    end = min(start + ATTENTION_BLOCK, t)
    causal = jnp.arange(end)[None, :] <= jnp.arange(start, end)[:, None]
    allowed = causal[None, None, None] & k_valid[:, None, None, None, :end]
    out, probs = _attention_core(q_bkgth[:, :, :, start:end], k_bksh[:, :, :end],
                                 v_bksh[:, :, :end], allowed, return_probs=True)
    outs.append(out)
    probs = probs.reshape(b, n, end - start, end)                       # head n = kv·G + g
    dist = jnp.maximum(jnp.arange(start, end)[:, None] - jnp.arange(end)[None, :], 0)
    dist = dist.astype(jnp.float32)                                      # [blk, S]
    a_loc = jnp.einsum("bnts,n->bts", probs, w_loc.astype(jnp.float32))
    waads.append(jnp.sum(a_loc * jnp.minimum(dist, float(window))[None], axis=-1))
    a_glob = jnp.einsum("bnts,n->bts", probs, w_glob.astype(jnp.float32))
    later = (dist > 0).astype(jnp.float32)                               # t > s
    r_blk = recv[:, start:end]
    col = jnp.einsum("bts,ts,bt->bs", a_glob, later, r_blk)
    fai_num = fai_num + jnp.pad(col, ((0, 0), (0, t - end)))
    dist_sum = dist_sum + jnp.einsum("bnts,ts,bt->n", probs, dist, r_blk)
  out = jnp.concatenate(outs, axis=3).transpose(0, 3, 1, 2, 4).reshape(b, t, n, h)
  return out, jnp.concatenate(waads, axis=1), fai_num, dist_sum


def _attention_over_slots(q: Float[Array, "B T N H"], k_bksh: Float[Array, "B K S H"],
                          v_bksh: Float[Array, "B K S H"], q_slots: Int[Array, "T"],
                          k_valid: Bool[Array, "B S"]) -> Float[Array, "B T N H"]:
  """Attention of T queries at cache slots `q_slots` over S cache slots (slot s ≤ q_slot, valid)."""
  b, t, n, h = q.shape
  kv = k_bksh.shape[1]
  q_bkgth = q.reshape(b, t, kv, n // kv, h).transpose(0, 2, 3, 1, 4)
  causal = jnp.arange(k_bksh.shape[2])[None, :] <= q_slots[:, None]               # [T, S]
  allowed = causal[None, None, None] & k_valid[:, None, None, None, :]            # [B,1,1,T,S]
  out = _attention_core(q_bkgth, k_bksh, v_bksh, allowed)
  return out.transpose(0, 3, 1, 2, 4).reshape(b, t, n, h)


def fuse_projections(params: PyTree) -> PyTree:
  """Parameters with q/k/v and gate/up concatenated into `wqkv` [L, D, (N+2K)·H] and
  `w_gate_up` [L, D, 2F], so that each layer runs two wide matmuls instead of five.

  For inference loops (the sampler's decode) where the same weights serve many steps: the
  concatenation is paid once instead of per step. `forward` accepts either form and computes the
  same function; gradients belong to the unfused form, so training keeps that one.
  """
  def fuse(layer):
    if "wqkv" in layer:
      return layer
    layer = dict(layer)
    heads_flat = lambda w: w.reshape(w.shape[:-2] + (-1,))   # [..., D, N, H] -> [..., D, N·H]
    layer["wqkv"] = jnp.concatenate([heads_flat(layer.pop(k)) for k in ("wq", "wk", "wv")],
                                    axis=-1)
    layer["w_gate_up"] = jnp.concatenate([layer.pop("w_gate"), layer.pop("w_up")], axis=-1)
    return layer

  layers = params["layers"]
  fused = tuple(map(fuse, layers)) if isinstance(layers, (tuple, list)) else fuse(layers)
  return {**params, "layers": fused}


def unstack_layers(params: PyTree) -> PyTree:
  """Parameters with `layers` as a tuple of per-layer dicts instead of stacked [L, ...] arrays.

  `forward` then runs the layers as an unrolled Python loop over a per-layer cache
  (`KVCache.unstack`); passes without a cache keep the stacked form. A scan over stacked layers slices
  each layer's weights (and, with a cache, its keys and values) out of the stacked buffers at
  every step, and XLA materialises those slices as copies; for a decode loop that reads every
  weight once per token, separate buffers remove that traffic. The price is one copy of the
  layer weights and a longer compilation, so it is meant for inference loops (the sampler).
  """
  layers = params["layers"]
  if isinstance(layers, (tuple, list)):
    return params
  num = jax.tree.leaves(layers)[0].shape[0]
  return {**params, "layers": tuple(jax.tree.map(lambda x, i=i: x[i], layers) for i in range(num))}


DENSE_NAME = "dense"


@jax.custom_vjp
def _dense_raw(x: Float[Array, "... K"], w: Float[Array, "K N"]) -> Float[Array, "... N"]:
  """x @ w whose backward multiplies by a materialised wᵀ (see `_dense_bwd`)."""
  return jnp.einsum("...k,kn->...n", x, w)


def _dense(x, w):
  return checkpoint_name(_dense_raw(x, w), DENSE_NAME)


def _dense_fwd(x, w):
  return _dense_raw(x, w), (x, w)


def _dense_bwd(res, dy):
  x, w = res
  # dx = dy · wᵀ. Left to XLA, the transpose folds into the dot, whose "contract both operands
  # over their last axis" form runs at ~45% of the plain form's rate on XLA:CPU's YNNPACK inside
  # the training loop; a transposed copy of w (K·N floats) costs far less than that.
  wt = jax.lax.optimization_barrier(jnp.swapaxes(w, 0, 1))
  dx = jnp.einsum("...n,nk->...k", dy, wt)
  k, n = w.shape
  dw = jnp.einsum("mk,mn->kn", x.reshape(-1, k), dy.reshape(-1, n))
  return dx, dw


_dense_raw.defvjp(_dense_fwd, _dense_bwd)


def _layer(config: ModelConfig, h, p, cos, sin, attend):
  """One pre-norm decoder layer. `attend(q, k, v) -> (out, new_cache_state)` binds the cache."""
  c = config
  x = rms_norm(h, p["attn_norm"], c.rms_norm_eps)
  b, t, d = x.shape
  n, kv, hd = c.num_heads, c.num_kv_heads, c.head_dim
  fused = "wqkv" in p            # pre-fused by `fuse_projections` (the sampler does this once)
  if fused or b * t >= FUSE_MIN_ROWS:   # one wide matmul beats three; at decode, only pre-fused
    w = p["wqkv"] if fused else jnp.concatenate(
        [p["wq"].reshape(d, n * hd), p["wk"].reshape(d, kv * hd), p["wv"].reshape(d, kv * hd)],
        axis=1)
    qkv = _dense(x, w)
    q = qkv[..., :n * hd].reshape(b, t, n, hd)
    k = qkv[..., n * hd:(n + kv) * hd].reshape(b, t, kv, hd)
    v = qkv[..., (n + kv) * hd:].reshape(b, t, kv, hd)
  else:
    q = _dense(x, p["wq"].reshape(d, n * hd)).reshape(b, t, n, hd)
    k = _dense(x, p["wk"].reshape(d, kv * hd)).reshape(b, t, kv, hd)
    v = _dense(x, p["wv"].reshape(d, kv * hd)).reshape(b, t, kv, hd)
  if c.qkv_bias:
    q, k, v = q + _lead(p["bq"], 4), k + _lead(p["bk"], 4), v + _lead(p["bv"], 4)
  if c.qk_norm:
    q = rms_norm(q, p["q_norm"], c.rms_norm_eps)
    k = rms_norm(k, p["k_norm"], c.rms_norm_eps)
  q = rope.apply_rope(q, cos, sin)
  k = rope.apply_rope(k, cos, sin)
  attn, new_kv = attend(q, k, v)
  o = _dense(attn.reshape(b, t, n * hd), p["wo"].reshape(n * hd, d))
  if c.o_bias:
    o = o + _lead(p["bo"], 3)
  h = h + o
  x = rms_norm(h, p["mlp_norm"], c.rms_norm_eps)
  if fused or b * t >= FUSE_MIN_ROWS:
    f = c.intermediate_size
    w = p["w_gate_up"] if fused else jnp.concatenate([p["w_gate"], p["w_up"]], axis=1)
    gate_up = _dense(x, w)
    gate, up = gate_up[..., :f], gate_up[..., f:]
  else:
    gate = _dense(x, p["w_gate"])
    up = _dense(x, p["w_up"])
  if c.mlp_bias:
    gate, up = gate + _lead(p["b_gate"], 3), up + _lead(p["b_up"], 3)
  down = _dense(jax.nn.silu(gate) * up, p["w_down"])
  if c.mlp_bias:
    down = down + _lead(p["b_down"], 3)
  return h + down, new_kv


def default_positions(attention_mask: Int[Array, "B T"], cache: KVCache | None = None
                      ) -> Int[Array, "B T"]:
  """Positions from a (left-padded) mask: number of real tokens before each one, cache included."""
  mask = attention_mask.astype(jnp.int32)
  past = 0 if cache is None else jnp.sum(cache.valid, axis=-1, dtype=jnp.int32)[:, None]
  return jnp.maximum(past + jnp.cumsum(mask, axis=-1) - 1, 0)


def output_head(params: PyTree, config: ModelConfig) -> Float[Array, "D V"]:
  """The LM-head matrix, [D, V] (the transposed embedding when tied)."""
  return params["embed"].T if config.tie_word_embeddings else params["lm_head"]


def logits_from_hidden(params: PyTree, config: ModelConfig, h: Float[Array, "*B D"]
                       ) -> Float[Array, "*B V"]:
  """float32 logits of final hidden states (any leading shape)."""
  if config.tie_word_embeddings:   # contract with the [V, D] embedding directly: no transpose
    return jnp.einsum("...d,vd->...v", h, params["embed"], preferred_element_type=jnp.float32)
  return jnp.einsum("...d,dv->...v", h, params["lm_head"], preferred_element_type=jnp.float32)


REMAT_POLICIES = ("none", "full", "dots")


def remat_policy(remat: bool | str) -> str:
  """The policy name of `remat` (False -> "none", True -> "full"); ValueError if unknown."""
  name = {False: "none", True: "full"}[remat] if isinstance(remat, bool) else remat
  if name not in REMAT_POLICIES:
    raise ValueError(f"unknown remat policy {remat!r}; valid: {', '.join(REMAT_POLICIES)} "
                     "(or a bool: False = none, True = full).")
  return name


def remat_layer(body: Callable, remat: bool | str) -> Callable:
  """A decoder-layer scan body under the named rematerialisation policy.

  "none" (or False): the backward pass keeps every layer's activations. "full" (or True): it
  keeps each layer's input only and recomputes the whole layer (least memory, one extra forward
  pass of FLOPs). "dots": it keeps the outputs of the weight matmuls (q/k/v, output, gate/up and
  down projections, the `_dense` outputs named DENSE_NAME) and recomputes the rest (norms, RoPE,
  attention, activations): almost no extra FLOPs, about 9 activations of width D per token and
  layer instead of 1.
  """
  name = remat_policy(remat)
  if name == "none":
    return body
  if name == "full":
    return jax.checkpoint(body)
  return jax.checkpoint(body, policy=jax.checkpoint_policies.save_only_these_names(DENSE_NAME))


def forward(
    params: PyTree,
    config: ModelConfig,
    tokens: Int[Array, "B T"],
    *,
    attention_mask: Int[Array, "B T"] | None = None,
    positions: Int[Array, "B T"] | None = None,
    cache: KVCache | None = None,
    return_logits: bool = True,
    return_hidden: bool = False,
    remat: bool | str = False,
    init_cache_len: int | None = None,
    attention_stats: AttentionRequest | None = None,
) -> ModelOutput:
  """Runs the decoder. Pure: `params` is the nested dict of arrays (`Transformer.params()`).

  Args:
    params: parameter dict as produced by `init_params` / the loaders.
    config: the model's ModelConfig (static).
    tokens: int32 [B, T] token ids.
    attention_mask: [B, T], 1 on real tokens, 0 on (left) padding; default all ones.
    positions: [B, T] RoPE positions; default derived from the mask (and the cache's valid slots).
    cache: optional KVCache; the T new tokens are written at slots [cache.index, cache.index + T)
      and attend to every valid earlier slot (prefill when the cache is empty, decode when T = 1).
    return_logits: compute float32 logits [B, T, V] (set False and use `logprobs.token_logp` to
      avoid materialising them).
    return_hidden: also return the final hidden states [B, T, D] (after the last RMSNorm).
    remat: what the backward pass keeps per layer, `remat_layer`'s policies: "none" (False),
      "full" (True: recompute each layer), "dots" (keep the weight matmuls' outputs).
    init_cache_len: prefill. Without a `cache`, run the cache-free (blocked causal) pass and return
      a new KVCache of this many slots holding this pass's keys/values in slots [0, T). Faster
      than writing an empty cache, whose in-place update XLA handles poorly for T > 1.
    attention_stats: an `AttentionRequest`: also return `AttentionStats` of the chosen heads
      (cache-free pass only; used by the rollout phase, no gradient intended). None (default)
      runs exactly the code it always ran.
  Returns:
    ModelOutput(logits, hidden, cache, attention).
  """
  b, t = tokens.shape
  if attention_mask is None:
    attention_mask = jnp.ones((b, t), jnp.int32)
  if positions is None:
    positions = default_positions(attention_mask, cache)
  cos, sin = rope.rope_cos_sin(positions, config)
  h = jnp.take(params["embed"], tokens, axis=0)
  layers = params["layers"]
  num_layers = config.num_layers

  if cache is None and isinstance(layers, (tuple, list)):
    raise ValueError("parameters split per layer (`unstack_layers`) are for decoding over a "
                     "cache; a pass without one takes the stacked parameters (`fuse_projections` "
                     "alone is fine).")
  if attention_stats is not None:
    if cache is not None or init_cache_len is not None:
      raise ValueError("attention_stats needs the cache-free pass: call forward without a cache "
                       "and without init_cache_len.")
    return _forward_with_stats(params, config, tokens, attention_mask, cos, sin,
                               attention_stats, return_logits, return_hidden, remat)
  if cache is None:
    k_valid = attention_mask.astype(bool)
    keep_kv = init_cache_len is not None

    def body(h, p):
      def attend(q, k, v):
        k_bkth, v_bkth = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)
        return _attention(q, k_bkth, v_bkth, k_valid), (k_bkth, v_bkth) if keep_kv else None
      h, kv = _layer(config, h, p, cos, sin, attend)
      return h, kv

    body = remat_layer(body, remat)
    h, kv = jax.lax.scan(body, h, layers)
    new_cache = None
    if keep_kv:   # prefill: the keys/values of this pass become slots [0, T) of a new cache
      if init_cache_len < t:
        raise ValueError(f"init_cache_len={init_cache_len} is shorter than the {t} tokens.")
      dtype = kv[0].dtype
      new_cache = KVCache.create(config, b, init_cache_len, dtype)
      new_cache = KVCache(
          k=jax.lax.dynamic_update_slice(new_cache.k, kv[0], (0, 0, 0, 0, 0)),
          v=jax.lax.dynamic_update_slice(new_cache.v, kv[1], (0, 0, 0, 0, 0)),
          valid=jax.lax.dynamic_update_slice(new_cache.valid, k_valid, (0, 0)),
          index=jnp.asarray(t, jnp.int32))
  elif isinstance(layers, (tuple, list)):   # per-layer buffers (`unstack_layers`): unrolled
    if not isinstance(cache.k, (tuple, list)):
      raise ValueError("parameters split per layer (`unstack_layers`) need a per-layer cache: "
                       "pass `cache.unstack()`.")
    index = cache.index
    valid = jax.lax.dynamic_update_slice(cache.valid, attention_mask.astype(bool), (0, index))
    q_slots = index + jnp.arange(t)
    ks, vs = list(cache.k), list(cache.v)
    for l, p in enumerate(layers):
      def attend(q, k, v, l=l):
        ks[l] = jax.lax.dynamic_update_slice(
            ks[l], k.transpose(0, 2, 1, 3).astype(ks[l].dtype), (0, 0, index, 0))
        vs[l] = jax.lax.dynamic_update_slice(
            vs[l], v.transpose(0, 2, 1, 3).astype(vs[l].dtype), (0, 0, index, 0))
        return _attention_over_slots(q, ks[l], vs[l], q_slots, valid), None
      h, _ = _layer(config, h, p, cos, sin, attend)
    new_cache = KVCache(k=tuple(ks), v=tuple(vs), valid=valid, index=index + t)
  else:
    if isinstance(cache.k, (tuple, list)):
      raise ValueError("a per-layer cache (`KVCache.unstack`) needs per-layer parameters: pass "
                       "`unstack_layers(params)`, or keep the stacked cache.")
    index = cache.index
    valid = jax.lax.dynamic_update_slice(cache.valid, attention_mask.astype(bool), (0, index))
    q_slots = index + jnp.arange(t)

    def body(carry, xs):
      h, ck, cv = carry
      p, l = xs

      def attend(q, k, v):
        # Write the new keys first, then read the layer back: for decode steps XLA keeps this
        # in place. (Prefill goes through the cache-free path instead, see `init_cache_len`.)
        ck2 = jax.lax.dynamic_update_slice(ck, k.transpose(0, 2, 1, 3)[None].astype(ck.dtype),
                                           (l, 0, 0, index, 0))
        cv2 = jax.lax.dynamic_update_slice(cv, v.transpose(0, 2, 1, 3)[None].astype(cv.dtype),
                                           (l, 0, 0, index, 0))
        keys = jax.lax.dynamic_index_in_dim(ck2, l, keepdims=False)
        values = jax.lax.dynamic_index_in_dim(cv2, l, keepdims=False)
        return _attention_over_slots(q, keys, values, q_slots, valid), (ck2, cv2)

      h, (ck, cv) = _layer(config, h, p, cos, sin, attend)
      return (h, ck, cv), None

    body = remat_layer(body, remat)
    (h, ck, cv), _ = jax.lax.scan(body, (h, cache.k, cache.v),
                                  (layers, jnp.arange(num_layers)))
    new_cache = KVCache(k=ck, v=cv, valid=valid, index=index + t)

  h = rms_norm(h, params["final_norm"], config.rms_norm_eps)
  logits = None
  if return_logits:
    logits = logits_from_hidden(params, config, h)
  return ModelOutput(logits=logits, hidden=h if return_hidden else None, cache=new_cache)


def _attention_shared_prefix(q: Float[Array, "B T N H"], k_bkth: Float[Array, "B K T H"],
                             v_bkth: Float[Array, "B K T H"], valid: Bool[Array, "B T"],
                             k_prefix: Float[Array, "P K S H"], v_prefix: Float[Array, "P K S H"],
                             prefix_valid: Bool[Array, "P S"]) -> Float[Array, "B T N H"]:
  """Attention of T new tokens over a prefix shared by groups of rows, then causally over their own.

  Rows come in P consecutive groups of g = B / P; group i's rows all follow prefix i, whose
  keys/values are stored once ([P, K, S, H]). One softmax runs over the concatenated [prefix |
  own] key slots, so the result is the attention over the whole row. The prefix scores fold the
  g rows of a group into the matmul rows (M = g·G·T per group and kv head), so the prefix's keys
  are read once per group, and their gradient sums over the group inside that matmul.
  """
  b, t, n, h = q.shape
  kv = k_bkth.shape[1]
  num_prefixes, _, s, _ = k_prefix.shape
  g, hg = b // num_prefixes, n // kv
  scale = jnp.float32(1.0 / np.sqrt(h))
  q_bkmh = q.reshape(b, t, kv, hg, h).transpose(0, 2, 3, 1, 4).reshape(b, kv, hg * t, h)
  q_pkrh = (q_bkmh.reshape(num_prefixes, g, kv, hg * t, h).transpose(0, 2, 1, 3, 4)
            .reshape(num_prefixes, kv, g * hg * t, h))
  s_pre = jnp.einsum("pkrh,pksh->pkrs", q_pkrh, k_prefix, preferred_element_type=jnp.float32)
  s_pre = (s_pre.reshape(num_prefixes, kv, g, hg * t, s).transpose(0, 2, 1, 3, 4)
           .reshape(b, kv, hg * t, s))
  s_own = jnp.einsum("bkmh,bkth->bkmt", q_bkmh, k_bkth, preferred_element_type=jnp.float32)
  lowest = jnp.finfo(jnp.float32).min
  pre_ok = jnp.repeat(prefix_valid, g, axis=0)[:, None, None, :]                 # [B,1,1,S]
  causal = jnp.arange(t)[None, :] <= jnp.arange(t)[:, None]                       # [Tq, Tk]
  own_ok = causal[None, None, None] & valid[:, None, None, None, :]              # [B,1,1,T,T]
  s_pre = jnp.where(pre_ok, s_pre * scale, lowest)
  s_own = jnp.where(own_ok, s_own.reshape(b, kv, hg, t, t) * scale, lowest)
  scores = jnp.concatenate([s_pre, s_own.reshape(b, kv, hg * t, t)], axis=-1)
  probs = jax.nn.softmax(scores, axis=-1).astype(v_bkth.dtype)
  p_pre = (probs[..., :s].reshape(num_prefixes, g, kv, hg * t, s).transpose(0, 2, 1, 3, 4)
           .reshape(num_prefixes, kv, g * hg * t, s))
  out_pre = jnp.einsum("pkrs,pksh->pkrh", p_pre, v_prefix)
  out_pre = (out_pre.reshape(num_prefixes, kv, g, hg * t, h).transpose(0, 2, 1, 3, 4)
             .reshape(b, kv, hg * t, h))
  out = out_pre + jnp.einsum("bkmt,bkth->bkmh", probs[..., s:], v_bkth)
  return out.reshape(b, kv, hg, t, h).transpose(0, 3, 1, 2, 4).reshape(b, t, n, h)


def forward_shared_prompts(
    params: PyTree,
    config: ModelConfig,
    tokens: Int[Array, "B L"],
    attention_mask: Int[Array, "B L"],
    *,
    prompt_len: int,
    group_size: int,
    remat: bool | str = False,
) -> Float[Array, "B T1 D"]:
  """Final hidden states of columns prompt_len − 1 … L − 1 of rows whose prompts repeat by group.

  The rows must come in consecutive groups of `group_size` whose first `prompt_len` columns
  (tokens and mask) are identical, as a GRPO batch lays them out (`sampling.sample` with n; the
  caller checks it, e.g. `training.batch.prompts_shared`). The prompt columns are then run once per
  group and the completion columns attend to that group's prompt keys/values
  (`_attention_shared_prefix`): the same function as `forward` on the whole rows (the last prompt
  column's hidden state is the group's), at roughly (P·Lp + B·T) / (B·L) of its work, P = B / g
  prompts. Under `jax.grad` the prompt's gradient is summed over its group before the prompt
  columns' backward runs, once per group.

  Each group's prompt and its g completions are packed into one row of Lp + g·T tokens for all
  but the attention, so each layer runs each weight matmul once on the P·Lp + B·T tokens (and its
  backward one weight transpose and one weight gradient), in one `lax.scan` over the layers.

  Returns:
    [B, L − prompt_len + 1, D] (the parameters' dtype): column 0 is the last prompt column (it
    predicts the first completion token), column 1 + t the completion column prompt_len + t.
  """
  b, length = tokens.shape
  p, g = prompt_len, group_size
  if not 1 <= p < length:
    raise ValueError(f"prompt_len={p} must leave at least one prompt and one completion column "
                     f"of the {length}.")
  if g < 1 or b % g:
    raise ValueError(f"group_size={g} must be >= 1 and divide the {b} rows.")
  if isinstance(params["layers"], (tuple, list)):
    raise ValueError("forward_shared_prompts takes the stacked parameters, not `unstack_layers`.")
  prompt_tokens, prompt_mask = tokens[::g, :p], attention_mask[::g, :p]
  own_mask = attention_mask[:, p:]
  num_prompts, t = b // g, length - p
  n, kv, hd = config.num_heads, config.num_kv_heads, config.head_dim
  # Packed per group: row i holds prompt i's Lp columns, then its g completions' T columns each
  # ([P, Lp + g·T]). Rows stay groups, so a batch sharded over whole groups stays sharded.
  past = jnp.repeat(jnp.sum(prompt_mask, axis=-1, dtype=jnp.int32), g, axis=0)[:, None]
  own_positions = jnp.maximum(past + jnp.cumsum(own_mask.astype(jnp.int32), axis=-1) - 1, 0)
  positions = jnp.concatenate([default_positions(prompt_mask),
                               own_positions.reshape(num_prompts, g * t)], axis=1)
  cos, sin = rope.rope_cos_sin(positions, config)
  prompt_valid, own_valid = prompt_mask.astype(bool), own_mask.astype(bool)

  def attend(q, k, v):
    def split(x, heads):   # [P, Lp + g·T, heads, H] -> [P, heads, Lp, H] and [B, heads, T, H]
      return (x[:, :p].transpose(0, 2, 1, 3),
              x[:, p:].reshape(b, t, heads, hd).transpose(0, 2, 1, 3))
    (k_pre, k_own), (v_pre, v_own) = split(k, kv), split(v, kv)
    out_pre = _attention(q[:, :p], k_pre, v_pre, prompt_valid)
    out_own = _attention_shared_prefix(q[:, p:].reshape(b, t, n, hd), k_own, v_own, own_valid,
                                       k_pre, v_pre, prompt_valid)
    return jnp.concatenate([out_pre, out_own.reshape(num_prompts, g * t, n, hd)], axis=1), None

  def body(h, lp):
    h, _ = _layer(config, h, lp, cos, sin, attend)
    return h, None

  packed = jnp.concatenate([prompt_tokens, tokens[:, p:].reshape(num_prompts, g * t)], axis=1)
  h = jnp.take(params["embed"], packed, axis=0)
  h, _ = jax.lax.scan(remat_layer(body, remat), h, params["layers"])
  h = rms_norm(h, params["final_norm"], config.rms_norm_eps)
  last = jnp.repeat(h[:, p - 1:p], g, axis=0)                                   # [B, 1, D]
  return jnp.concatenate([last, h[:, p:].reshape(b, t, -1)], axis=1)


def _forward_with_stats(params, config, tokens, attention_mask, cos, sin,
                        request: AttentionRequest, return_logits, return_hidden, remat
                        ) -> ModelOutput:
  """The cache-free pass of `forward` that also accumulates `AttentionStats` over the layers."""
  b, t = tokens.shape
  n = config.num_heads
  shape = (config.num_layers, n)
  for name, w in (("local_weights", request.local_weights),
                  ("global_weights", request.global_weights)):
    if tuple(w.shape) != shape:
      raise ValueError(f"AttentionRequest.{name} has shape {tuple(w.shape)}; the model needs "
                       f"[layers, heads] = {shape}.")
  if tuple(request.receivers.shape) != (b, t):
    raise ValueError(f"AttentionRequest.receivers has shape {tuple(request.receivers.shape)}; "
                     f"the tokens are {(b, t)}.")
  k_valid = attention_mask.astype(bool)
  h = jnp.take(params["embed"], tokens, axis=0)

  def body(h, xs):
    p, w_loc, w_glob = xs
    stats = {}

    def attend(q, k, v):
      out, waad, fai_num, dist = _attention_stats(
          q, k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3), k_valid, w_loc, w_glob,
          request.receivers, request.window)
      stats.update(waad=waad, fai=fai_num, dist=dist)
      return out, None
    h, _ = _layer(config, h, p, cos, sin, attend)
    return h, (stats["waad"], stats["fai"], stats["dist"])

  body = remat_layer(body, remat)
  h, (waad, fai_num, dist) = jax.lax.scan(
      body, h, (params["layers"], request.local_weights, request.global_weights))
  recv = request.receivers.astype(jnp.float32)
  later_receivers = jnp.sum(recv, axis=1, keepdims=True) - jnp.cumsum(recv, axis=1)  # #{t > s}
  stats = AttentionStats(
      waad=jnp.sum(waad, axis=0),
      fai=jnp.sum(fai_num, axis=0) / jnp.maximum(later_receivers, 1.0),
      mad=dist / jnp.maximum(jnp.sum(recv), 1.0))
  h = rms_norm(h, params["final_norm"], config.rms_norm_eps)
  logits = logits_from_hidden(params, config, h) if return_logits else None
  return ModelOutput(logits=logits, hidden=h if return_hidden else None, cache=None,
                     attention=stats)


# ----------------------------------------------------------------------------------- NNX module


def _param(value, path: str) -> nnx.Param:
  return nnx.Param(value, sharding_names=LOGICAL_AXES[path], eager_sharding=False)


class _Group(nnx.Module):
  """A named group of parameters (e.g. the stacked layers)."""

  def __init__(self, entries: dict[str, nnx.Param]):
    for name, value in entries.items():
      setattr(self, name, value)


@functools.partial(jax.jit, static_argnames=("config", "return_hidden"))
def _forward_jit(params, config, tokens, attention_mask, return_hidden):
  return forward(params, config, tokens, attention_mask=attention_mask, return_hidden=return_hidden)


class Transformer(nnx.Module):
  """A decoder-only LM. `model(tokens, attention_mask=mask)` -> float32 logits [B, T, V].

  For jitted code take the functional view: `model.params()` (nested dict of arrays) with
  `forward(params, model.config, ...)`, or `graphdef, state = nnx.split(model)` as usual in NNX.
  """

  def __init__(self, config: ModelConfig, params: dict[str, Any] | None = None, *,
               rngs: nnx.Rngs | None = None, dtype=jnp.float32):
    self.config = config
    if params is None:
      key = (rngs or nnx.Rngs(0)).params()
      params = init_params(config, key, dtype)
    flat = flatten(params)
    expected = param_shapes(config)
    missing = sorted(set(expected) - set(flat))
    unexpected = sorted(set(flat) - set(expected))
    if missing or unexpected:
      raise ValueError(f"Parameters do not match the config: missing {missing}, unexpected "
                       f"{unexpected}.")
    for path, shape in expected.items():
      if tuple(flat[path].shape) != shape:
        raise ValueError(f"Parameter {path} has shape {tuple(flat[path].shape)}, the config "
                         f"needs {shape}.")
    top = {k: _param(jnp.asarray(v), k) for k, v in flat.items() if "/" not in k}
    layer_entries = {k.split("/", 1)[1]: _param(jnp.asarray(v), k)
                     for k, v in flat.items() if k.startswith("layers/")}
    for name, value in top.items():
      setattr(self, name, value)
    self.layers = _Group(layer_entries)

  @property
  def dtype(self):
    return self.embed[...].dtype

  def params(self) -> dict[str, Any]:
    """The parameters as a nested dict of arrays (the input of `forward`)."""
    return nnx.to_pure_dict(nnx.state(self, nnx.Param))

  def __call__(self, tokens, attention_mask=None, *, return_hidden: bool = False):
    tokens = jnp.asarray(tokens)
    check_tokens(tokens, self.config)
    if attention_mask is None:
      attention_mask = jnp.ones(tokens.shape, jnp.int32)
    attention_mask = jnp.asarray(attention_mask)
    if attention_mask.shape != tokens.shape:
      raise ValueError(f"attention_mask has shape {attention_mask.shape}, tokens have "
                       f"{tokens.shape}: pass one mask entry per token.")
    out = _forward_jit(self.params(), self.config, tokens, attention_mask, return_hidden)
    return (out.logits, out.hidden) if return_hidden else out.logits


def check_tokens(tokens, config: ModelConfig) -> None:
  """Clear errors for token arrays of the wrong rank/dtype or ids outside [0, vocab_size)."""
  if tokens.ndim != 2:
    raise ValueError(f"tokens must be [batch, time]; got shape {tokens.shape}. Add a batch axis "
                     "(tokens[None]) for a single sequence.")
  if not jnp.issubdtype(tokens.dtype, jnp.integer):
    raise ValueError(f"tokens must be integer ids; got dtype {tokens.dtype}.")
  if isinstance(tokens, jax.core.Tracer) or tokens.size == 0:
    return
  lo, hi = int(jnp.min(tokens)), int(jnp.max(tokens))
  if lo < 0 or hi >= config.vocab_size:
    bad = hi if hi >= config.vocab_size else lo
    raise ValueError(
        f"token id {bad} is outside the vocabulary [0, {config.vocab_size}): the ids were made by "
        "a different tokenizer, or padding used an invalid id. Encode with this model's tokenizer.")
