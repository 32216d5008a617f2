"""Reward composition: a weighted sum of named reward functions, each reported on its own."""

import dataclasses
import math
from typing import Any, Callable, Mapping, Union

RewardFn = Callable[[str, Any], float]
"""`fn(completion, example) -> float`; `example` has `.answer` and `.metadata`."""


@dataclasses.dataclass(frozen=True)
class WeightedSum:
  """`total = sum_i weights[i] * fns[i](completion, example)`, keeping every term by name.

  Picklable when its functions are (the factories in this package return frozen dataclasses), so the
  runner ships it to worker processes once. Built by `weighted_sum`.
  """
  names: tuple[str, ...]
  fns: tuple[RewardFn, ...]
  weights: tuple[float, ...]

  def terms(self, completion: str, example: Any) -> dict[str, float]:
    """Each named term's value (float) for one completion."""
    return {name: float(fn(completion, example)) for name, fn in zip(self.names, self.fns)}

  def total(self, terms: Mapping[str, float]) -> float:
    """The weighted sum of `terms` (as returned by `terms`)."""
    return float(sum(w * terms[name] for name, w in zip(self.names, self.weights)))

  def __call__(self, completion: str, example: Any) -> float:
    return self.total(self.terms(completion, example))


def reward_name(fn: RewardFn) -> str:
  """A reward function's metric name: its `name` attribute, else its function or class name."""
  name = getattr(fn, "name", None) or getattr(fn, "__name__", None) or type(fn).__name__
  return str(name).strip("_").lower()


def weighted_sum(terms: Union[Mapping[str, Union[RewardFn, tuple[RewardFn, float]]],
                              RewardFn]) -> WeightedSum:
  """Combines named reward functions into one reward with per-term reporting.

  Args:
    terms: `{name: fn}` (weight 1) or `{name: (fn, weight)}`; a single function is taken as
      `{reward_name(fn): fn}`. Names become the metrics `reward/<name>`.

  Example:
    reward = weighted_sum({"accuracy": math_verify_reward(), "format": (format_reward(), 0.1)})
  """
  if isinstance(terms, WeightedSum):
    return terms
  if callable(terms) and not isinstance(terms, Mapping):
    terms = {reward_name(terms): terms}
  if not terms:
    raise ValueError("weighted_sum needs at least one reward function, e.g. "
                     "{'accuracy': math_verify_reward()}.")
  names, fns, weights = [], [], []
  for name, spec in terms.items():
    fn, weight = spec if isinstance(spec, tuple) else (spec, 1.0)
    if not callable(fn):
      raise TypeError(f"Reward term {name!r} is {fn!r}, which is not callable; give a function "
                      "`fn(completion, example) -> float` or a (function, weight) pair.")
    if not math.isfinite(float(weight)):
      raise ValueError(f"Reward term {name!r} has a non-finite weight {weight}.")
    if name in ("total", "failures", "failure_frac"):
      raise ValueError(f"Reward term name {name!r} is reserved for runner metrics; rename it.")
    names.append(str(name))
    fns.append(fn)
    weights.append(float(weight))
  return WeightedSum(tuple(names), tuple(fns), tuple(weights))
