"""Rollout hooks that label rows for regrouping objectives: `stratum` (Stratified GRPO, spec B2).

  config.hooks.stratum = ConfigDict(dict(pattern=r"<search>", max_stratum=4))   # count tool calls
  config.hooks.stratum = ConfigDict(dict(field="num_hops"))                     # a data field
"""
import re
from collections.abc import Mapping
from typing import Any, Optional

import numpy as np

from jaxrl_llm.training.hooks import HostBatch, HookEnv, RolloutHook, register_hook


@register_hook
class Stratum(RolloutHook):
  """`stratum` [B] int32: each row's stratum for `stratified_advantage` (Stratified GRPO,
  arXiv 2510.06214), the number of matches of `pattern` in the completion text (by default
  `<search>` opening tags: the number of search calls, the paper's strata), or, with `field`, the
  integer `example[field]` of the row's data example. Values above `max_stratum` are capped to
  it (one merged "≥ max_stratum" stratum; None: no cap).

  Logs `stratum/mean`, `stratum/max`, `stratum/num_distinct` (distinct values in the batch) and
  `stratum/distinct_per_group` (mean distinct values within a group: 1 means SAN is GRPO).
  """
  name = "stratum"
  order = 30
  provides = ("stratum",)

  def __init__(self, pattern: str = r"<search>", field: Optional[str] = None,
               max_stratum: Optional[int] = None):
    if max_stratum is not None and max_stratum < 0:
      raise ValueError(f"config.hooks.stratum.max_stratum must be >= 0 or None, got "
                       f"{max_stratum}")
    try:
      self.regex = re.compile(pattern)
    except re.error as e:
      raise ValueError(f"config.hooks.stratum.pattern {pattern!r} is not a valid regular "
                       f"expression: {e}") from e
    self.pattern, self.field, self.max_stratum = pattern, field, max_stratum

  def _of_example(self, example: Any) -> int:
    if isinstance(example, Mapping):
      if self.field not in example:
        raise ValueError(f"config.hooks.stratum.field={self.field!r} is not a field of the data "
                         f"examples (fields: {sorted(example)}); set field=None to count "
                         f"`pattern` in the completions instead.")
      value = example[self.field]
    elif hasattr(example, self.field):
      value = getattr(example, self.field)
    else:
      raise ValueError(f"config.hooks.stratum.field={self.field!r}: the data example "
                       f"({type(example).__name__}) has no such field.")
    try:
      return int(value)
    except (TypeError, ValueError) as e:
      raise ValueError(f"config.hooks.stratum.field={self.field!r} holds {value!r}, not an "
                       "integer stratum.") from e

  def strata(self, texts, examples) -> np.ndarray:
    """int32 [B]: the strata of completions `texts` of data `examples` (capped)."""
    if self.field is None:
      values = [len(self.regex.findall(t)) for t in texts]
    else:
      values = [self._of_example(e) for e in examples]
    out = np.asarray(values, np.int64).reshape(-1)
    if np.any(out < 0):
      raise ValueError(f"config.hooks.stratum.field={self.field!r} gave negative strata "
                       f"{sorted(set(out[out < 0].tolist()))}: strata are counts >= 0.")
    if self.max_stratum is not None:
      out = np.minimum(out, self.max_stratum)
    return out.astype(np.int32)

  def process(self, batch: HostBatch, env: HookEnv) -> HostBatch:
    del env
    s = self.strata(batch.texts, batch.examples)
    batch.extras["stratum"] = s
    if s.size:
      per_group = [len(np.unique(s[batch.group_rows(k)])) for k in range(batch.num_groups)]
      batch.metrics.update({
          "stratum/mean": float(np.mean(s)), "stratum/max": float(np.max(s)),
          "stratum/num_distinct": float(len(np.unique(s))),
          "stratum/distinct_per_group": float(np.mean(per_group))})
    return batch
