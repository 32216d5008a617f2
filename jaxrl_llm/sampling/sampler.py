"""Scan-based sampler: one prefill pass, then a `lax.scan` decode over a preallocated KV cache.

`sample(model, prompts, key, SamplingConfig(...)) -> Completions`. Prompts are ragged token-id lists,
left-padded to a length bucket (so compilations stay few) and repeated `n` times, group-major: rows
i·n … i·n+n−1 are the n completions of prompt i. The decode loop runs chunks of `decode_chunk` scan
steps inside a `lax.while_loop` that exits once every row has emitted a stop token.
`extrapolation(rl_model, base_model, gamma)` is `sample` bound to two models for test-time
extrapolation (logits (1 + γ)·z_RL − γ·z_base).
"""

import dataclasses
import functools
from typing import Callable, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, Bool, Float, Int

from jaxrl_llm.models import transformer
from jaxrl_llm.models.config import ModelConfig
from jaxrl_llm.sampling import processors

# Steps of 1.5x and 2x alternately: a prompt is padded by at most half its length (powers of two
# alone padded an 80-token prompt to 128, and the trainer then scored those pads too), for at most
# twice as many compilations.
DEFAULT_BUCKETS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072,
                   4096, 6144, 8192, 12288, 16384, 24576, 32768)


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  """How to sample. Hashable: it is a static argument of the jitted decode.

  Attributes:
    max_new_tokens: completion length C (the loop stops earlier when every row has stopped).
    temperature: 0 means greedy (argmax); otherwise logits are divided by it.
    top_k: keep the k most likely tokens (0 = off).
    top_p: nucleus mass in (0, 1] (1 = off).
    min_p: keep tokens with probability ≥ min_p · max probability (0 = off).
    n: completions per prompt (the group size).
    stop_token_ids: ids that end a completion (kept in it); None = the model config's EOS ids.
    prompt_buckets: prompt lengths are padded up to the smallest bucket that fits.
    decode_chunk: scan steps between two checks of "all rows done".
  """
  max_new_tokens: int = 64
  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0
  min_p: float = 0.0
  n: int = 1
  stop_token_ids: tuple[int, ...] | None = None
  prompt_buckets: tuple[int, ...] = DEFAULT_BUCKETS
  decode_chunk: int = 16

  def __post_init__(self):
    if self.max_new_tokens < 1:
      raise ValueError(f"max_new_tokens must be >= 1; got {self.max_new_tokens}.")
    if self.n < 1:
      raise ValueError(f"n (completions per prompt) must be >= 1; got {self.n}.")
    if not self.temperature >= 0:
      raise ValueError(f"temperature must be >= 0 (0 = greedy); got {self.temperature}.")
    if not 0 < self.top_p <= 1:
      raise ValueError(f"top_p must be in (0, 1] (1 disables it); got {self.top_p}.")
    if self.top_k < 0:
      raise ValueError(f"top_k must be >= 0 (0 disables it); got {self.top_k}.")
    if not 0 <= self.min_p < 1:
      raise ValueError(f"min_p must be in [0, 1) (0 disables it); got {self.min_p}.")
    if self.decode_chunk < 1:
      raise ValueError(f"decode_chunk must be >= 1; got {self.decode_chunk}.")
    if self.stop_token_ids is not None:
      object.__setattr__(self, "stop_token_ids", tuple(int(i) for i in self.stop_token_ids))

  @property
  def greedy(self) -> bool:
    return self.temperature == 0


@flax.struct.dataclass
class Completions:
  """Sampled completions, rows group-major (row i·n + j is sample j of prompt i).

  logp[b, c] is log π(tokens[b, c] | prefix) under the temperature-scaled, *untruncated*
  distribution, log softmax(z / T), whatever top-k/top-p/min-p did to the sampling: exactly the
  quantity the trainer recomputes from the parameters (`models.sequence_logp(..., temperature=T)`).
  Greedy sampling (T = 0) reports log softmax(z), i.e. T = 1. Zero where mask is 0.
  """
  tokens: Int[Array, "B C"]          # completion ids; pad id after the stop token
  mask: Int[Array, "B C"]            # 1 up to and including the stop token
  logp: Float[Array, "B C"]
  lengths: Int[Array, "B"]           # number of completion tokens (stop token included)
  truncated: Bool[Array, "B"]        # no stop token within max_new_tokens
  prompt_tokens: Int[Array, "B Lp"]  # the left-padded prompt of each row
  prompt_mask: Int[Array, "B Lp"]    # 1 on real prompt tokens

  def sequences(self) -> tuple[Int[Array, "B L"], Int[Array, "B L"]]:
    """(prompt + completion tokens, attention mask): the full rows the trainer scores."""
    return (jnp.concatenate([self.prompt_tokens, self.tokens], axis=1),
            jnp.concatenate([self.prompt_mask, self.mask], axis=1))


