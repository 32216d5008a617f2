"""Final-answer extraction from completions, and a canonical form for comparing answers.

Verifiers, majority vote (MM-UPT/TTRV) and Co-Reward all need "the answer" of a completion. The
extractors here are plain string functions; `AnswerExtractor` bundles a choice of them with
canonicalisation into a picklable callable that the reward runner can run in its workers (under the
same per-sample timeout as the verifiers, since canonicalisation parses LaTeX with math-verify).

Extraction modes, tried in the order given:
  * `answer_tag`: the content of the last `<answer>...</answer>` (tag name configurable);
  * `boxed`: the content of the last `\\boxed{...}` or `\\fbox{...}` (nested braces handled);
  * `hash`: the text after the last `####` on its line (GSM8K's convention);
  * `last_number`: the last number in the text (thousands separators removed).
"""

import dataclasses
import difflib
import logging
import re
from typing import Optional, Sequence

EXTRACTION_MODES = ("answer_tag", "boxed", "hash", "last_number")
DEFAULT_MODES = ("answer_tag", "boxed")

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\b")
_HASH_RE = re.compile(r"####[ \t]*([^\n]*)")
_LATEX_COMMAND_RE = re.compile(r"\\[A-Za-z]+")
_WORD_RE = re.compile(r"[A-Za-z]{2,}")
_NUMBER_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?|-?\.\d+")


class _DropTimeoutNotice(logging.Filter):
  """math-verify warns that its timeout is off; ours is in the runner, so the notice is noise."""

  def filter(self, record: logging.LogRecord) -> bool:
    return "Timeout is disabled" not in record.getMessage()


for _name in ("math_verify.parser", "math_verify.grader", "math_verify.utils"):
  logging.getLogger(_name).addFilter(_DropTimeoutNotice())


def check_modes(modes: Sequence[str]) -> tuple[str, ...]:
  """Validates extraction modes; unknown ones fail with the closest valid name."""
  if isinstance(modes, str):
    modes = (modes,)
  for mode in modes:
    if mode not in EXTRACTION_MODES:
      close = difflib.get_close_matches(mode, EXTRACTION_MODES, n=1)
      hint = f" Did you mean {close[0]!r}?" if close else ""
      raise ValueError(f"Unknown answer extraction mode {mode!r}.{hint} "
                       f"Valid modes: {', '.join(EXTRACTION_MODES)}.")
  if not modes:
    raise ValueError(f"Give at least one answer extraction mode from {EXTRACTION_MODES}.")
  return tuple(modes)


def extract_tagged(text: str, tag: str = "answer") -> Optional[str]:
  """Content of the last `<tag>...</tag>` pair, stripped; None when there is none."""
  matches = re.findall(rf"<{re.escape(tag)}>(.*?)</{re.escape(tag)}>", text, flags=re.DOTALL)
  return matches[-1].strip() if matches else None


def _balanced_group(text: str, start: int) -> Optional[str]:
  """The text inside the brace group opening at `text[start] == '{'`, or None if unclosed."""
  depth = 0
  for i in range(start, len(text)):
    if text[i] == "{" and (i == 0 or text[i - 1] != "\\"):
      depth += 1
    elif text[i] == "}" and text[i - 1] != "\\":
      depth -= 1
      if depth == 0:
        return text[start + 1:i]
  return None


def extract_boxed(text: str) -> Optional[str]:
  """Content of the last complete `\\boxed{...}` (or `\\fbox{...}`, or `\\boxed 5`); else None."""
  for match in reversed(list(_BOXED_RE.finditer(text))):
    rest = match.end()
    while rest < len(text) and text[rest] == " ":
      rest += 1
    if rest < len(text) and text[rest] == "{":
      inner = _balanced_group(text, rest)
      if inner is not None:
        return inner.strip()
    elif rest > match.end():  # `\boxed 5`: the token up to whitespace or `$`.
      token = re.match(r"[^\s$]+", text[rest:])
      if token:
        return token.group(0)
  return None


