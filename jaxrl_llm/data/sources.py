"""`make_source`: a prompt source from a spec string or a config mapping.

Spec strings are `<kind>:<target>[?key=value&key=value...]`:
  * `reasoning_gym:<task>?size=1000&seed=0&<task option>=...`: any reasoning-gym task; options that
    are not source options go into the task's config (`reasoning_gym:chain_sum?min_terms=3`).
  * `hf:<hub id | file | folder>?preset=gsm8k|math&question_field=...&answer_field=...&name=main`:
    Hugging Face `datasets` (parquet, json/jsonl, arrow or csv files; `save_to_disk` folders).
  * `jsonl:<file>?question_field=...&answer_field=...`: a plain JSONL file, read without `datasets`.
A bare path is `jsonl:` when it ends in `.jsonl` and `hf:` otherwise. Values are Python literals
(`3`, `0.5`, `True`/`true`, `None`) or else strings; `%xx` escapes are decoded.

A mapping is `{"source": <spec string>, <option>: <value>, ...}` (a ConfigDict works too); its
options override the string's, and keyword arguments override both. A reasoning-gym task config
may also be given whole as `config={...}`.

Source options (all kinds): seed (0), shuffle (True), num_epochs (None: forever), split (None |
"train" | "eval"), eval_size, eval_fraction, system_prompt (None), answer_format ("answer_tag": see
`ANSWER_FORMATS`, or literal text). reasoning_gym: size (1000), config. hf: name, hf_split
("train"), preset, question_field, answer_field, answer_parser, limit. jsonl: preset,
question_field, answer_field, answer_parser, limit.
"""

import ast
import difflib
import urllib.parse
from typing import Any, Mapping, Optional, Union

from jaxrl_llm.data import fields, hf, jsonl, prompts
from jaxrl_llm.data import reasoning_gym as rg

KINDS = ("reasoning_gym", "hf", "jsonl")
_KIND_ALIASES = {"rg": "reasoning_gym", "reasoning-gym": "reasoning_gym", "datasets": "hf"}
COMMON_OPTIONS = ("seed", "shuffle", "num_epochs", "split", "eval_size", "eval_fraction",
                  "system_prompt", "answer_format")
KIND_OPTIONS = {
    "reasoning_gym": ("size", "config"),
    "hf": ("name", "hf_split", "preset", "question_field", "answer_field", "answer_parser",
           "limit"),
    "jsonl": ("preset", "question_field", "answer_field", "answer_parser", "limit"),
}

SourceSpec = Union[str, Mapping[str, Any]]


def _literal(text: str) -> Any:
  text = urllib.parse.unquote_plus(text)
  lowered = text.strip().lower()
  if lowered in ("true", "false"):
    return lowered == "true"
  if lowered in ("none", "null"):
    return None
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def parse_spec(spec: str) -> tuple[str, str, dict[str, Any]]:
  """`(kind, target, options)` of a spec string such as `reasoning_gym:chain_sum?size=100`."""
  head, _, query = spec.partition("?")
  kind, sep, target = head.partition(":")
  kind = _KIND_ALIASES.get(kind, kind)
  if sep and kind not in KINDS and kind.isidentifier() and len(kind) > 1:
    close = difflib.get_close_matches(kind, KINDS + tuple(_KIND_ALIASES), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"Unknown data source kind {kind!r} in {spec!r}.{hint} Use "
                     "reasoning_gym:<task>, hf:<hub id or path> or jsonl:<path>.")
  if not sep or kind not in KINDS:  # A bare path or hub id.
    kind, target = ("jsonl" if head.endswith(".jsonl") else "hf"), head
  if not target:
    what = "task" if kind == "reasoning_gym" else "path"
    raise ValueError(f"The data source {spec!r} names no {what}; write e.g. "
                     "reasoning_gym:chain_sum or hf:/data/gsm8k.jsonl.")
  options: dict[str, Any] = {}
  for item in filter(None, query.split("&")):
    key, eq, value = item.partition("=")
    if not eq:
      raise ValueError(f"Option {item!r} in {spec!r} has no value; write key=value.")
    options[key.strip()] = _literal(value)
  return kind, target, options


def _as_dict(config: Any) -> dict[str, Any]:
  if hasattr(config, "to_dict"):  # ml_collections.ConfigDict
    config = config.to_dict()
  return dict(config)


