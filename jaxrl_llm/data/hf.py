"""Records from Hugging Face `datasets`: a hub id (online or cached) or a local file or folder."""

import contextlib
import logging
import os
import pathlib
from typing import Any, Iterator, Optional

from jaxrl_llm.data import fields

logger = logging.getLogger(__name__)

FILE_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".arrow": "arrow",
                 ".csv": "csv"}
_SAVED_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


def _offline() -> bool:
  return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def load_table(path: str, name: Optional[str] = None, hf_split: str = "train") -> Any:
  """A `datasets.Dataset` from a local file, a local folder, or a hub id.

  Args:
    path: a file (`.parquet`, `.json`, `.jsonl`, `.arrow`, `.csv`), a folder (data files, or the
      output of `save_to_disk`), or a hub id such as `openai/gsm8k`.
    name: the dataset's config name on the hub (`main` for GSM8K), if it has several.
    hf_split: which split to load. A single file holds one split, named `train`.
  """
  import datasets
  local = pathlib.Path(path).expanduser()
  if local.is_file():
    builder = FILE_BUILDERS.get(local.suffix.lower())
    if builder is None:
      raise ValueError(f"Cannot tell the format of {path!r} from its suffix {local.suffix!r}; "
                       f"use one of {', '.join(FILE_BUILDERS)}.")
    if hf_split != "train":
      raise ValueError(f"{path!r} is a single file, which holds one split ('train'); got "
                       f"hf_split={hf_split!r}. Point at a folder with per-split files, or carve a "
                       "held-out part with split='eval' and eval_size.")
    with _empty_means(path):
      return datasets.load_dataset(builder, data_files=str(local), split="train")
  if local.is_dir():
    if any((local / marker).exists() for marker in _SAVED_MARKERS):
      table = datasets.load_from_disk(str(local))
      if isinstance(table, datasets.DatasetDict):
        if hf_split not in table:
          raise ValueError(f"{path!r} has no split {hf_split!r}; it has {', '.join(table)}.")
        table = table[hf_split]
      return table
    with _empty_means(path):
      return _load_splits(str(local), name, hf_split)
  if path.startswith((".", "/", "~")) or local.suffix.lower() in FILE_BUILDERS:
    raise FileNotFoundError(f"No such file or folder: {path!r}.")
  try:
    return _load_splits(path, name, hf_split)
  except (ConnectionError, OSError, FileNotFoundError) as e:
    offline = (" The Hub is switched off (HF_HUB_OFFLINE=1) and the dataset is not in the local "
               "cache." if _offline() else "")
    raise RuntimeError(
        f"Could not load the dataset {path!r} from the Hugging Face Hub ({type(e).__name__}: "
        f"{e}).{offline} Pass a local folder or file instead (parquet, json/jsonl, arrow or csv), "
        f"e.g. make_source('hf:/data/gsm8k/train.jsonl?preset=gsm8k'), or download it first "
        f"where there is a network (datasets.load_dataset(...).save_to_disk(folder)).") from e


@contextlib.contextmanager
def _empty_means(path: str) -> Iterator[None]:
  """Turns `datasets`' errors for empty local data into one that says so."""
  try:
    yield
  except ValueError as e:
    if "corresponds to no data" in str(e) or "At least one data file" in str(e):
      raise ValueError(f"The dataset at {path!r} is empty (no records in its data files), so there "
                       "is nothing to train on; check the path.") from e
    raise


def _load_splits(path: str, name: Optional[str], hf_split: str) -> Any:
  import datasets
  table = datasets.load_dataset(path, name)
  if hf_split not in table:
    raise ValueError(f"The dataset {path!r} has no split {hf_split!r}; it has "
                     f"{', '.join(table)}. Set hf_split to one of them.")
  return table[hf_split]


def hf_records(path: str, mapping: fields.FieldMapping, name: Optional[str] = None,
               hf_split: str = "train", limit: Optional[int] = None,
               source: Optional[str] = None) -> list[tuple[str, str, dict[str, Any]]]:
  """All `(question, answer, metadata)` records of a dataset under a field mapping.

  Records whose answer field yields no answer under the mapping's parser (a GSM8K solution without
  `####`) are skipped and counted in a warning.
  """
  table = load_table(path, name, hf_split)
  where = f"The dataset {path!r} (split {hf_split!r})"
  if len(table) == 0:
    raise ValueError(f"{where} is empty, so there is nothing to train on; check the path and "
                     "split.")
  fields.check_fields(mapping, table.column_names, where)
  if limit is not None:
    table = table.select(range(min(limit, len(table))))
  source = source or f"hf:{path}"
  records, skipped = [], []
  for index, row in enumerate(table):
    record = fields.record_from_row(row, mapping, source, index)
    if record is None:
      skipped.append(index)
    else:
      records.append(record)
  if skipped:
    logger.warning("%s: skipped %d of %d records whose %r field has no answer for the %r parser "
                   "(first: index %d).", where, len(skipped), len(table), mapping.answer,
                   mapping.answer_parser, skipped[0])
  return records
