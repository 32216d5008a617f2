"""Answer verifiers: math equivalence through math-verify, exact match, numeric tolerance.

A reward function is any picklable callable `fn(completion: str, example) -> float`, where `example`
has a reference `answer: str` and a `metadata` mapping (`jaxrl_llm.data.Example` has both). The
factories here return small frozen dataclasses, so they pickle by reference into the runner's
worker processes. They use no timeouts of their own: math-verify's timeouts rely on SIGALRM, which
only works in a main thread, so they are switched off here and `RewardRunner` bounds the time.
"""

import dataclasses
import math
import re
from typing import Any, Mapping, Optional, Protocol, Sequence

from jaxrl_llm.rewards import extraction


class ExampleLike(Protocol):
  """What a reward function reads from an example: the reference answer and metadata."""
  answer: str
  metadata: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class _MathVerify:
  name: str
  modes: tuple[str, ...]
  tag: str
  float_rounding: int
  numeric_precision: int

  def __call__(self, completion: str, example: ExampleLike) -> float:
    import math_verify
    predicted = extraction.extract_answer(completion, self.modes, self.tag)
    if predicted is None:
      return 0.0
    import sympy
    gold = extraction.parse_math(str(example.answer))
    if not any(isinstance(g, (sympy.Basic, sympy.MatrixBase)) for g in gold):
      raise ValueError(f"math-verify cannot parse the reference answer {example.answer!r}; "
                       "check the dataset's answer field (or its preset) for this example.")
    target = extraction.parse_math(predicted)
    if not target:
      return 0.0
    return float(math_verify.verify(gold, target, float_rounding=self.float_rounding,
                                    numeric_precision=self.numeric_precision,
                                    timeout_seconds=None))


def math_verify_reward(modes: Sequence[str] = extraction.DEFAULT_MODES, tag: str = "answer",
                       float_rounding: int = 6, numeric_precision: int = 15,
                       name: str = "accuracy") -> _MathVerify:
  """1.0 when the completion's extracted answer is mathematically equal to the reference, else 0.0.

  Args:
    modes: extraction modes tried in order (see `extraction.EXTRACTION_MODES`); the default takes
      the last `<answer>` tag, else the last `\\boxed{}`.
    tag: the answer tag name for the `answer_tag` mode.
    float_rounding, numeric_precision: math-verify's comparison settings.
    name: the metric name (`reward/<name>`).

  Raises (at call time, contained by the runner as a failure): ValueError when the reference answer
  itself cannot be parsed, since that is a data bug rather than a wrong completion.
  """
  return _MathVerify(name, extraction.check_modes(modes), tag, float_rounding, numeric_precision)


@dataclasses.dataclass(frozen=True)
class _ExactMatch:
  name: str
  modes: tuple[str, ...]
  tag: str
  case_sensitive: bool

  def __call__(self, completion: str, example: ExampleLike) -> float:
    predicted = extraction.extract_answer(completion, self.modes, self.tag)
    if predicted is None:
      return 0.0
    norm = lambda s: extraction.normalize_text(s, self.case_sensitive)
    return float(norm(predicted) == norm(str(example.answer)))


def exact_match_reward(modes: Sequence[str] = extraction.DEFAULT_MODES, tag: str = "answer",
                       case_sensitive: bool = False, name: str = "exact_match") -> _ExactMatch:
  """1.0 when the extracted answer equals the reference after whitespace/case normalisation."""
  return _ExactMatch(name, extraction.check_modes(modes), tag, case_sensitive)


_FRACTION_RE = re.compile(r"^(-?\d+(?:\.\d+)?)\s*/\s*(-?\d+(?:\.\d+)?)$")


def parse_number(text: str) -> Optional[float]:
  """A float from `1,234.5`, `$12`, `45%`, `-3/4` or `1e-3`; None if the text is not a number."""
  text = text.strip().strip("$").replace(",", "").replace(" ", "").rstrip(".").rstrip("%")
  fraction = _FRACTION_RE.match(text)
  try:
    if fraction:
      return float(fraction.group(1)) / float(fraction.group(2))
    return float(text)
  except (ValueError, ZeroDivisionError):
    return None


@dataclasses.dataclass(frozen=True)
class _NumericMatch:
  name: str
  modes: tuple[str, ...]
  tag: str
  rtol: float
  atol: float

  def __call__(self, completion: str, example: ExampleLike) -> float:
    predicted = extraction.extract_answer(completion, self.modes, self.tag)
    reference = parse_number(str(example.answer))
    if reference is None:
      raise ValueError(f"The reference answer {example.answer!r} is not a number; use "
                       "math_verify_reward or exact_match_reward for this data.")
    value = None if predicted is None else parse_number(predicted)
    if value is None or not math.isfinite(value):
      return 0.0
    return float(math.isclose(value, reference, rel_tol=self.rtol, abs_tol=self.atol))


def numeric_reward(modes: Sequence[str] = ("answer_tag", "boxed", "last_number"),
                   tag: str = "answer", rtol: float = 1e-6, atol: float = 1e-9,
                   name: str = "numeric") -> _NumericMatch:
  """1.0 when the extracted number is within `atol + rtol * |reference|` of the reference number."""
  if rtol < 0 or atol < 0:
    raise ValueError(f"rtol and atol must be >= 0; got rtol={rtol}, atol={atol}.")
  return _NumericMatch(name, extraction.check_modes(modes), tag, rtol, atol)
