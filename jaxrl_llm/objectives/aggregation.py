"""Aggregation: the per-token terms to one `Mean(total, count)` loss (loss phase, last).

With `x = Σ_terms` and `S_b = Σ_t m_{b,t} x_{b,t}` (`spec/baselines_and_more.md` §1.5, A7, A8):

| mode                      | loss                    | total             | count            |
|---------------------------|-------------------------|-------------------|------------------|
| `token_mean`              | Σ_b S_b / Σ m           | Σ_b S_b           | Σ_{b,t} m        |
| `seq_mean_token_mean`     | (1/N') Σ_b S_b / |o_b|  | Σ_b S_b / |o_b|   | N' (rows, |o|>0) |
| `seq_mean_token_sum`      | (1/N') Σ_b S_b          | Σ_b S_b           | N'               |
| `seq_mean_token_sum_norm` | (1/N) Σ_b S_b / L_norm  | Σ_b S_b / L_norm  | N (all rows)     |

Every count is a sum over rows or tokens and no total mixes rows, so summing totals and counts over
micro-batches (or devices) and dividing at the end gives exactly the full-batch loss, and the
gradient of `Σ total / Σ count` exactly the full-batch gradient (the count carries no gradient).
"""
import jax
import jax.numpy as jnp

from jaxrl_llm.objectives.base import LossTransform, stateless
from jaxrl_llm.objectives.context import LossContext, Mean

AGGREGATION_MODES = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum",
                     "seq_mean_token_sum_norm")


def check_mode(mode: str) -> str:
  if mode not in AGGREGATION_MODES:
    raise ValueError(f"unknown aggregation mode {mode!r}; valid modes: {AGGREGATION_MODES}")
  return mode


def _reduce(ctx: LossContext, x, mode, norm, count_empty_rows) -> Mean:
  m = ctx.mask
  row_sum = jnp.sum(jnp.where(m > 0, x, 0.0) * m, axis=1)                  # S_b
  lengths = ctx.lengths
  rows = (lengths > 0).astype(m.dtype)
  num_rows = jnp.asarray(ctx.batch_size, m.dtype) if count_empty_rows else jnp.sum(rows)
  if mode == "token_mean":
    total, count = jnp.sum(row_sum), jnp.sum(m)
  elif mode == "seq_mean_token_mean":
    total, count = jnp.sum(row_sum / jnp.maximum(lengths, 1.0)), num_rows
  elif mode == "seq_mean_token_sum":
    total, count = jnp.sum(row_sum), num_rows
  else:
    l_norm = ctx.mask.shape[1] if norm is None else norm
    total, count = jnp.sum(row_sum) / l_norm, jnp.asarray(ctx.batch_size, m.dtype)
  return Mean(total, jax.lax.stop_gradient(count))


def aggregate(mode: str = "token_mean", norm: float | None = None,
              count_empty_rows: bool = False, micro_batch_local: bool = False
              ) -> LossTransform:
  """Sums the loss terms per token and reduces them to `ctx.loss = Mean(total, count)`. Loss.

  `mode` is one of `AGGREGATION_MODES` (table in the module docstring):
    token_mean: DAPO's token-level loss over the global token count (verl default, TRL "dapo");
    seq_mean_token_mean: GRPO (DeepSeekMath), GSPO; TRL "grpo" with `count_empty_rows=True`;
    seq_mean_token_sum: sum over each sequence's tokens, mean over sequences;
    seq_mean_token_sum_norm: Dr. GRPO / TRL "dr_grpo": `(1/N) Σ_b S_b / L_norm`, with `norm` =
      L_norm the generation budget (default: the padded width T, verl's default). `ctx.loss.total`
      alone is verl's literal `Σ_b S_b / L_norm` (no 1/N).
  `count_empty_rows`: rows with no valid token count in N' (TRL "grpo" keeps them as zeros; the
  spec default excludes them). `micro_batch_local=True` divides within each micro-batch and counts
  it once (TRL "bnpo": the mean of per-micro-batch token means, which depends on the split; only
  for reproducing TRL). Logs `loss/<term>` for every term, with the same reduction.
  """
  check_mode(mode)
  if norm is not None and norm <= 0:
    raise ValueError(f"aggregation norm (L_norm) must be positive, got {norm}")

  def reduce(ctx, x):
    mean = _reduce(ctx, x, mode, norm, count_empty_rows)
    if micro_batch_local:
      one = jnp.ones_like(mean.count)
      return Mean(mean.value(), one)
    return mean

  def apply(ctx: LossContext) -> LossContext:
    ctx.check_loss_phase(by="aggregate")
    if not ctx.terms:
      raise ValueError("`aggregate` found no loss terms: put a ratio rule (ppo_clip, gspo_clip, "
                       "reinforce) or a regulariser before it in the loss chain")
    total = sum(ctx.terms.values())
    ctx = ctx.log(**{f"loss/{k}": reduce(ctx, v) for k, v in ctx.terms.items()})
    return ctx.replace(loss=reduce(ctx, total))

  return stateless(apply, phase="loss")
