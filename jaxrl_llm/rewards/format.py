"""Format rewards: does a completion follow the `<think>...</think><answer>...</answer>` layout."""

import dataclasses
import re
from typing import Optional

from jaxrl_llm.rewards.verifiers import ExampleLike


@dataclasses.dataclass(frozen=True)
class _FormatCheck:
  name: str
  pattern: str

  def __call__(self, completion: str, example: ExampleLike) -> float:
    del example
    return float(re.fullmatch(self.pattern, completion, flags=re.DOTALL) is not None)


def format_reward(think_tag: Optional[str] = "think", answer_tag: str = "answer",
                  think_opened_in_prompt: bool = False, name: str = "format") -> _FormatCheck:
  """1.0 when the whole completion is `<think>…</think>` then `<answer>…</answer>`, else 0.0.

  Only whitespace may surround the blocks, and each tag appears once (a second `<answer>` block
  fails). The answer must be non-empty.

  Args:
    think_tag: name of the reasoning tag, or None to require only the answer block.
    answer_tag: name of the answer tag.
    think_opened_in_prompt: the prompt already ends with `<think>` (some chat templates open it),
      so the completion starts inside the reasoning block and must not open it again.
    name: the metric name (`reward/<name>`).
  """
  for tag in (think_tag, answer_tag):
    if tag is not None and not re.fullmatch(r"[A-Za-z_][\w\-]*", tag):
      raise ValueError(f"Tag names must be plain identifiers like 'think' or 'answer'; got "
                       f"{tag!r}.")
  answer = re.escape(answer_tag)
  # Tempered bodies: no nested opening or closing of the same tag inside a block.
  body = lambda tag: rf"(?:(?!</?{tag}>).)*"
  answer_block = rf"<{answer}>\s*(?:(?!</?{answer}>)\S){body(answer)}</{answer}>"
  if think_tag is None:
    pattern = rf"\s*{answer_block}\s*"
  else:
    think = re.escape(think_tag)
    opening = "" if think_opened_in_prompt else rf"\s*<{think}>"
    pattern = (rf"{opening}(?:(?!</?{think}>|</?{answer}>).)*</{think}>\s*{answer_block}\s*")
  return _FormatCheck(name, pattern)