# ----------------------------------------------------------------------------------- host API


def sample(model, prompts: Sequence[Sequence[int]], key: jax.Array, config: SamplingConfig,
           *, params=None, mesh: Mesh | None = None, data_axes: tuple[str, ...] = ("data", "fsdp"),
           base_model=None, gamma: float = 0.5) -> Completions:
  """Samples `config.n` completions for each prompt.

  Args:
    model: a `models.Transformer` (its config and, unless `params` is given, its parameters).
    prompts: ragged token-id lists, one per prompt.
    key: PRNG key; the same key gives the same completions.
    config: SamplingConfig.
    params: parameters to use instead of the model's (the trainer's, already on its mesh).
    mesh: optional mesh; rows are sharded over `data_axes` (those present in the mesh).
    base_model: optional base model for test-time extrapolation (`processors.extrapolate`):
      logits become (1 + gamma)·z_model − gamma·z_base before temperature and truncation.
    gamma: extrapolation strength.
  """
  mconfig: ModelConfig = model.config
  if params is None:
    params = model.params()
  tokens, mask = pad_prompts(prompts, mconfig, config)
  tokens = np.repeat(tokens, config.n, axis=0)
  mask = np.repeat(mask, config.n, axis=0)
  if mesh is not None:
    axes = tuple(a for a in data_axes if a in mesh.axis_names)
    shards = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
    if tokens.shape[0] % shards:
      raise ValueError(f"{tokens.shape[0]} rows (prompts x n) do not divide over {shards} data "
                       f"shards of the mesh {dict(mesh.shape)}; use a multiple of {shards}.")
    sharding = NamedSharding(mesh, PartitionSpec(axes if axes else None))
    tokens, mask = jax.device_put(tokens, sharding), jax.device_put(mask, sharding)
  base_params = None
  if base_model is not None:
    if base_model.config.vocab_size != mconfig.vocab_size:
      raise ValueError("base_model must share the vocabulary of model for extrapolation "
                       f"({base_model.config.vocab_size} != {mconfig.vocab_size}).")
    base_params = (base_model.params(), base_model.config)
  return generate(params, mconfig, jnp.asarray(tokens), jnp.asarray(mask), key, config,
                  base=base_params, gamma=gamma, group_size=config.n)


def extrapolation(rl_model, base_model, gamma: float = 0.5) -> Callable[..., Completions]:
  """Test-time extrapolation along the RL update, as a sampler: `sample` bound to two models.

  From "On the Direction of RLVR Updates" (Δlog p, arXiv 2603.22117; spec seed_methods.md §5):
  decoding from the RL model pushed further along the direction RL moved it from its base,
    logits = (1 + γ)·z_RL − γ·z_base      (then temperature and top-k / top-p / min-p)
  (`processors.extrapolate`), training-free. γ = 0 is the RL model; γ > 0 extrapolates (γ < 0
  interpolates towards the base, γ = −1 is the base). Default γ = 0.5, the spec's proposal: the
  paper's value was not reachable (a reconstruction; sweep {0.1, 0.25, 0.5, 1.0}). Costs a second
  forward pass (the base model's, with its own KV cache) per decode step.

    sample = sampling.extrapolation(rl_model, base_model, gamma=0.5)
    out = sample(prompts, jax.random.key(0), SamplingConfig(max_new_tokens=64, n=8))

  Args:
    rl_model: the RL-trained `models.Transformer` (z_RL).
    base_model: the model it was trained from (z_base); same vocabulary.
    gamma: extrapolation strength γ.
  Returns:
    `fn(prompts, key, config, *, params=None, mesh=None, data_axes=...) -> Completions`: `sample`'s
    signature without the models (`params` replaces the RL model's parameters).
  """
  gamma = float(gamma)
  if not np.isfinite(gamma):
    raise ValueError(f"gamma must be a finite number (0 = the RL model alone); got {gamma}.")
  if base_model.config.vocab_size != rl_model.config.vocab_size:
    raise ValueError("extrapolation needs two models over the same vocabulary: rl_model has "
                     f"{rl_model.config.vocab_size} tokens, base_model "
                     f"{base_model.config.vocab_size}; pass the base checkpoint the RL model was "
                     "trained from.")

  def sample_extrapolated(prompts: Sequence[Sequence[int]], key: jax.Array,
                          config: SamplingConfig, *, params=None, mesh: Mesh | None = None,
                          data_axes: tuple[str, ...] = ("data", "fsdp")) -> Completions:
    return sample(rl_model, prompts, key, config, params=params, mesh=mesh, data_axes=data_axes,
                  base_model=base_model, gamma=gamma)
  return sample_extrapolated


