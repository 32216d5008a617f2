"""Records from a plain JSONL file (one JSON object per line), read without `datasets`."""

import json
import logging
import pathlib
from typing import Any, Optional

from jaxrl_llm.data import fields

logger = logging.getLogger(__name__)


def jsonl_records(path: str, mapping: fields.FieldMapping, limit: Optional[int] = None,
                  source: Optional[str] = None) -> list[tuple[str, str, dict[str, Any]]]:
  """`(question, answer, metadata)` of every line of a JSONL file under a field mapping.

  Blank lines are ignored; a line that is not a JSON object fails with its line number.
  """
  file = pathlib.Path(path).expanduser()
  if not file.is_file():
    raise FileNotFoundError(f"No such JSONL file: {path!r}.")
  source = source or f"jsonl:{path}"
  records, skipped = [], []
  with file.open(encoding="utf-8") as f:
    for line_number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{line_number} is not valid JSON ({e.msg}).") from e
      if not isinstance(row, dict):
        raise ValueError(f"{path}:{line_number} holds a {type(row).__name__}, not a JSON object.")
      fields.check_fields(mapping, row, f"{path}:{line_number}")
      index = len(records) + len(skipped)
      record = fields.record_from_row(row, mapping, source, index)
      if record is None:
        skipped.append(line_number)
      else:
        records.append(record)
      if limit is not None and len(records) >= limit:
        break
  if not records:
    raise ValueError(f"The JSONL file {path!r} has no usable records (empty file, or no answers "
                     f"for the {mapping.answer_parser!r} parser); nothing to train on.")
  if skipped:
    logger.warning("%s: skipped %d records whose %r field has no answer for the %r parser "
                   "(first: line %d).", path, len(skipped), mapping.answer,
                   mapping.answer_parser, skipped[0])
  return records
