"""Examples, the prompt-source protocol, chat formatting and token-length filtering.

A prompt source is an iterator of `Example`s (chat messages, reference answer, metadata) with a
small JSON-serialisable cursor: `state()` returns it, and `restore(state)` (or
`make_source(..., state=...)`) continues at the next example, so a resumed run sees the same
examples as an uninterrupted one.
Every source here is a `TableSource`: a random-access table of records, visited epoch by epoch in an
order that is a pure function of `(seed, epoch)`. A cursor is then just `(epoch, position)`.
"""

import dataclasses
import logging
from typing import Any, Iterator, Mapping, Optional, Protocol, Sequence

import numpy as np

logger = logging.getLogger(__name__)

Messages = list[dict[str, str]]

ANSWER_FORMATS = {
    "answer_tag": "Put your final answer between <answer> and </answer> tags.",
    "boxed": "Put your final answer within \\boxed{}.",
    "think_answer": ("First think step by step between <think> and </think> tags, then give your "
                     "final answer between <answer> and </answer> tags."),
    "none": None,
}
"""Named answer-format instructions; `answer_format` also accepts any literal instruction text."""


@dataclasses.dataclass(frozen=True)
class Example:
  """One prompt with its reference.

  Attributes:
    prompt: chat messages (`[{"role": "system"|"user", "content": ...}, ...]`), ready for a chat
      template.
    answer: the reference answer as text (what verifiers compare against).
    metadata: where the example comes from (`source`, `index`) and anything the verifier needs
      (reasoning-gym's entry under `"reasoning_gym"`; other dataset fields for HF records).
  """
  prompt: Messages
  answer: str
  metadata: dict[str, Any]

  @property
  def question(self) -> str:
    """The user message's text (with the answer-format instruction, when there is one)."""
    return next(m["content"] for m in reversed(self.prompt) if m["role"] == "user")


class PromptSource(Protocol):
  """An iterator of examples with a resumable cursor."""

  def __iter__(self) -> Iterator[Example]: ...

  def __next__(self) -> Example: ...

  def __len__(self) -> int:
    """Examples per epoch."""

  def state(self) -> dict[str, Any]:
    """A JSON-serialisable cursor; `restore` of it continues at the next example."""

  def restore(self, state: Mapping[str, Any]) -> None: ...


@dataclasses.dataclass(frozen=True)
class PromptFormat:
  """How a question becomes chat messages: an optional system prompt and answer instruction.

  Attributes:
    system_prompt: the system message, or None for none (the chat template may add its own).
    answer_format: a key of `ANSWER_FORMATS` or literal instruction text, appended to the question
      after a blank line; None or "none" for no instruction.
  """
  system_prompt: Optional[str] = None
  answer_format: Optional[str] = "answer_tag"

  def instruction(self) -> Optional[str]:
    if self.answer_format is None:
      return None
    return ANSWER_FORMATS.get(self.answer_format, self.answer_format)

  def messages(self, question: str) -> Messages:
    instruction = self.instruction()
    content = question.strip() if not instruction else f"{question.strip()}\n\n{instruction}"
    system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
    return system + [{"role": "user", "content": content}]


class Records(Protocol):
  """Random access to `(question, answer, metadata)` triples."""

  def __len__(self) -> int: ...

  def __getitem__(self, index: int) -> tuple[str, str, dict[str, Any]]: ...


@dataclasses.dataclass(frozen=True)
class IndexedRecords:
  """A view of `records` at the given indices (used for train/eval splits)."""
  records: Records
  indices: Sequence[int]

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, index: int) -> tuple[str, str, dict[str, Any]]:
    return self.records[int(self.indices[index])]


