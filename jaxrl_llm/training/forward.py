"""The forward passes the trainer runs: only what the objective `requires`.

Per-token logprobs come from the final hidden states through `models.token_logp`, chunked over
the sequence under remat, so a `[B, T, V]` float32 tensor never exists (DESIGN.md, Training).

A batch with `shared_prompts` (the sampler's n completions per prompt, checked when the batch is
built) runs each group's prompt once (`models.forward_shared_prompts`): the same outputs and
gradients up to float summation order, at (P·Lp + B·T) / (B·(Lp + T)) of the layer work. The
attention statistics ("waad", "fai") keep the whole-row pass.

Outputs on request (names in the objective's `requires`, which `forward_outputs` receives):

  "entropy"  [B, T]  entropy of the tempered next-token distribution (differentiable).
  "hidden"   [B, T, D] the final hidden state that predicts each completion token.
  "sr_logp"  [B]     LaSeR's self-reward score (spec B8): log π_θ(z | prompt, completion), read at
                     the position right after each row's last completion token (the stop token is
                     part of the completion; a truncated row's last token is its last column; an
                     empty completion reads after the prompt). It is the next-token distribution
                     of the hidden state at column `prompt_len + length − 1`, so no token is
                     appended and no [B, T, V] tensor forms: one [B, V] row of logits. Tempered
                     like `logp` (logits / temperature; a transform multiplies by τ as the LaSeR
                     code does). Differentiable in the loss phase; the rollout phase's value is
                     the old policy's (stop-gradient).
  "waad", "fai" [B, T] attention statistics of the current/old policy (spec B13; no gradient):
                     `models.AttentionStats` of the chosen heads over the completion columns,
                     with only response tokens as FAI receivers; 0 off the completion mask.

Parameters of these outputs travel as tags in `requires` ("name=value" strings), so that the
objective alone decides them (no loop or config plumbing): the rollout and the train step pass the
tags of the whole objective (either phase may declare them; two different values for one key are
an error) with the names their phase requires:

  "sr_token=<id>"          z, the self-reward token id (required with "sr_logp"). Alternatively
                           the batch may carry `ctx.extras["sr_token"]` ([B] int, e.g. from a
                           hook); the tag wins when both exist.
  "attn_window=<W>"        WAAD's distance clip W (default 10).
  "attn_local=l.h,l.h"     the local heads as layer.head pairs; "attn_global=..." the global ones.
  "attn_heads=<k>"         without explicit lists: k heads per set (default 4), chosen on the batch
                           by mean attention distance over response queries (`models.AttentionStats
                           .mad`): the k smallest are local, the k largest global. This costs one
                           extra statistics-only forward.
Build tags with `sr_token_tag(z)` and `attention_tags(...)`, or as the plain strings above.
"""
import dataclasses
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from jaxrl_llm import models
from jaxrl_llm.models import ModelConfig
from jaxrl_llm.models.transformer import AttentionRequest
from jaxrl_llm.training.batch import RolloutBatch

PyTree = Any
FORWARD_REQUIRES = ("entropy", "hidden", "sr_logp", "waad", "fai")
ATTENTION_REQUIRES = ("waad", "fai")
# Outputs that reach the transforms as `ctx.extras[name]` (step.py, rollout.py), not ctx fields.
EXTRA_OUTPUTS = ("sr_logp", "waad", "fai")
_TAG_KEYS = ("sr_token", "attn_window", "attn_local", "attn_global", "attn_heads")


@dataclasses.dataclass(frozen=True)
class ForwardOptions:
  """The parameters of the on-request outputs, parsed from the tags in `requires`."""
  sr_token: int | None = None
  window: int = 10
  num_heads: int = 4
  local_heads: tuple[tuple[int, int], ...] = ()
  global_heads: tuple[tuple[int, int], ...] = ()


def sr_token_tag(token_id: int) -> str:
  """The `requires` tag that names LaSeR's self-reward token z."""
  return f"sr_token={int(token_id)}"


def attention_tags(window: int = 10, local_heads: str = "", global_heads: str = "",
                   num_heads: int = 4) -> frozenset[str]:
  """`requires` tags of the attention statistics (see the module docstring)."""
  tags = {f"attn_window={int(window)}", f"attn_heads={int(num_heads)}"}
  if local_heads:
    tags.add(f"attn_local={local_heads}")
  if global_heads:
    tags.add(f"attn_global={global_heads}")
  return frozenset(tags)


