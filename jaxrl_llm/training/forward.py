"""The forward passes the trainer runs: only what the objective `requires`.

Per-token logprobs come from the final hidden states through `models.token_logp`, chunked over
the sequence under remat, so a `[B, T, V]` float32 tensor never exists (DESIGN.md, Training).
"""
from collections.abc import Iterable
from typing import Any

import jax
from jaxtyping import Array, Float

from jaxrl_llm import models
from jaxrl_llm.models import ModelConfig
from jaxrl_llm.training.batch import RolloutBatch

PyTree = Any
FORWARD_REQUIRES = ("entropy", "hidden")


def forward_outputs(
    params: PyTree,
    model_config: ModelConfig,
    batch: RolloutBatch,
    requires: Iterable[str] = (),
    *,
    temperature: float = 1.0,
    chunk_size: int = 128,
    remat: bool = False,
) -> dict[str, Float[Array, "B T"] | Float[Array, "B T D"]]:
  """Current-policy outputs over the completion positions of `batch`.

  Args:
    params: policy parameters.
    model_config: the model's config (static).
    batch: rows of prompt + completion tokens; completion token t is column `prompt_len + t`.
    requires: names from the objective; "entropy" and "hidden" add those outputs (others ignored).
    temperature: the sampler's temperature (0, greedy, scores at 1): logp is then the
      behaviour-policy quantity the sampler reports.
    chunk_size: positions per logprob chunk.
    remat: rematerialise each decoder layer in the backward pass.
  Returns:
    {"logp": [B, T]} plus "entropy" [B, T] and "hidden" [B, T, D] (the final hidden state that
    predicts each completion token) when required. float32.
  """
  requires = frozenset(requires)
  p = batch.prompt_len
  if p < 1:
    raise ValueError("a RolloutBatch needs a prompt of at least one column (prompt_len >= 1).")
  out = models.forward(params, model_config, batch.tokens, attention_mask=batch.attention_mask,
                       return_logits=False, return_hidden=True, remat=remat)
  hidden = out.hidden[:, p - 1:-1]
  logp, entropy = models.token_logp(
      hidden, models.output_head(params, model_config), batch.tokens[:, p:],
      temperature=temperature if temperature > 0 else 1.0, chunk_size=chunk_size,
      return_entropy="entropy" in requires)
  result = {"logp": logp}
  if "entropy" in requires:
    result["entropy"] = entropy
  if "hidden" in requires:
    result["hidden"] = hidden
  return result


def reference_logp(ref_params: PyTree, model_config: ModelConfig, batch: RolloutBatch, *,
                   temperature: float = 1.0, chunk_size: int = 128) -> Float[Array, "B T"]:
  """log π_ref of the completion tokens (no gradient), zero off the completion mask."""
  logp = forward_outputs(ref_params, model_config, batch, (), temperature=temperature,
                         chunk_size=chunk_size)["logp"]
  return jax.lax.stop_gradient(logp) * batch.ctx.mask
