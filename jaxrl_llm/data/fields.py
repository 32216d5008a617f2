"""Field mappings: which record fields hold the question and the answer, and how to read the answer.

Presets cover the two common layouts of math data:
  * `gsm8k`: `question`, and `answer` holding a worked solution that ends in `#### <number>`;
  * `math`: `problem`, and `solution` holding a worked solution whose last `\\boxed{}` is the
    answer.
"""

import dataclasses
import difflib
from typing import Any, Iterable, Mapping, Optional

from jaxrl_llm.rewards import extraction

ANSWER_PARSERS = ("none", "hash", "boxed")


@dataclasses.dataclass(frozen=True)
class FieldMapping:
  """Where a record keeps its question and answer.

  Attributes:
    question: the question field.
    answer: the answer field.
    answer_parser: how the reference answer is read from that field: `none` (as it is), `hash`
      (after the last `####`, GSM8K) or `boxed` (the last `\\boxed{}`, MATH).
  """
  question: str = "question"
  answer: str = "answer"
  answer_parser: str = "none"

  def __post_init__(self):
    if self.answer_parser not in ANSWER_PARSERS:
      close = difflib.get_close_matches(self.answer_parser, ANSWER_PARSERS, n=1)
      hint = f" Did you mean {close[0]!r}?" if close else ""
      raise ValueError(f"Unknown answer_parser {self.answer_parser!r}.{hint} Choose from "
                       f"{', '.join(ANSWER_PARSERS)}.")

  def parse_answer(self, text: str) -> Optional[str]:
    if self.answer_parser == "hash":
      return extraction.extract_hash(text)
    if self.answer_parser == "boxed":
      return extraction.extract_boxed(text)
    return text.strip() or None


PRESETS = {
    "gsm8k": FieldMapping(question="question", answer="answer", answer_parser="hash"),
    "math": FieldMapping(question="problem", answer="solution", answer_parser="boxed"),
}


def field_mapping(preset: Optional[str] = None, question_field: Optional[str] = None,
                  answer_field: Optional[str] = None,
                  answer_parser: Optional[str] = None) -> FieldMapping:
  """A preset's mapping (or the plain `question`/`answer` one) with the given fields overridden."""
  if preset is None:
    base = FieldMapping()
  elif preset in PRESETS:
    base = PRESETS[preset]
  else:
    close = difflib.get_close_matches(preset, list(PRESETS), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"Unknown field-mapping preset {preset!r}.{hint} Presets: "
                     f"{', '.join(PRESETS)}; or give question_field/answer_field.")
  overrides = {k: v for k, v in (("question", question_field), ("answer", answer_field),
                                 ("answer_parser", answer_parser)) if v is not None}
  return dataclasses.replace(base, **overrides)


def check_fields(mapping: FieldMapping, available: Iterable[str], where: str) -> None:
  """Raises if the mapped fields are missing, naming the fields that are there."""
  available = list(available)
  for role, field in (("question", mapping.question), ("answer", mapping.answer)):
    if field not in available:
      close = difflib.get_close_matches(field, available, n=1)
      hint = f" Did you mean {close[0]!r}?" if close else ""
      raise ValueError(f"{where} has no field {field!r} (mapped as the {role}).{hint} Available "
                       f"fields: {', '.join(available)}. Set {role}_field=<name>, or a preset "
                       f"({', '.join(PRESETS)}).")


def record_from_row(row: Mapping[str, Any], mapping: FieldMapping, source: str,
                    index: int) -> Optional[tuple[str, str, dict[str, Any]]]:
  """(question, answer, metadata) of one row, or None when its answer field yields no answer.

  The metadata keeps the row's other scalar fields (difficulty level, subject, ...).
  """
  answer = mapping.parse_answer(str(row[mapping.answer]))
  if answer is None:
    return None
  metadata: dict[str, Any] = {"source": source, "index": index}
  for key, value in row.items():
    scalar = isinstance(value, (str, int, float, bool))
    if scalar and key not in (mapping.question, "source", "index"):
      metadata.setdefault(key, value)
  return str(row[mapping.question]), answer, metadata