def extract_hash(text: str) -> Optional[str]:
  """Text after the last `####` on its line (GSM8K), commas removed; None when absent or empty."""
  matches = _HASH_RE.findall(text)
  if not matches:
    return None
  answer = matches[-1].strip().replace(",", "")
  return answer or None


def extract_last_number(text: str) -> Optional[str]:
  """The last number written in the text (thousands separators removed), or None."""
  matches = _NUMBER_RE.findall(text)
  return matches[-1].replace(",", "") if matches else None


def extract_answer(text: str, modes: Sequence[str] = DEFAULT_MODES,
                   tag: str = "answer") -> Optional[str]:
  """The final answer of `text` by the first extraction mode that finds one; None if none does."""
  for mode in check_modes(modes):
    if mode == "answer_tag":
      answer = extract_tagged(text, tag)
    elif mode == "boxed":
      answer = extract_boxed(text)
    elif mode == "hash":
      answer = extract_hash(text)
    else:
      answer = extract_last_number(text)
    if answer:
      return answer
  return None


def normalize_text(text: str, case_sensitive: bool = False) -> str:
  """Collapses whitespace, strips surrounding `$` and a trailing period, optionally casefolds."""
  text = " ".join(text.split()).strip().strip("$").strip()
  if text.endswith("."):
    text = text[:-1].rstrip()
  return text if case_sensitive else text.casefold()


def parse_math(text: str) -> list:
  """math-verify's parse of an answer string, without math-verify's signal-based timeout.

  Bare answers (`\\frac{1}{2}`, `3 cm`) are wrapped in `$...$` so that math-verify's LaTeX
  extractor sees them; strings that already carry `$` or `\\boxed` are parsed as they are. Callers
  bound the time this takes (the reward runner runs it in a worker with a per-sample timeout).
  """
  import math_verify  # Imported lazily: sympy is slow to import and only workers need it.
  text = text.replace("\\$", "").strip()  # `\$18`: an escaped dollar is a currency sign.
  if not text:
    return []
  if "$" in text or "\\boxed" in text:
    candidates = (text,)
  else:
    candidates = (f"${text}$", text)
  for candidate in candidates:
    parsed = math_verify.parse(candidate, parsing_timeout=None)
    if parsed:
      return parsed
  return []


def canonicalize_answer(answer: str) -> str:
  """A canonical string for an extracted answer, so that equal answers compare equal.

  Answers math-verify can parse become sympy's printing of the value, with numbers evaluated, floats
  made exact rationals and `x = 3` read as 3 (`0.5`, `\\frac{1}{2}` and `1/2` all give `1/2`;
  `3 cm` gives `3`; `10^3` gives `1000`). Anything else is the normalised text (whitespace
  collapsed, casefolded): words such as `Paris` stay text even though sympy would read them as a
  product of symbols. Used for majority votes over a group.
  """
  import sympy
  parsed = parse_math(answer)
  if parsed and isinstance(parsed[0], sympy.Basic):
    value = parsed[0]
    if value.free_symbols and _WORD_RE.search(_LATEX_COMMAND_RE.sub(" ", answer)):
      return normalize_text(answer)
    if isinstance(value, sympy.Eq) and isinstance(value.lhs, sympy.Symbol):
      value = value.rhs  # `x = 3` answers 3.
    if getattr(value, "is_number", False):
      value = value.doit()  # 10^3 -> 1000.
      if value.has(sympy.Float):
        value = sympy.nsimplify(value, rational=True)
    return str(value)
  return normalize_text(answer)


@dataclasses.dataclass(frozen=True)
class AnswerExtractor:
  """Picklable `completion -> answer | None`: extraction by `modes`, then optional canonicalisation.

  Give it to `RewardRunner(answer_fn=...)` to get each completion's answer back with its rewards
  (majority vote, Co-Reward and COPO compare these strings).
  """
  modes: tuple[str, ...] = DEFAULT_MODES
  tag: str = "answer"
  canonical: bool = True

  def __post_init__(self):
    object.__setattr__(self, "modes", check_modes(self.modes))

  def __call__(self, completion: str) -> Optional[str]:
    answer = extract_answer(completion, self.modes, self.tag)
    if answer is None or not self.canonical:
      return answer
    return canonicalize_answer(answer)
