"""The `process_judge` rollout hook: process scores from a judge LLM (spec B6 PPR, B7 Posterior).

A judge model (the policy itself by default, or `judge_source` loaded with
`models.from_pretrained`) is asked a fixed principle rubric about a piece of reasoning and
answers Yes or No. The score is its probability of "Yes" against "No" as the next token after the
rubric question,

    score = P(Yes) / (P(Yes) + P(No)) = σ(z_Yes − z_No)       (z: the judge's next-token logits)

read from ONE batched teacher-forced forward per `batch_size` prompts (left-padded, the last
position's hidden state times two columns of the LM head), never by sampling. Scores are
deterministic and lie in (0, 1).

  unit="step"      (PPR / ReNorm, spec B6 (d)): each completion is split into steps (on newlines,
                   or after closing `</think>`, `</search>`, ... tags) and every step is judged
                   with the question. Writes
                     step_id    int32 [B, T]: the step of each completion token, −1 on padding;
                     step_value float32 [B, max_steps]: the judge's score p_{b,j} of step j,
                                0 after the row's last step.
  unit="response"  (Posterior-GRPO, spec B7 (d)): the reasoning of each row whose reward is
                   ≥ `success_threshold` (the `<think>…</think>` content when present, else the
                   whole completion) is judged; other rows are skipped (no judge call) and get 0.
                   Writes proc_score float32 [B].

Scores are cached by (question, judged text): within an iteration when the judge is the policy
(its parameters change with every update), across iterations (up to `cache_size` entries) for a
fixed `judge_source`. Logs judge/calls (prompts the judge scored this iteration: the cache
misses), judge/units (texts that needed a score), judge/cache_hit_frac, judge/score_mean (over
the units), and judge/steps_per_row (unit="step") or judge/judged_frac (unit="response").
"""
import functools
import re
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_llm import models
from jaxrl_llm.data import prompts as prompts_lib
from jaxrl_llm.training.hooks import HookEnv, HostBatch, RolloutHook, register_hook
from jaxrl_llm.training.hooks_models import step_ids_of, step_starts, token_cuts

UNITS = ("step", "response")
SPLITS = ("newline", "tags")

STEP_RUBRIC = (
    "You are a strict judge of reasoning steps. A good step follows these principles:\n"
    "1. It is relevant to the question and makes progress towards its answer.\n"
    "2. Its logic and arithmetic are correct.\n"
    "3. Every claim is grounded in the question or in facts it states or retrieves; a search "
    "query names the key entities.\n\n"
    "Question:\n{question}\n\nStep:\n{text}\n\n"
    "Does this step follow all the principles? Answer Yes or No.")
RESPONSE_RUBRIC = (
    "You are a strict judge of reasoning. Good reasoning follows these principles:\n"
    "1. Every step is relevant to the question and makes progress towards its answer.\n"
    "2. Its logic and arithmetic are correct, with no unjustified leaps.\n"
    "3. It is clear and concise, without repetition.\n\n"
    "Question:\n{question}\n\nReasoning:\n{text}\n\n"
    "Does this reasoning follow all the principles? Answer Yes or No.")

_JUDGES: dict[str, tuple[Any, Any]] = {}
_THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL)


# --------------------------------------------------------------------------------------------------
# Steps


def tag_step_starts(text: str, tags: Sequence[str] = ("think", "search")) -> list[int]:
  """Character offsets where steps 1, 2, ... start when steps end with a closing tag
  (`</think>`, `</search>`, ...): a boundary after each closing tag with non-blank text on both
  sides (the text after the last tag, e.g. `<answer>…`, is the last step)."""
  if not tags:
    raise ValueError("split='tags' needs at least one tag name (e.g. 'think,search')")
  pattern = re.compile("|".join(f"</{re.escape(t)}>" for t in tags))
  starts = []
  for m in pattern.finditer(text):
    e = m.end()
    if text[:e].strip() and text[e:].strip() and (not starts or e > starts[-1]):
      starts.append(e)
  return starts


def split_steps(text: str, split: str = "newline", tags: Sequence[str] = ("think", "search")
                ) -> list[int]:
  """Character offsets of the step starts after the first (`split` "newline" or "tags")."""
  if split not in SPLITS:
    raise ValueError(f"unknown step split {split!r}; valid: {SPLITS}")
  return step_starts(text, "\n") if split == "newline" else tag_step_starts(text, tags)