def split_indices(num_records: int, split: Optional[str], eval_size: Optional[int],
                  eval_fraction: Optional[float], seed: int,
                  contiguous: bool = False) -> Optional[np.ndarray]:
  """Record indices of a deterministic train/eval split, or None when `split` is None (all records).

  The eval part is `eval_size` records (or `eval_fraction` of them), chosen by a permutation seeded
  by `seed`, or the last ones when `contiguous` (procedural data, where every index is a fresh
  item).
  """
  if split is None:
    if eval_size is not None or eval_fraction is not None:
      raise ValueError("eval_size/eval_fraction were given without split; set split='train' or "
                       "split='eval' to say which part this source yields.")
    return None
  if split not in ("train", "eval"):
    raise ValueError(f"split must be 'train', 'eval' or None (all records); got {split!r}.")
  if (eval_size is None) == (eval_fraction is None):
    raise ValueError(f"split={split!r} needs exactly one of eval_size (a count) or eval_fraction "
                     "(in (0, 1)) to define the held-out part.")
  if eval_fraction is not None:
    if not 0 < eval_fraction < 1:
      raise ValueError(f"eval_fraction must be in (0, 1); got {eval_fraction}.")
    eval_size = max(1, round(eval_fraction * num_records))
  if not 0 < eval_size < num_records:
    raise ValueError(f"eval_size={eval_size} leaves no records for one of the splits: the data has "
                     f"{num_records} records. Choose 0 < eval_size < {num_records}.")
  if contiguous:
    order = np.arange(num_records)
    held_out, kept = order[num_records - eval_size:], order[:num_records - eval_size]
  else:
    order = np.random.default_rng([seed, 0x5EED]).permutation(num_records)
    held_out, kept = np.sort(order[:eval_size]), np.sort(order[eval_size:])
  return held_out if split == "eval" else kept


class TableSource:
  """Visits a table of records epoch by epoch, in a seeded order, with a resumable cursor.

  Args:
    name: a description of the data (`"reasoning_gym:chain_sum"`), stored in cursors so that a
      cursor is not restored into a different source.
    records: the table.
    prompt_format: how questions become chat messages.
    seed: seeds the per-epoch shuffles (epoch e uses the permutation drawn from `(seed, e)`).
    shuffle: visit records in a fresh random order each epoch (else in table order).
    num_epochs: stop after this many passes; None repeats forever (training streams).
  """

  def __init__(self, name: str, records: Records, prompt_format: PromptFormat = PromptFormat(),
               seed: int = 0, shuffle: bool = True, num_epochs: Optional[int] = None):
    if len(records) == 0:
      raise ValueError(f"The data source {name!r} has no records, so there is nothing to train on; "
                       "check the path, the split and the filters.")
    if num_epochs is not None and num_epochs < 1:
      raise ValueError(f"num_epochs must be >= 1 or None (forever); got {num_epochs}.")
    self.name = name
    self.records = records
    self.prompt_format = prompt_format
    self.seed = int(seed)
    self.shuffle = bool(shuffle)
    self.num_epochs = num_epochs
    self._epoch = 0
    self._position = 0
    self._order: Optional[np.ndarray] = None

  def __len__(self) -> int:
    return len(self.records)

  def __iter__(self) -> "TableSource":
    return self

  def _epoch_order(self) -> np.ndarray:
    if self._order is None:
      n = len(self.records)
      self._order = (np.random.default_rng([self.seed, self._epoch]).permutation(n)
                     if self.shuffle else np.arange(n))
    return self._order

  def __next__(self) -> Example:
    if self.num_epochs is not None and self._epoch >= self.num_epochs:
      raise StopIteration
    index = int(self._epoch_order()[self._position])
    question, answer, metadata = self.records[index]
    metadata = {**metadata, "epoch": self._epoch}
    self._position += 1
    if self._position == len(self.records):
      self._epoch, self._position, self._order = self._epoch + 1, 0, None
    return Example(self.prompt_format.messages(question), answer, metadata)

  def state(self) -> dict[str, Any]:
    return {"source": self.name, "num_records": len(self.records), "seed": self.seed,
            "shuffle": self.shuffle, "epoch": self._epoch, "position": self._position}

  def restore(self, state: Mapping[str, Any]) -> None:
    expected = {k: v for k, v in self.state().items() if k not in ("epoch", "position")}
    saved = {k: state.get(k) for k in expected}
    if saved != expected:
      raise ValueError(f"This cursor was saved from a different source ({saved}) than the one "
                       f"being resumed ({expected}). Resume with the same data spec, or start "
                       "without the saved cursor.")
    position = int(state["position"])
    if not 0 <= position < len(self.records):
      raise ValueError(f"Cursor position {position} is outside [0, {len(self.records)}).")
    self._epoch, self._position, self._order = int(state["epoch"]), position, None