def parse_heads(text: str) -> tuple[tuple[int, int], ...]:
  """"0.1,2.3" -> ((0, 1), (2, 3)); a ValueError on anything else."""
  out = []
  for item in (x.strip() for x in text.split(",")):
    if not item:
      continue
    parts = item.split(".")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
      raise ValueError(f"bad head {item!r} in {text!r}: write heads as layer.head pairs separated "
                       "by commas, e.g. '0.1,3.2'.")
    out.append((int(parts[0]), int(parts[1])))
  return tuple(out)


def forward_options(requires: Iterable[str]) -> ForwardOptions:
  """Parses the "key=value" tags of `requires` (other names are ignored)."""
  values: dict[str, str] = {}
  for name in requires:
    if not isinstance(name, str) or "=" not in name:
      continue
    key, value = name.split("=", 1)
    if key not in _TAG_KEYS:
      raise ValueError(f"unknown forward tag {name!r} in the objective's requires; valid keys: "
                       f"{_TAG_KEYS}.")
    if key in values and values[key] != value:
      raise ValueError(f"the objective's requires sets {key} twice ({values[key]!r} and "
                       f"{value!r}): transforms must agree on it.")
    values[key] = value
  try:
    return ForwardOptions(
        sr_token=int(values["sr_token"]) if "sr_token" in values else None,
        window=int(values.get("attn_window", 10)),
        num_heads=int(values.get("attn_heads", 4)),
        local_heads=parse_heads(values.get("attn_local", "")),
        global_heads=parse_heads(values.get("attn_global", "")))
  except ValueError as e:
    raise ValueError(f"bad forward tag in the objective's requires: {e}") from None


def _head_weights(heads: tuple[tuple[int, int], ...], config: ModelConfig, what: str
                  ) -> Float[Array, "L N"]:
  w = np.zeros((config.num_layers, config.num_heads), np.float32)
  for layer, head in heads:
    if not (0 <= layer < config.num_layers and 0 <= head < config.num_heads):
      raise ValueError(f"{what} head {layer}.{head} is outside the model's {config.num_layers} "
                       f"layers x {config.num_heads} heads.")
    w[layer, head] = 1.0
  return jnp.asarray(w / max(len(set(heads)), 1))


def select_heads(mad: Float[Array, "L N"], k: int) -> tuple[Float[Array, "L N"],
                                                             Float[Array, "L N"]]:
  """(local, global) weights: 1/k on the k heads of smallest / largest mean attention distance."""
  flat = mad.reshape(-1)
  k = max(1, min(k, flat.shape[0]))
  one_hot = lambda idx: jnp.zeros_like(flat).at[idx].set(1.0 / k).reshape(mad.shape)
  return one_hot(jax.lax.top_k(-flat, k)[1]), one_hot(jax.lax.top_k(flat, k)[1])


def attention_request(params: PyTree, model_config: ModelConfig, batch: RolloutBatch,
                      options: ForwardOptions) -> AttentionRequest:
  """The heads and receivers of the attention statistics of `batch` (see the module docstring).

  Explicit head lists are used as given (a missing set falls back to the batch choice); without
  them one statistics-only forward measures every head's mean attention distance first.
  """
  p = batch.prompt_len
  receivers = batch.attention_mask.at[:, :p].set(0).astype(jnp.float32)
  c = model_config
  zeros = jnp.zeros((c.num_layers, c.num_heads), jnp.float32)
  local = _head_weights(options.local_heads, c, "local") if options.local_heads else None
  glob = _head_weights(options.global_heads, c, "global") if options.global_heads else None
  if local is None or glob is None:
    probe = models.forward(params, c, batch.tokens, attention_mask=batch.attention_mask,
                           return_logits=False,
                           attention_stats=AttentionRequest(zeros, zeros, receivers,
                                                            options.window))
    auto_local, auto_glob = select_heads(jax.lax.stop_gradient(probe.attention.mad),
                                         options.num_heads)
    local = auto_local if local is None else local
    glob = auto_glob if glob is None else glob
  return AttentionRequest(local, glob, receivers, options.window)