def pad_prompts(prompts: Sequence[Sequence[int]], mconfig: ModelConfig, config: SamplingConfig
                ) -> tuple[np.ndarray, np.ndarray]:
  """Validates ragged prompts and left-pads them to the smallest fitting bucket."""
  if len(prompts) == 0:
    raise ValueError("prompts is empty: pass at least one prompt (a list of token ids).")
  lengths = []
  for i, p in enumerate(prompts):
    if isinstance(p, str):
      raise ValueError(f"prompt {i} is a string; the sampler takes token ids. Encode it with the "
                       "tokenizer (e.g. tokenizer.apply_chat_template(..., tokenize=True)).")
    if len(p) == 0:
      raise ValueError(f"prompt {i} is empty: every prompt needs at least one token (e.g. BOS).")
    arr = np.asarray(p)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
      raise ValueError(f"prompt {i} must be a flat list of integer token ids.")
    if arr.min() < 0 or arr.max() >= mconfig.vocab_size:
      bad = int(arr.max() if arr.max() >= mconfig.vocab_size else arr.min())
      raise ValueError(f"prompt {i} has token id {bad}, outside the vocabulary "
                       f"[0, {mconfig.vocab_size}): encode with this model's tokenizer.")
    lengths.append(len(arr))
  longest = max(lengths)
  if longest + config.max_new_tokens > mconfig.max_position_embeddings:
    raise ValueError(
        f"prompt of {longest} tokens + max_new_tokens={config.max_new_tokens} exceeds the model's "
        f"context of {mconfig.max_position_embeddings} tokens: shorten the prompt or lower "
        "max_new_tokens.")
  bucket = next((b for b in config.prompt_buckets if b >= longest), longest)
  pad_id = mconfig.pad_token_id if mconfig.pad_token_id is not None else 0
  tokens = np.full((len(prompts), bucket), pad_id, np.int32)
  mask = np.zeros((len(prompts), bucket), np.int32)
  for i, p in enumerate(prompts):
    tokens[i, bucket - len(p):] = np.asarray(p, np.int32)
    mask[i, bucket - len(p):] = 1
  return tokens, mask


# ----------------------------------------------------------------------------------- jitted core


def _processor(config: SamplingConfig):
  procs = [processors.temperature(config.temperature)]
  if config.top_k > 0:
    procs.append(processors.top_k(config.top_k))
  if config.top_p < 1.0:
    procs.append(processors.top_p(config.top_p))
  if config.min_p > 0.0:
    procs.append(processors.min_p(config.min_p))
  return processors.compose(*procs)


def _choose(logits: Float[Array, "B V"], key, config: SamplingConfig):
  """(token, logp): logp under log softmax(z / T) (T = 1 when greedy), before truncation."""
  if config.greedy:
    tok = processors.argmax(logits)
    logp_all = jax.nn.log_softmax(logits, axis=-1)
  else:
    logp_all = jax.nn.log_softmax(logits / jnp.float32(config.temperature), axis=-1)
    tok = processors.categorical(key, _processor(config)(logits))
  return tok, jnp.take_along_axis(logp_all, tok[:, None], axis=-1)[:, 0]