def _check_options(kind: str, options: Mapping[str, Any]) -> None:
  valid = COMMON_OPTIONS + KIND_OPTIONS[kind]
  for key in options:
    if key not in valid:
      close = difflib.get_close_matches(key, valid, n=1)
      hint = f" Did you mean {close[0]!r}?" if close else ""
      raise ValueError(f"Unknown option {key!r} for a {kind} source.{hint} Valid options: "
                       f"{', '.join(valid)}.")


def make_source(spec: SourceSpec, state: Optional[Mapping[str, Any]] = None,
                **overrides: Any) -> prompts.TableSource:
  """A prompt source from a spec string or mapping (see the module docstring for the syntax).

  Args:
    spec: `"reasoning_gym:chain_sum?size=500"`, `"hf:/data/gsm8k.jsonl?preset=gsm8k"`, or a mapping
      `{"source": ..., **options}`.
    state: a cursor from `source.state()`; the source continues right after it.
    **overrides: options that take precedence over those in `spec`.

  Returns:
    A `TableSource` (iterator of `Example`s with `state()`/`restore()`).
  """
  if isinstance(spec, str):
    kind, target, options = parse_spec(spec)
  else:
    mapping = _as_dict(spec)
    if "source" not in mapping:
      raise ValueError(f"A data config needs a 'source' key (e.g. 'reasoning_gym:chain_sum'); got "
                       f"keys {sorted(mapping)}.")
    kind, target, options = parse_spec(str(mapping.pop("source")))
    options.update(mapping)
  options.update(overrides)
  if kind == "reasoning_gym":
    # Options that are not source options are the task's own config.
    task_config = _as_dict(options.pop("config", None) or {})
    for key in list(options):
      if key not in COMMON_OPTIONS + KIND_OPTIONS[kind]:
        task_config[key] = options.pop(key)
    options["config"] = task_config
  _check_options(kind, options)

  prompt_format = prompts.PromptFormat(options.pop("system_prompt", None),
                                       options.pop("answer_format", "answer_tag"))
  seed = int(options.pop("seed", 0))
  split = options.pop("split", None)
  eval_size, eval_fraction = options.pop("eval_size", None), options.pop("eval_fraction", None)
  shuffle = options.pop("shuffle", True)
  num_epochs = options.pop("num_epochs", None)

  if kind == "reasoning_gym":
    size = int(options.pop("size", 1000))
    # Procedural items: the eval split is extra items after the training ones.
    extra = 0
    if split is not None and eval_size is not None:
      extra = int(eval_size)
    elif split is not None and eval_fraction is not None:
      extra = max(1, round(eval_fraction * size))
      eval_size, eval_fraction = extra, None
    records = rg.ReasoningGymRecords(target, options.pop("config"), size + extra, seed)
    name = f"reasoning_gym:{target}"
    indices = prompts.split_indices(size + extra, split, eval_size, eval_fraction, seed,
                                    contiguous=True)
  else:
    mapping = fields.field_mapping(options.pop("preset", None), options.pop("question_field", None),
                                   options.pop("answer_field", None),
                                   options.pop("answer_parser", None))
    limit = options.pop("limit", None)
    name = f"{kind}:{target}"
    if kind == "hf":
      records = hf.hf_records(target, mapping, options.pop("name", None),
                              options.pop("hf_split", "train"), limit, name)
    else:
      records = jsonl.jsonl_records(target, mapping, limit, name)
    indices = prompts.split_indices(len(records), split, eval_size, eval_fraction, seed)
  if indices is not None:
    records = prompts.IndexedRecords(records, indices)
    name = f"{name}#{split}"
  source = prompts.TableSource(name, records, prompt_format, seed, shuffle, num_epochs)
  if state is not None:
    source.restore(state)
  return source


def train_eval_sources(spec: SourceSpec, eval_size: Optional[int] = None,
                       eval_fraction: Optional[float] = None,
                       **overrides: Any) -> tuple[prompts.TableSource, prompts.TableSource]:
  """Disjoint train and eval sources from one spec: train streams shuffled epochs forever, eval is
  one pass in table order. Give `eval_size` (a count) or `eval_fraction`."""
  split_options = dict(eval_size=eval_size, eval_fraction=eval_fraction, **overrides)
  train = make_source(spec, split="train", **split_options)
  evaluation = make_source(spec, split="eval", **{"shuffle": False, "num_epochs": 1,
                                                  **split_options})
  return train, evaluation
