"""reasoning-gym's own verifiers (`score_answer`) as reward functions.

The prompt source `reasoning_gym:<task>` (jaxrl_llm.data) stores what scoring needs in each
example's metadata under `"reasoning_gym"`: the task name, its config, and reasoning-gym's entry
metadata. The scorer rebuilds the task (once per worker and config) and calls its `score_answer`,
so answers are judged exactly as reasoning-gym judges them (some tasks give partial credit in
[0, 1]).
"""

import dataclasses
from typing import Any, Callable, Mapping, Sequence

from jaxrl_llm.rewards import extraction
from jaxrl_llm.rewards.verifiers import ExampleLike

METADATA_KEY = "reasoning_gym"


_SCORERS: dict[tuple, Callable[[Any, dict], float]] = {}


def _freeze(value: Any) -> Any:
  """Hashable form of a config value (lists to tuples, dicts to sorted item tuples)."""
  if isinstance(value, Mapping):
    return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
  if isinstance(value, (list, tuple)):
    return tuple(_freeze(v) for v in value)
  return value


def _scorer(task: str, config: Mapping[str, Any]) -> Callable[[Any, dict], float]:
  """The task's `score_answer`, built once per (task, config) in this process."""
  key = (task, _freeze(config))
  if key not in _SCORERS:
    import reasoning_gym
    # Scoring needs no items: size 1 keeps construction cheap.
    dataset = reasoning_gym.create_dataset(task, **{**config, "size": 1, "seed": 0})
    _SCORERS[key] = dataset.score_answer
  return _SCORERS[key]


@dataclasses.dataclass(frozen=True)
class _ReasoningGymScore:
  name: str
  modes: tuple[str, ...]
  tag: str

  def __call__(self, completion: str, example: ExampleLike) -> float:
    info = example.metadata.get(METADATA_KEY) if example.metadata else None
    if not info:
      raise KeyError(f"example.metadata has no {METADATA_KEY!r} entry, so reasoning-gym cannot "
                     "score it; build examples with "
                     "jaxrl_llm.data.make_source('reasoning_gym:<task>').")
    score = _scorer(info["task"], info["config"])
    answer = extraction.extract_answer(completion, self.modes, self.tag)
    entry = {"question": info.get("question", ""), "answer": example.answer,
             "metadata": info["metadata"]}
    return float(score(answer, entry))


def reasoning_gym_reward(modes: Sequence[str] = ("answer_tag",), tag: str = "answer",
                         name: str = "accuracy") -> _ReasoningGymScore:
  """reasoning-gym's `score_answer` on the extracted answer (None when nothing is extracted).

  Args:
    modes: extraction modes tried in order; reasoning-gym's prompts ask for `<answer>` tags.
    tag: the answer tag name.
    name: the metric name (`reward/<name>`).
  """
  return _ReasoningGymScore(name, extraction.check_modes(modes), tag)