def render_prompt(tokenizer: Any, messages: Messages) -> str:
  """The chat template applied to `messages`, ending where the assistant's reply starts."""
  if getattr(tokenizer, "chat_template", None) is None:
    raise ValueError(f"The tokenizer {type(tokenizer).__name__} has no chat template; load an "
                     "instruct model's tokenizer, or set tokenizer.chat_template.")
  return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_prompt(tokenizer: Any, messages: Messages) -> list[int]:
  """Token ids of the chat-formatted prompt (the template's special tokens, none added twice)."""
  text = render_prompt(tokenizer, messages)
  return list(tokenizer(text, add_special_tokens=False)["input_ids"])


@dataclasses.dataclass(frozen=True)
class EncodedPrompt:
  """An example with its prompt's token ids."""
  example: Example
  tokens: list[int]


class TokenizedSource:
  """Encodes a source's prompts with a chat template and drops those longer than a limit.

  Long prompts are dropped and counted (`num_dropped`, metric `data/dropped_prompts`), never
  truncated: a truncated question usually loses the part that makes its answer checkable. The count
  is part of the cursor. If a whole epoch's worth of prompts in a row is too long, iteration raises
  instead of spinning.
  """

  def __init__(self, source: PromptSource, tokenizer: Any, max_prompt_tokens: Optional[int] = None):
    if max_prompt_tokens is not None and max_prompt_tokens < 1:
      raise ValueError(f"max_prompt_tokens must be >= 1 or None; got {max_prompt_tokens}.")
    self.source = source
    self.tokenizer = tokenizer
    self.max_prompt_tokens = max_prompt_tokens
    self.num_dropped = 0

  def __len__(self) -> int:
    return len(self.source)

  def __iter__(self) -> "TokenizedSource":
    return self

  def __next__(self) -> EncodedPrompt:
    dropped_in_a_row, shortest = 0, None
    while True:
      example = next(self.source)
      tokens = encode_prompt(self.tokenizer, example.prompt)
      if self.max_prompt_tokens is None or len(tokens) <= self.max_prompt_tokens:
        return EncodedPrompt(example, tokens)
      self.num_dropped += 1
      dropped_in_a_row += 1
      shortest = len(tokens) if shortest is None else min(shortest, len(tokens))
      logger.info("Dropped a prompt of %d tokens (> max_prompt_tokens=%d): %s index %s",
                  len(tokens), self.max_prompt_tokens, example.metadata.get("source"),
                  example.metadata.get("index"))
      if dropped_in_a_row >= len(self.source):
        raise ValueError(f"All {len(self.source)} prompts of the source are longer than "
                         f"max_prompt_tokens={self.max_prompt_tokens} (the shortest has {shortest} "
                         "tokens); raise max_prompt_tokens or shorten the system prompt.")

  def metrics(self) -> dict[str, float]:
    return {"data/dropped_prompts": float(self.num_dropped)}

  def state(self) -> dict[str, Any]:
    return {"source": self.source.state(), "num_dropped": self.num_dropped}

  def restore(self, state: Mapping[str, Any]) -> None:
    self.source.restore(state["source"])
    self.num_dropped = int(state["num_dropped"])