def token_step_ids(tokenizer: Any, ids: Sequence[int], starts: Sequence[int], max_steps: int
                   ) -> tuple[np.ndarray, list[tuple[int, int]]]:
  """(step of each token, int32 [L]; the character span of each step in the decoded text).

  Step h ≥ 1 starts after the fewest tokens whose decode covers its character offset (a token
  that straddles a boundary stays in the earlier step), as `hooks_models.token_steps`. Beyond
  `max_steps` steps, the later ones merge into the last kept step.
  """
  ids = [int(i) for i in ids]
  text = tokenizer.decode(ids, skip_special_tokens=True)
  cuts, chars = token_cuts(tokenizer, ids, list(starts)[:max(max_steps - 1, 0)], text)
  bounds = [0] + chars + [len(text)]
  spans = [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
  return step_ids_of(cuts, len(ids)), spans


def reasoning_text(text: str) -> str:
  """The `<think>…</think>` content of a completion (joined if several), else the whole text."""
  parts = [m.group(1).strip() for m in _THINK.finditer(text)]
  parts = [p for p in parts if p]
  return "\n".join(parts) if parts else text.strip()


# --------------------------------------------------------------------------------------------------
# The judge's Yes/No probability


def yes_no_ids(tokenizer: Any, yes: str = "Yes", no: str = "No") -> tuple[int, int]:
  """The token ids that start the answers `yes` and `no` (the first token of each)."""
  ids = []
  for word in (yes, no):
    toks = tokenizer(word, add_special_tokens=False)["input_ids"]
    if not toks:
      raise ValueError(f"the judge's tokenizer encodes {word!r} as no token")
    ids.append(int(toks[0]))
  if ids[0] == ids[1]:
    raise ValueError(f"{yes!r} and {no!r} start with the same token {ids[0]}: pick answer words "
                     "that differ in their first token (yes_word / no_word)")
  return ids[0], ids[1]


@functools.partial(jax.jit, static_argnames=("config",))
def _pair_logits(params, config, tokens, attention_mask, pair):
  out = models.forward(params, config, tokens, attention_mask=attention_mask,
                       return_logits=False, return_hidden=True)
  h = out.hidden[:, -1]                                                   # [B, D]
  head = models.output_head(params, config)[:, pair]                      # [D, 2]
  return jnp.einsum("bd,dk->bk", h, head, preferred_element_type=jnp.float32)


def _bucket(n: int, least: int = 64) -> int:
  """The smallest power of two >= max(n, least)."""
  return max(least, 1 << (max(n, 1) - 1).bit_length())


def yes_probability(config: models.ModelConfig, params: Any, prompts: Sequence[Sequence[int]],
                    yes_id: int, no_id: int, *, pad_id: int = 0, batch_size: int = 64
                    ) -> np.ndarray:
  """float64 [N]: P(yes_id) / (P(yes_id) + P(no_id)) for the next token after each prompt.

  Prompts are left-padded (masked) to a common length rounded up to a power of two (at least
  64), in chunks of `batch_size` rows (a short chunk padded to a power of two of rows), so that
  few shapes are compiled; each chunk is one teacher-forced forward of the judge, reading the
  hidden state at the last position and two columns of the LM head.
  """
  if not prompts:
    return np.zeros(0, np.float64)
  pair = jnp.asarray([yes_id, no_id], jnp.int32)
  out = []
  for i in range(0, len(prompts), batch_size):
    chunk = [list(p) for p in prompts[i:i + batch_size]]
    rows = min(batch_size, 1 << (len(chunk) - 1).bit_length())
    width = _bucket(max(len(p) for p in chunk))
    tokens = np.full((rows, width), pad_id, np.int32)
    mask = np.zeros((rows, width), np.int32)
    for r in range(rows):
      p = chunk[min(r, len(chunk) - 1)]
      tokens[r, width - len(p):] = p
      mask[r, width - len(p):] = 1
    z = np.asarray(jax.device_get(_pair_logits(params, config, tokens, mask, pair)), np.float64)
    out.append(1.0 / (1.0 + np.exp(z[:len(chunk), 1] - z[:len(chunk), 0])))
  return np.concatenate(out)


def load_judge(source: str) -> tuple[Any, Any]:
  """`models.from_pretrained(source)` (model, tokenizer), loaded once per process."""
  if source not in _JUDGES:
    model, tokenizer = models.from_pretrained(source)
    if tokenizer is None:
      raise ValueError(f"the judge {source!r} has no tokenizer files: the judge needs its own "
                       "tokenizer and chat template to read the rubric")
    _JUDGES[source] = (model, tokenizer)
  return _JUDGES[source]


def _question(example: Any) -> str:
  q = getattr(example, "question", None)
  if q is None and isinstance(example, dict):
    q = example.get("question")
  return "" if q is None else str(q)


# --------------------------------------------------------------------------------------------------
# The hook


@register_hook
class ProcessJudge(RolloutHook):
  """Process scores from a judge LLM's P(Yes) under a principle rubric (module docstring).

  Args:
    unit: "step" (PPR: step_id, step_value) or "response" (Posterior-GRPO: proc_score).
    judge_source: "" = the current policy (its parameters on the run's mesh), else a
      `models.from_pretrained` source (its own tokenizer and chat template; held unsharded).
    rubric: the user message, with `{question}` and `{text}` placeholders; "" = `STEP_RUBRIC` or
      `RESPONSE_RUBRIC` for the unit. It should end with a Yes/No question.
    split: "newline" (steps end with runs of newlines) or "tags" (steps end after `</tag>` for
      each name in `tags`, comma-separated; the spec's think/search turns).
    max_steps: step columns of step_value; a row's steps beyond it merge into its last step.
    success_threshold, judge_failed: unit="response" judges rows with reward ≥ the threshold,
      or every row with `judge_failed`.
    yes_word, no_word: the answers whose first tokens are compared.
    max_chars: a judged text keeps its first `max_chars` characters.
    max_judge_tokens: a judge prompt keeps its last `max_judge_tokens` tokens.
    batch_size: prompts per judge forward.
    cache_size: cached scores kept for a fixed `judge_source`.
    format_regex: if set, also writes extras["format_reward"] [B] = 1.0 where the completion
      matches it (`re.search`, DOTALL), for Posterior-GRPO's format term.
  """
  name = "process_judge"
  order = 70
  provides = ("step_id", "step_value", "proc_score", "format_reward")   # all it can write

  def __init__(self, unit: str = "step", judge_source: str = "", rubric: str = "",
               split: str = "newline", tags: str = "think,search", max_steps: int = 8,
               success_threshold: float = 1.0, judge_failed: bool = False,
               yes_word: str = "Yes", no_word: str = "No", max_chars: int = 2000,
               max_judge_tokens: int = 1024, batch_size: int = 64, cache_size: int = 100_000,
               format_regex: str = ""):
    if unit not in UNITS:
      raise ValueError(f"unknown judge unit {unit!r}; valid: {UNITS}")
    if split not in SPLITS:
      raise ValueError(f"unknown step split {split!r}; valid: {SPLITS}")
    if max_steps < 1 or batch_size < 1 or max_chars < 1 or max_judge_tokens < 8:
      raise ValueError("process_judge needs max_steps, batch_size, max_chars >= 1 and "
                       f"max_judge_tokens >= 8; got {max_steps}, {batch_size}, {max_chars}, "
                       f"{max_judge_tokens}")
    self.rubric = rubric or (STEP_RUBRIC if unit == "step" else RESPONSE_RUBRIC)
    if "{question}" not in self.rubric or "{text}" not in self.rubric:
      raise ValueError("the judge rubric needs the placeholders {question} and {text}")
    self.unit, self.judge_source, self.split = unit, judge_source, split
    self.tags = tuple(t.strip() for t in tags.split(",") if t.strip())
    self.max_steps, self.success_threshold = int(max_steps), float(success_threshold)
    self.judge_failed, self.yes_word, self.no_word = bool(judge_failed), yes_word, no_word
    self.max_chars, self.max_judge_tokens = int(max_chars), int(max_judge_tokens)
    self.batch_size, self.cache_size = int(batch_size), int(cache_size)
    self.format_regex = re.compile(format_regex, re.DOTALL) if format_regex else None
    extra = ("format_reward",) if format_regex else ()
    self.provides = (("step_id", "step_value") if unit == "step" else ("proc_score",)) + extra
    self._cache: dict[tuple[str, str], float] = {}
    self._cache_step = None

  # ------------------------------------------------------------------------------------------------
  def _judge(self, env: HookEnv):
    """(model config, params, tokenizer) of the judge."""
    if not self.judge_source:
      return env.model.config, env.params, env.tokenizer
    model, tokenizer = load_judge(self.judge_source)
    return model.config, model.params(), tokenizer

  def prompt(self, tokenizer: Any, question: str, text: str) -> list[int]:
    """The judge prompt's token ids: the rubric as one user turn, generation prompt added."""
    user = self.rubric.format(question=question, text=text[:self.max_chars])
    ids = prompts_lib.encode_prompt(tokenizer, [{"role": "user", "content": user}])
    return ids[-self.max_judge_tokens:]

  def score(self, env: HookEnv, items: Sequence[tuple[str, str]]) -> tuple[np.ndarray, int]:
    """(scores of the (question, text) items, number of judge prompts run): cached items are
    reused, the distinct others go through `yes_probability` in batches."""
    if not self.judge_source and self._cache_step != env.step:
      self._cache.clear()              # the policy judge changed since the last iteration
    self._cache_step = env.step
    todo = list(dict.fromkeys(k for k in items if k not in self._cache))
    if todo:
      config, params, tokenizer = self._judge(env)
      yes, no = yes_no_ids(tokenizer, self.yes_word, self.no_word)
      pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
      probs = yes_probability(config, params, [self.prompt(tokenizer, q, t) for q, t in todo],
                              yes, no, pad_id=pad, batch_size=self.batch_size)
      if self.judge_source:
        while len(self._cache) + len(todo) > self.cache_size and self._cache:
          self._cache.pop(next(iter(self._cache)))
      self._cache.update(zip(todo, probs.tolist()))
    return np.asarray([self._cache[k] for k in items], np.float64), len(todo)

  def process(self, batch: HostBatch, env: HookEnv) -> HostBatch:
    if self.unit == "step":
      metrics = self._steps(batch, env)
    else:
      metrics = self._responses(batch, env)
    if self.format_regex is not None:
      batch.extras["format_reward"] = np.asarray(
          [float(self.format_regex.search(t) is not None) for t in batch.texts], np.float32)
    batch.metrics.update(metrics)
    return batch

  def _steps(self, batch: HostBatch, env: HookEnv) -> dict[str, float]:
    c = batch.completions
    tokens, lengths = np.asarray(c.tokens), np.asarray(c.lengths)
    b, width = tokens.shape
    step_id = np.full((b, width), -1, np.int32)
    items, owners = [], []
    for i in range(b):
      ids = tokens[i, :lengths[i]].tolist()
      if not ids:
        continue
      text = env.tokenizer.decode(ids, skip_special_tokens=True)
      sid, spans = token_step_ids(env.tokenizer, ids, split_steps(text, self.split, self.tags),
                                  self.max_steps)
      step_id[i, :len(ids)] = sid
      q = _question(batch.examples[i])
      for j, (lo, hi) in enumerate(spans):
        items.append((q, text[lo:hi].strip()))
        owners.append((i, j))
    scores, calls = self.score(env, items)
    step_value = np.zeros((b, self.max_steps), np.float32)
    for (i, j), s in zip(owners, scores):
      step_value[i, j] = s
    batch.extras["step_id"] = step_id
    batch.extras["step_value"] = step_value
    return self._metrics(len(items), calls, scores) | {
        "judge/steps_per_row": len(items) / max(b, 1)}

  def _responses(self, batch: HostBatch, env: HookEnv) -> dict[str, float]:
    b = batch.batch_size
    rows = [i for i in range(b)
            if self.judge_failed or batch.rewards[i] >= self.success_threshold]
    items = [(_question(batch.examples[i]), reasoning_text(batch.texts[i])) for i in rows]
    scores, calls = self.score(env, items)
    proc = np.zeros(b, np.float32)
    proc[rows] = scores
    batch.extras["proc_score"] = proc
    return self._metrics(len(items), calls, scores) | {"judge/judged_frac": len(rows) / max(b, 1)}

  @staticmethod
  def _metrics(units: int, calls: int, scores: np.ndarray) -> dict[str, float]:
    return {"judge/calls": float(calls), "judge/units": float(units),
            "judge/cache_hit_frac": 1.0 - calls / units if units else 0.0,
            "judge/score_mean": float(scores.mean()) if scores.size else 0.0}
