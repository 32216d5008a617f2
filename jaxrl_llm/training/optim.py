"""The optimizer from the config's `optim` section: global-norm clipping, then AdamW on a schedule.

`optimizer(**section)` is the one place the defaults live; `default_config()` turns its signature
into the config section and `from_config(section)` checks the keys against it (a typo fails with
the closest valid key).

Schedule: linear warm-up from 0 to `learning_rate` over `warmup_steps`, then `schedule`:
"constant", or "cosine" down to `learning_rate * min_lr_ratio` at `decay_steps` (counted from the
start, warm-up included) and flat after.
"""
import difflib
import inspect
from collections.abc import Mapping
from typing import Any

import ml_collections
import optax

SCHEDULES = ("constant", "cosine")


def learning_rate_schedule(learning_rate: float = 1e-6, warmup_steps: int = 0,
                           schedule: str = "constant", decay_steps: int = 1000,
                           min_lr_ratio: float = 0.0) -> optax.Schedule:
  """Warm-up then constant or cosine decay (see the module docstring)."""
  if schedule not in SCHEDULES:
    raise ValueError(f"unknown schedule {schedule!r}; valid schedules: {SCHEDULES}.")
  if learning_rate < 0 or warmup_steps < 0:
    raise ValueError(f"learning_rate ({learning_rate}) and warmup_steps ({warmup_steps}) must be "
                     ">= 0.")
  if schedule == "cosine":
    if decay_steps <= warmup_steps:
      raise ValueError(f"decay_steps ({decay_steps}) must exceed warmup_steps ({warmup_steps}) "
                       "for a cosine schedule.")
    return optax.warmup_cosine_decay_schedule(
        0.0, learning_rate, max(warmup_steps, 0), decay_steps, learning_rate * min_lr_ratio)
  if warmup_steps == 0:
    return optax.constant_schedule(learning_rate)
  return optax.join_schedules(
      [optax.linear_schedule(0.0, learning_rate, warmup_steps),
       optax.constant_schedule(learning_rate)], [warmup_steps])


def optimizer(learning_rate: float = 1e-6, warmup_steps: int = 0, schedule: str = "constant",
              decay_steps: int = 1000, min_lr_ratio: float = 0.0, b1: float = 0.9,
              b2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0,
              max_grad_norm: float | None = 1.0) -> optax.GradientTransformation:
  """`clip_by_global_norm(max_grad_norm)` (None or 0 disables it) then AdamW on the schedule.

  Defaults follow TRL's GRPOConfig for small models (lr 1e-6, no weight decay, clip 1.0).
  """
  lr = learning_rate_schedule(learning_rate, warmup_steps, schedule, decay_steps, min_lr_ratio)
  adamw = optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
  if max_grad_norm:
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), adamw)
  return adamw


def default_config() -> ml_collections.ConfigDict:
  """The `optim` config section: `optimizer`'s arguments and defaults."""
  return ml_collections.ConfigDict(
      {p.name: p.default for p in inspect.signature(optimizer).parameters.values()})


def _kwargs(section: Mapping[str, Any] | ml_collections.ConfigDict, fn) -> dict[str, Any]:
  kwargs = (section.to_dict() if isinstance(section, ml_collections.ConfigDict)
            else dict(section))
  params = inspect.signature(fn).parameters
  for key in kwargs:
    if key not in params:
      close = difflib.get_close_matches(key, list(params), n=1)
      hint = f"; did you mean {close[0]!r}?" if close else ""
      raise ValueError(f"unknown key {key!r} in the optim config{hint} "
                       f"(valid keys: {sorted(params)})")
  return kwargs


def from_config(section: Mapping[str, Any] | ml_collections.ConfigDict
                ) -> optax.GradientTransformation:
  """`optimizer(**section)`, with unknown keys reported by name."""
  return optimizer(**_kwargs(section, optimizer))


def schedule_from_config(section: Mapping[str, Any] | ml_collections.ConfigDict
                         ) -> optax.Schedule:
  """The learning-rate schedule of an `optim` section (for logging the current rate)."""
  kwargs = _kwargs(section, optimizer)
  names = inspect.signature(learning_rate_schedule).parameters
  return learning_rate_schedule(**{k: v for k, v in kwargs.items() if k in names})