@functools.partial(jax.jit, static_argnames=("mconfig", "config", "base_config", "group_size"))
def _generate(params, mconfig, prompt_tokens, prompt_mask, key, config, base_params, base_config,
              gamma, group_size):
  b, lp = prompt_tokens.shape
  chunk = config.decode_chunk
  c = config.max_new_tokens
  num_slots = lp + c + chunk          # room for the decode steps that overrun c in the last chunk
  stop_ids = jnp.asarray(config.stop_token_ids or (-1,), jnp.int32)
  pad_id = mconfig.pad_token_id if mconfig.pad_token_id is not None else 0
  # Decode weights: q/k/v and gate/up fused into one matmul each, and every layer in its own
  # buffer (an unrolled layer loop whose weights and cache slots are read in place). Both are
  # one-time copies here rather than per-step concatenations and slices inside the loop.
  decode_params = transformer.unstack_layers(transformer.fuse_projections(params))
  base_decode = None
  if base_config is not None:
    base_decode = transformer.unstack_layers(transformer.fuse_projections(base_params))

  def run(p, cfg, tokens, mask, cache):
    out = transformer.forward(p, cfg, tokens, attention_mask=mask, cache=cache,
                              return_logits=False, return_hidden=True,
                              init_cache_len=num_slots if cache is None else None)
    new_cache = out.cache.unstack() if cache is None else out.cache
    return transformer.logits_from_hidden(p, cfg, out.hidden[:, -1]), new_cache

  def logits_of(tokens, mask, caches):
    prefill = caches[0] is None    # prefill: the stacked scan (its per-layer slices amortise)
    logits, cache = run(params if prefill else decode_params, mconfig, tokens, mask, caches[0])
    if base_config is None:
      return logits, (cache,)
    base_logits, base_cache = run(base_params if prefill else base_decode, base_config, tokens,
                                  mask, caches[1])
    return processors.extrapolate(logits, base_logits, gamma), (cache, base_cache)

  # Prefill builds the caches, once per distinct prompt: rows come in groups of `group_size`
  # copies of one prompt, so the first row of each group is run and its logits and cache slots
  # are repeated (exact: a row's prefill does not depend on the other rows).
  g = group_size
  logits, caches = logits_of(prompt_tokens[::g], prompt_mask[::g], (None, None))
  if g > 1:
    logits = jnp.repeat(logits, g, axis=0)
    caches = tuple(None if c_ is None else c_.repeat(g) for c_ in caches)
  if base_config is None:
    caches = caches[:1]
  tok, logp = _choose(logits, jax.random.fold_in(key, 0), config)

  out_tokens = jnp.full((b, c + chunk), pad_id, jnp.int32).at[:, 0].set(tok)
  out_logp = jnp.zeros((b, c + chunk), jnp.float32).at[:, 0].set(logp)
  out_mask = jnp.zeros((b, c + chunk), jnp.int32).at[:, 0].set(1)
  done = jnp.isin(tok, stop_ids)
  ones = jnp.ones((b, 1), jnp.int32)

  def step(carry, _):
    caches, last, done, out_tokens, out_logp, out_mask, i = carry
    logits, caches = logits_of(last[:, None], ones, caches)
    tok, logp = _choose(logits, jax.random.fold_in(key, i), config)
    live = ~done & (i < c)
    tok = jnp.where(live, tok, pad_id)
    out_tokens = jax.lax.dynamic_update_slice(out_tokens, tok[:, None], (0, i))
    out_logp = jax.lax.dynamic_update_slice(out_logp, jnp.where(live, logp, 0.0)[:, None], (0, i))
    out_mask = jax.lax.dynamic_update_slice(out_mask, live.astype(jnp.int32)[:, None], (0, i))
    done = done | (live & jnp.isin(tok, stop_ids))
    return (caches, tok, done, out_tokens, out_logp, out_mask, i + 1), None

  def chunk_body(carry):
    carry, _ = jax.lax.scan(step, carry, None, length=chunk)
    return carry

  def not_finished(carry):
    done, i = carry[2], carry[6]
    return (i < c) & ~jnp.all(done)

  carry = (caches, tok, done, out_tokens, out_logp, out_mask, jnp.int32(1))
  carry = jax.lax.while_loop(not_finished, chunk_body, carry)
  _, _, done, out_tokens, out_logp, out_mask, _ = carry
  out_tokens, out_logp, out_mask = out_tokens[:, :c], out_logp[:, :c], out_mask[:, :c]
  return Completions(tokens=out_tokens, mask=out_mask, logp=out_logp,
                     lengths=jnp.sum(out_mask, axis=1), truncated=~done,
                     prompt_tokens=prompt_tokens, prompt_mask=prompt_mask)


def generate(params, mconfig: ModelConfig, prompt_tokens: Int[Array, "B Lp"],
             prompt_mask: Int[Array, "B Lp"], key: jax.Array, config: SamplingConfig, *,
             base=None, gamma: float = 0.5, group_size: int = 1) -> Completions:
  """The jitted core on already padded rows (one row per completion). `sample` is the usual entry.

  `base` is an optional (params, ModelConfig) pair for extrapolation. `group_size` g > 1 says
  that rows come in consecutive groups of g identical prompts (group-major, as `sample` lays them
  out): the prefill then runs on one row per group and its cache is repeated, g times less
  prefill work. Compiles once per (row count, prompt bucket, configs, g).
  """
  b = prompt_tokens.shape[0]
  if group_size < 1 or b % group_size:
    raise ValueError(f"group_size={group_size} must be >= 1 and divide the {b} rows.")
  if config.stop_token_ids is None:
    config = dataclasses.replace(config, stop_token_ids=mconfig.eos_token_ids)
  base_params, base_config = base if base is not None else (None, None)
  return _generate(params, mconfig, prompt_tokens, prompt_mask, key, config, base_params,
                   base_config, jnp.float32(gamma), group_size)