def _sr_logp(params, model_config, batch, tail, z, temperature) -> Float[Array, " B"]:
  """`tail`: the final hidden states of columns prompt_len − 1 … L − 1."""
  lengths = jnp.sum(batch.attention_mask[:, batch.prompt_len:], axis=1).astype(jnp.int32)
  h = jnp.take_along_axis(tail, lengths[:, None, None], axis=1)[:, 0]             # [B, D]
  logits = models.logits_from_hidden(params, model_config, h) / temperature        # [B, V]
  z = jnp.broadcast_to(jnp.asarray(z, jnp.int32), (h.shape[0],))
  target = jnp.take_along_axis(logits, z[:, None], axis=1)[:, 0]
  return target - jax.nn.logsumexp(logits, axis=-1)


def forward_outputs(
    params: PyTree,
    model_config: ModelConfig,
    batch: RolloutBatch,
    requires: Iterable[str] = (),
    *,
    temperature: float = 1.0,
    chunk_size: int = 128,
    remat: bool | str = False,
) -> dict[str, Float[Array, "B T"] | Float[Array, "B T D"] | Float[Array, " B"]]:
  """Current-policy outputs over the completion positions of `batch`.

  Args:
    params: policy parameters.
    model_config: the model's config (static).
    batch: rows of prompt + completion tokens; completion token t is column `prompt_len + t`.
    requires: names (and tags) from the objective; "entropy", "hidden", "sr_logp", "waad", "fai"
      add those outputs (module docstring); other names are ignored.
    temperature: the sampler's temperature (0, greedy, scores at 1): logp is then the
      behaviour-policy quantity the sampler reports.
    chunk_size: positions per logprob chunk.
    remat: the backward pass's rematerialisation policy (`models.remat_layer`: "none", "full",
      "dots"; a bool means none / full).
  Returns:
    {"logp": [B, T]} plus "entropy" [B, T], "hidden" [B, T, D], "sr_logp" [B], "waad" [B, T],
    "fai" [B, T] when required. float32.
  """
  requires = frozenset(requires)
  p = batch.prompt_len
  if p < 1:
    raise ValueError("a RolloutBatch needs a prompt of at least one column (prompt_len >= 1).")
  options = forward_options(requires)
  temperature = temperature if temperature > 0 else 1.0
  request = None
  if requires & set(ATTENTION_REQUIRES):
    request = attention_request(params, model_config, batch, options)
  g = batch.group_size
  shared = (request is None and batch.shared_prompts and g is not None and g > 1
            and g * batch.ctx.num_groups == batch.batch_size)
  if shared:
    tail = models.forward_shared_prompts(params, model_config, batch.tokens, batch.attention_mask,
                                         prompt_len=p, group_size=g, remat=remat)
  else:
    out = models.forward(params, model_config, batch.tokens, attention_mask=batch.attention_mask,
                         return_logits=False, return_hidden=True, remat=remat,
                         attention_stats=request)
    tail = out.hidden[:, p - 1:]
  hidden = tail[:, :-1]
  logp, entropy = models.token_logp(
      hidden, models.output_head(params, model_config), batch.tokens[:, p:],
      temperature=temperature, chunk_size=chunk_size, return_entropy="entropy" in requires)
  result = {"logp": logp}
  if "entropy" in requires:
    result["entropy"] = entropy
  if "hidden" in requires:
    result["hidden"] = hidden
  if "sr_logp" in requires:
    z = options.sr_token
    if z is None:
      z = batch.ctx.extras.get("sr_token")
    if z is None:
      raise ValueError("the objective requires `sr_logp` but names no self-reward token: add the "
                       "tag training.forward.sr_token_tag(z) (\"sr_token=<id>\") to the "
                       "transform's requires, or put extras['sr_token'] ([B] int) in the batch.")
    result["sr_logp"] = _sr_logp(params, model_config, batch, tail, z, temperature)
  if request is not None:
    completion = batch.attention_mask[:, p:].astype(jnp.float32)
    for name in ATTENTION_REQUIRES:
      if name in requires:
        stat = getattr(out.attention, name)[:, p:]
        result[name] = jax.lax.stop_gradient(stat * completion)
  return result


def reference_logp(ref_params: PyTree, model_config: ModelConfig, batch: RolloutBatch, *,
                   temperature: float = 1.0, chunk_size: int = 128) -> Float[Array, "B T"]:
  """log π_ref of the completion tokens (no gradient), zero off the completion mask."""
  logp = forward_outputs(ref_params, model_config, batch, (), temperature=temperature,
                         chunk_size=chunk_size)["logp"]
  return jax.lax.stop_gradient(logp) * batch.ctx.mask
