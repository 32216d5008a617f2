"""Composition of loss transforms: `chain` and `named_chain` (left to right, like `optax.chain`)."""
from jaxrl_llm.objectives.base import LossTransform, _union_phase
from jaxrl_llm.objectives.context import LossContext


def chain(*transforms: LossTransform) -> LossTransform:
  """Applies `transforms` left to right; the state is the tuple of their states.

  `requires` is the union of the parts' requirements; the phase is theirs ("mixed" when the chain
  holds both rollout- and loss-phase transforms: `Objective` refuses that in either phase).
  """
  for i, tx in enumerate(transforms):
    if not isinstance(tx, LossTransform):
      raise TypeError(f"chain argument {i} is a {type(tx).__name__}, not a LossTransform (did you "
                      "forget to call the factory, e.g. ppo_clip() rather than ppo_clip?)")

  def init_fn(ctx: LossContext):
    return tuple(tx.init(ctx) for tx in transforms)

  def update_fn(ctx: LossContext, state):
    if len(state) != len(transforms):
      raise ValueError(f"chain of {len(transforms)} transforms got a state of length "
                       f"{len(state)}: make sure the state comes from this chain's init")
    new_state = []
    for tx, s in zip(transforms, state):
      ctx, s = tx.update(ctx, s)
      new_state.append(s)
    return ctx, tuple(new_state)

  requires = frozenset().union(*(tx.requires for tx in transforms))
  return LossTransform(init_fn, update_fn, requires, _union_phase(tx.phase for tx in transforms))


def named_chain(*named: tuple[str, LossTransform]) -> LossTransform:
  """Like `chain`, with `(name, transform)` pairs; the state is a dict keyed by name.

  Metrics and loss terms that a stage adds are prefixed with its name (`"<name>/kl/mean"`, term
  `"<name>/kl"`), so one objective can hold two stages of the same kind.
  """
  names = [n for n, _ in named]
  if len(set(names)) != len(names):
    raise ValueError(f"named_chain names must be unique, got {names}")
  for n, tx in named:
    if not isinstance(tx, LossTransform):
      raise TypeError(f"named_chain stage {n!r} is a {type(tx).__name__}, not a LossTransform")

  def init_fn(ctx: LossContext):
    return {n: tx.init(ctx) for n, tx in named}

  def update_fn(ctx: LossContext, state):
    missing = set(names) - set(state)
    if missing:
      raise ValueError(f"named_chain state lacks stages {sorted(missing)}: use this chain's init")
    new_state = {}
    for n, tx in named:
      before_metrics, before_terms = ctx.metrics, ctx.terms
      out, new_state[n] = tx.update(ctx.replace(metrics={}), state[n])
      terms = {k: v for k, v in out.terms.items() if k in before_terms}
      for k, v in out.terms.items():
        if k not in before_terms:
          if f"{n}/{k}" in terms:
            raise ValueError(f"loss term {n}/{k!r} is already set (terms are add-only)")
          terms[f"{n}/{k}"] = v
      ctx = out.replace(
          metrics={**before_metrics, **{f"{n}/{k}": v for k, v in out.metrics.items()}},
          terms=terms)
    return ctx, new_state

  return LossTransform(init_fn, update_fn, frozenset().union(*(tx.requires for _, tx in named)),
                       _union_phase(tx.phase for _, tx in named))

