"""Records from reasoning-gym's procedural tasks (`reasoning_gym:<task>`)."""

import dataclasses
import difflib
from typing import Any, Mapping

from jaxrl_llm.rewards.reasoning_gym import METADATA_KEY


def task_names() -> list[str]:
  """All registered reasoning-gym task names."""
  from reasoning_gym.factory import DATASETS
  return sorted(DATASETS)


def _check_task(task: str) -> None:
  names = task_names()
  if task in names:
    return
  close = difflib.get_close_matches(task, names, n=3, cutoff=0.5)
  hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
  raise ValueError(f"Unknown reasoning-gym task {task!r}.{hint} Available tasks ({len(names)}): "
                   f"{', '.join(names)}.")


def _create(task: str, config: Mapping[str, Any], size: int, seed: int):
  import reasoning_gym
  from reasoning_gym.factory import DATASETS
  config_cls = DATASETS[task][1]
  fields = [f.name for f in dataclasses.fields(config_cls) if f.name not in ("size", "seed")]
  for key in config:
    if key in ("size", "seed"):
      raise ValueError(f"Set {key} as a source option (reasoning_gym:{task}?{key}=...), not in the "
                       "task config.")
    if key not in fields:
      close = difflib.get_close_matches(key, fields, n=1)
      hint = f" Did you mean {close[0]!r}?" if close else ""
      raise ValueError(f"reasoning-gym task {task!r} has no config option {key!r}.{hint} Its "
                       f"options: {', '.join(fields)}.")
  try:
    return reasoning_gym.create_dataset(task, **config, size=size, seed=seed)
  except (AssertionError, ValueError, TypeError) as e:
    raise ValueError(f"reasoning-gym rejected the config {dict(config)} for task {task!r}: "
                     f"{e or type(e).__name__}") from e


class ReasoningGymRecords:
  """Items `0 .. size-1` of a reasoning-gym task, generated on demand (each is a pure function of
  `seed` and its index), with what `reasoning_gym_reward` needs in the metadata."""

  def __init__(self, task: str, config: Mapping[str, Any] | None = None, size: int = 1000,
               seed: int = 0):
    _check_task(task)
    if size < 1:
      raise ValueError(f"size must be >= 1; got {size}.")
    self.task = task
    self.dataset = _create(task, dict(config or {}), size, seed)
    self.config = {k: v for k, v in dataclasses.asdict(self.dataset.config).items()
                   if k not in ("size", "seed")}
    self.size = size

  def __len__(self) -> int:
    return self.size

  def __getitem__(self, index: int) -> tuple[str, str, dict[str, Any]]:
    entry = self.dataset[index]
    metadata = {
        "source": f"reasoning_gym:{self.task}",
        "index": index,
        METADATA_KEY: {"task": self.task, "config": self.config, "question": entry["question"],
                       "metadata": entry["metadata"]},
    }
    return entry["question"], str(entry["answer"]), metadata
