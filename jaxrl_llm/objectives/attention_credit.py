"""Attention Illuminates LLM Reasoning: preplan-and-anchor credit (Li et al., arXiv 2510.13554;
spec `baselines_and_more.md` B13).

Attention heads split into locally focused ones and globally focused ones. Two statistics of the
old policy's attention over a response (teacher-forced, computed by the trainer's rollout forward,
`training/forward.py`, and read here from `ctx.extras`):

  WAAD_t = Σ_{s ≤ t} Ā^loc_{t,s} · min(t − s, W)              ∈ [0, W]   (how far back t looks)
  FAI_s  = (1/(|o| − s)) Σ_{t = s+1}^{|o|} Ā^glob_{t,s}        ∈ [0, 1]   (attention s receives)

with Ā the attention averaged over the chosen local / global heads (given as "layer.head" lists,
or by default the `num_heads` heads of smallest / largest mean attention distance on the batch).
Per row, three token sets (reconstruction, spec §6: W, q, γ and the sets are not in the sources):

  preplan P = the top q fraction of the row's tokens by WAAD
  anchor  N = the top q fraction by FAI
  coupled C = N ∪ {t − 1 : t ∈ N, t − 1 ∈ P}   (a preplan token immediately preceding an anchor)

and the selected set's token advantages are amplified:  A'_{b,t} = A_{b,t}·(1 + γ·1[t ∈ set]).
"Top q fraction" keeps ⌈q·|o_b|⌉ tokens of a non-empty row (at least one), ties broken by position
(earlier first). The weight is positive and detached, so the sign of every advantage is kept,
unselected tokens are untouched and γ = 0 is the base method exactly (spec (f)2-3).
"""
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from jaxrl_llm.objectives.base import LossTransform, stateless
from jaxrl_llm.objectives.context import LossContext
from jaxrl_llm.objectives.ratios import _ADV_FIX

ATTENTION_STRATEGIES = ("coupled", "preplan", "anchor")
_STATS_FIX = ("the trainer's rollout forward computes it when a rollout-phase transform requires "
              "'waad'/'fai' (training.rollout, training/forward.py); when building the context by "
              "hand, put a [B, T] array in extras")


def top_fraction(x: Float[Array, "B T"], mask: Float[Array, "B T"], q: float
                 ) -> Bool[Array, "B T"]:
  """Per row, the ⌈q·n_b⌉ valid tokens with the largest `x` (n_b valid tokens; ties: earlier).

  One stable sort per row, O(T log T); padding is never selected.
  """
  valid = mask > 0
  n = jnp.sum(valid, axis=1)
  k = jnp.where(n > 0, jnp.maximum(jnp.ceil(q * n), 1.0), 0.0)
  key = jnp.where(valid, -x, jnp.inf)
  order = jnp.argsort(key, axis=1, stable=True)
  rank = jnp.argsort(order, axis=1, stable=True)
  return valid & (rank < k[:, None])


def selected_tokens(waad: Float[Array, "B T"], fai: Float[Array, "B T"],
                    mask: Float[Array, "B T"], strategy: str, q: float) -> Bool[Array, "B T"]:
  """The amplified set of each row: preplan (WAAD), anchor (FAI) or coupled (module docstring)."""
  _check_strategy(strategy)
  if strategy == "preplan":
    return top_fraction(waad, mask, q)
  anchor = top_fraction(fai, mask, q)
  if strategy == "anchor":
    return anchor
  preplan = top_fraction(waad, mask, q)
  before_anchor = jnp.pad(anchor[:, 1:], ((0, 0), (0, 1)))       # t − 1 for every anchor t
  return anchor | (preplan & before_anchor)


def _check_strategy(strategy: str) -> None:
  if strategy not in ATTENTION_STRATEGIES:
    raise ValueError(f"unknown attention-credit strategy {strategy!r}; valid strategies: "
                     f"{ATTENTION_STRATEGIES}")


def _requires(window: int, local_heads: str, global_heads: str, num_heads: int) -> frozenset:
  """{"waad", "fai"} and the trainer's tags for W and the heads (`training.forward.attention_tags`,
  spelled out here: objectives do not import training)."""
  tags = {"waad", "fai", f"attn_window={int(window)}", f"attn_heads={int(num_heads)}"}
  if local_heads:
    tags.add(f"attn_local={local_heads}")
  if global_heads:
    tags.add(f"attn_global={global_heads}")
  return frozenset(tags)


def attention_credit(strategy: str = "coupled", gamma: float = 1.0, q: float = 0.1,
                     window: int = 10, num_heads: int = 4, local_heads: str = "",
                     global_heads: str = "") -> LossTransform:
  """Amplifies the advantages of attention-critical tokens: A' = A·(1 + γ·1[t ∈ set]). Rollout.

  Args:
    strategy: "coupled" (anchors and the preplan token just before each), "preplan" (top WAAD)
      or "anchor" (top FAI).
    gamma: γ ≥ 0, the amplification (1.0; reconstruction). γ = 0 changes nothing.
    q: the fraction of each row's tokens per set, in (0, 1] (0.1; reconstruction).
    window: W, WAAD's distance clip (10; reconstruction).
    num_heads: heads per set when no lists are given, chosen on the batch by mean attention
      distance (smallest: local, largest: global); see `training/forward.py`.
    local_heads, global_heads: explicit heads, "layer.head" pairs separated by commas ("0.3,5.1").
  Returns:
    A rollout-phase transform (after an advantage estimator) that requires "waad" and "fai"
    (`ctx.extras`, [B, T], the old policy's) and logs `attention/amplified_frac` (the fraction of
    valid tokens amplified), `attention/waad_mean` and `attention/fai_mean`.
  """
  _check_strategy(strategy)
  if gamma < 0:
    raise ValueError(f"gamma must be >= 0 (a negative γ could flip an advantage's sign); got "
                     f"{gamma}.")
  if not 0 < q <= 1:
    raise ValueError(f"q is a fraction of each row's tokens, in (0, 1]; got {q}.")
  if window < 1 or num_heads < 1:
    raise ValueError(f"window and num_heads must be >= 1; got window={window}, "
                     f"num_heads={num_heads}.")
  by = "attention_credit"

  def fn(ctx: LossContext) -> LossContext:
    ctx.check_rollout_phase(by=by)
    waad = jax.lax.stop_gradient(ctx.require("waad", by=by, fix=_STATS_FIX))
    fai = jax.lax.stop_gradient(ctx.require("fai", by=by, fix=_STATS_FIX))
    adv = ctx.require("advantages", by=by, fix=_ADV_FIX)
    for name, x in (("waad", waad), ("fai", fai)):
      if tuple(x.shape) != tuple(ctx.mask.shape):
        raise ValueError(f"extras[{name!r}] has shape {tuple(x.shape)}; attention_credit needs "
                         f"[B, T] = {tuple(ctx.mask.shape)}.")
    sel = selected_tokens(waad, fai, ctx.mask, strategy, q)
    w = jax.lax.stop_gradient(1.0 + gamma * sel.astype(adv.dtype))
    return ctx.replace(advantages=adv * w).log(**{
        "attention/amplified_frac": ctx.masked_mean(sel.astype(adv.dtype)),
        "attention/waad_mean": ctx.masked_mean(waad),
        "attention/fai_mean": ctx.masked_mean(fai),
    })

  return stateless(fn, requires=_requires(window, local_heads, global_heads, num_heads),
                   phase="rollout")
