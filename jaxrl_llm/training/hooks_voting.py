"""Label-free reward hooks: majority vote (MM-UPT), answer frequency (TTRV), Co-Reward.

The methods of `spec/baselines_and_more.md` B9 and B10 replace the verifier's reward by one computed
from the answers the policy itself gives, so they run on the host between the sampler and the
rollout phase (`training.hooks`) and pair with a plain GRPO objective:

  majority_vote   mode "mm_upt": r = 1[answer = the group's majority answer] (arXiv 2505.22453)
                  mode "ttrv":   r = p_k(answer) − λ·H̄_k, frequencies over the group (2510.06783)
  co_reward       each question paired with a rephrasing (a data field, or the policy rephrasing
                  it greedily); r = 1[answer = the majority answer of the *other* question of the
                  pair] (arXiv 2508.00410)

Neither needs reference answers: the reward comes from `HostBatch.answers` (the run's extractor,
`reward.extract`, applied by the reward runner). When the examples do hold one, the verifier's
reward of the same rows is logged as `<hook>/true_accuracy` and used for nothing else.
Unparsable answers never win a vote and score 0 (`count_missing=True` lets None vote like an
answer, as MM-UPT's released extractor does). A majority needs `min_votes` agreeing samples
(default 2), so a group whose answers all differ carries no signal; MM-UPT's code takes the first
answer then (`min_votes=1`).
"""
import dataclasses
import re
from typing import Any, Optional

import numpy as np

from jaxrl_llm import rewards as rewards_lib
from jaxrl_llm.data import prompts as prompts_lib
from jaxrl_llm.training.hooks import HookEnv, HostBatch, RolloutHook, register_hook

VOTE_MODES = ("mm_upt", "ttrv")
REPHRASE_INSTRUCTION = (
    "Rewrite the following problem so that it asks exactly the same question in different words. "
    "Keep every number, quantity and condition unchanged and do not solve it. Reply with the "
    "rewritten problem only.\n\nProblem: {question}")


def _answers(batch: HostBatch, env: HookEnv) -> list[Optional[str]]:
  """The batch's extracted answers (the runner's), or the env's extractor on the texts when the
  runner extracted none."""
  if any(a is not None for a in batch.answers) or env.answer_fn is None:
    return list(batch.answers)
  return [env.answer_fn(t) for t in batch.texts]


def _reference(example: Any) -> Optional[str]:
  """The example's reference answer, None when it has none (unlabelled data)."""
  ref = example.get("answer") if isinstance(example, dict) else getattr(example, "answer", None)
  return ref if isinstance(ref, str) and ref.strip() else None


def _true_accuracy(batch: HostBatch, rows: Optional[np.ndarray] = None) -> Optional[float]:
  """Mean verifier reward over the rows (all by default) whose example holds a reference."""
  rows = np.arange(batch.batch_size) if rows is None else rows
  labelled = [i for i in rows if _reference(batch.examples[i]) is not None]
  return float(np.mean(batch.rewards[labelled])) if labelled else None


def _vote_accuracy(batch: HostBatch, answers, majorities) -> Optional[float]:
  """Fraction of labelled groups whose majority answer the verifier accepts (maj@n accuracy): the
  verifier's reward of a row that gives the majority answer; 0 for a group with none."""
  hits = []
  for k, maj in enumerate(majorities):
    rows = batch.group_rows(k)
    if _reference(batch.examples[rows[0]]) is None:
      continue
    carrier = [i for i in rows if maj is not None and answers[i] == maj]
    hits.append(float(batch.rewards[carrier[0]]) if carrier else 0.0)
  return float(np.mean(hits)) if hits else None


@register_hook
class MajorityVote(RolloutHook):
  """Rewards from the group's own answers: MM-UPT's majority vote or TTRV's frequencies.

    mm_upt: r_b = 1[ans_b = maj_k]  (maj_k: the most frequent answer, ties to the first, at least
            `min_votes` votes; see `rewards.majority_vote`)
    ttrv:   r_b = p_k(ans_b) − λ·H̄_k  (see `rewards.ttrv_rewards`)

  TTRV samples N_vote answers per prompt and trains on the first N_train of them. The batch keeps
  its static P × `sampling.n` rows, so here N_vote = `sampling.n`: every sample votes, and with
  `n_train` < n the first `n_train` rows of each group are trained on while the others only vote.
  Those rows stay in the batch as a separate group with an all-zero completion mask, so the
  advantage statistics run over the N_train trained rows exactly (the spec's A over the training
  samples) and the vote-only rows add nothing to any loss or count; the train step still spends
  their forward pass. `n_train=None` (default) trains on all N_vote samples. TTRV's paper runs
  N_vote = 32, N_train = 16, λ = 0.75: `sampling.n = 32, n_train = 16`.

  Args:
    mode: "mm_upt" or "ttrv".
    entropy_coef: TTRV's λ (0.75).
    n_train: TTRV's N_train (None: all samples are trained on).
    count_missing: unparsable answers vote (and can win) like any answer.
    min_votes: a majority needs this many votes (MM-UPT; the logged agreement for TTRV).

  Logs `majority/agreement_rate` (rows that give their group's majority answer),
  `majority/no_answer_frac`, `majority/reward_mean`, with references `majority/true_accuracy`
  (the verifier's mean reward, for logging only) and `majority/vote_accuracy` (the majority
  answer's), and for TTRV `ttrv/entropy_mean` (H̄) and `ttrv/train_frac`.
  """
  name = "majority_vote"
  order = 10
  needs_answers = True

  def __init__(self, mode: str = "mm_upt", entropy_coef: float = 0.75,
               n_train: Optional[int] = None, count_missing: bool = False, min_votes: int = 2):
    if mode not in VOTE_MODES:
      raise ValueError(f"unknown majority_vote mode {mode!r}; valid: {VOTE_MODES} "
                       "(config.hooks.majority_vote.mode)")
    if n_train is not None and n_train < 1:
      raise ValueError(f"majority_vote n_train={n_train} must be >= 1 or None (all samples)")
    if min_votes < 1:
      raise ValueError(f"majority_vote min_votes={min_votes} must be >= 1")
    self.mode = mode
    self.entropy_coef = float(entropy_coef)
    self.n_train = n_train
    self.count_missing = bool(count_missing)
    self.min_votes = int(min_votes)

  def process(self, batch: HostBatch, env: HookEnv) -> HostBatch:
    answers = _answers(batch, env)
    sizes = [int(s) for s in batch.group_sizes]
    majorities, agree = rewards_lib.majority_vote(
        answers, sizes, self.count_missing, min_votes=self.min_votes)
    metrics = {"majority/agreement_rate": float(np.mean(agree)),
               "majority/no_answer_frac": float(np.mean([a is None for a in answers]))}
    for key, value in (("majority/true_accuracy", _true_accuracy(batch)),
                       ("majority/vote_accuracy", _vote_accuracy(batch, answers, majorities))):
      if value is not None:
        metrics[key] = value
    if self.mode == "mm_upt":
      batch.rewards = agree
    else:
      r, entropy, _ = rewards_lib.ttrv_rewards(answers, sizes, self.entropy_coef,
                                               self.count_missing)
      batch.rewards = r
      metrics["ttrv/entropy_mean"] = float(np.mean(entropy))
      trained = sizes if self.n_train is None else [min(n, self.n_train) for n in sizes]
      metrics["ttrv/train_frac"] = sum(trained) / max(sum(sizes), 1)
      batch = self._split_vote_only(batch)
    metrics["majority/reward_mean"] = float(np.mean(batch.rewards))
    batch.metrics.update(metrics)
    return batch

  def _split_vote_only(self, batch: HostBatch) -> HostBatch:
    """Rows after the first `n_train` of each group become their own group with mask 0."""
    sizes = batch.group_sizes
    if self.n_train is None or np.all(sizes <= self.n_train):
      return batch
    group_ids, prompts, vote_only = [], [], np.zeros(batch.batch_size, bool)
    new = 0
    for k, n in enumerate(sizes):
      rows = batch.group_rows(k)
      t = min(self.n_train, int(n))
      group_ids += [new] * t
      prompts.append(batch.prompts[k])
      new += 1
      if t < n:
        group_ids += [new] * (int(n) - t)
        prompts.append(batch.prompts[k])
        vote_only[rows[t:]] = True
        new += 1
    c = batch.completions
    mask = np.where(vote_only[:, None], 0, np.asarray(c.mask)).astype(np.asarray(c.mask).dtype)
    return dataclasses.replace(batch, completions=c.replace(mask=mask),
                               group_ids=np.asarray(group_ids, np.int32), prompts=prompts)


def _split_instruction(question: str) -> tuple[str, Optional[str]]:
  """(question, answer-format instruction appended to it by `data.PromptFormat`, or None)."""
  for instruction in prompts_lib.ANSWER_FORMATS.values():
    if instruction and question.rstrip().endswith(instruction):
      body = question.rstrip()[:-len(instruction)]
      return body.rstrip(), instruction
  return question, None


def _clean_rephrasing(text: str) -> str:
  """The rephrased question from the model's reply: leading labels and wrapping quotes removed."""
  text = text.strip()
  text = re.sub(r"^(rewritten|rephrased|new)?\s*(problem|question)\s*:\s*", "", text,
                flags=re.IGNORECASE)
  if len(text) > 1 and text[0] == text[-1] and text[0] in "\"'":
    text = text[1:-1].strip()
  return text


_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")


def _numbers(text: str) -> list[str]:
  """The numbers written in digits in `text`, sorted (a multiset), signs dropped: "3 - 5" and
  "5 subtracted from 3" hold the same numbers."""
  return sorted(n.lstrip("-").replace(",", "") for n in _NUMBER.findall(text))


def _with_question(example: Any, messages: list, role: str) -> Any:
  if dataclasses.is_dataclass(example):
    metadata = {**getattr(example, "metadata", {}), "co_reward": role}
    return dataclasses.replace(example, prompt=messages, metadata=metadata)
  if isinstance(example, dict):
    return {**example, "prompt": messages, "co_reward": role}
  return example


def _field(example: Any, name: str) -> Optional[str]:
  """`name` of the example: a key, an attribute, or a key of its metadata."""
  if isinstance(example, dict):
    value = example.get(name)
  else:
    value = getattr(example, name, None)
    if value is None:
      value = (getattr(example, "metadata", None) or {}).get(name)
  return value if isinstance(value, str) and value.strip() else None


@register_hook
class CoReward(RolloutHook):
  """Co-Reward's contrastive agreement (Zhang et al., arXiv 2508.00410; spec B9).

  `expand` pairs every prompt with a rephrasing: the example's `field` (a key, attribute or
  metadata entry, e.g. the released CoReward-RephrasedMATH column) when it has one, else (with
  `generate`) the policy's greedy rewrite of the question under `instruction` (one batched
  `env.sample` at temperature 0, `max_new_tokens` long). The question's answer-format instruction
  is kept and re-appended to the rephrasing. A generated rephrasing is accepted only if it is
  finished, differs from the question, and (`keep_numbers`) holds the same numbers as the question
  (as a multiset, written in digits): a small model often answers or solves the question instead
  of rewriting it, and an equivalent question keeps its quantities. A rephrasing that is
  rejected, or longer than `data.max_prompt_tokens`, falls back to the question itself (a copy:
  then the pair is plain cross-sample majority voting) and is counted as failed.
  Layout: original k is group 2k, its rephrasing group 2k+1; the batch holds 2P groups of
  `sampling.n` (so 2P·n rows: `train.prompts_per_step` counts original questions).
  `process` rewards each rollout for agreeing with the majority answer of the other group of its
  pair (`rewards.co_reward_rewards`) and writes `extras["pair_group"]` [B]: the group id of the
  row's partner group.

  Args:
    field: the data field holding a rephrased question.
    generate: rephrase with the policy when the field is missing (else: fall back to the copy).
    instruction: the rephrasing prompt, with `{question}`.
    max_new_tokens: length budget of a generated rephrasing.
    keep_numbers: reject generated rephrasings whose numbers differ from the question's.
    count_missing, min_votes: as in `majority_vote`.

  Logs `co_reward/agreement_rate` (pairs whose two majority answers agree),
  `co_reward/reward_mean`, `co_reward/no_answer_frac`; of this iteration's questions
  `co_reward/rephrase_attempted_frac` (sent to the policy), `co_reward/rephrase_field_frac`,
  `co_reward/rephrase_generated_frac` (accepted generations), `co_reward/rephrase_failed_frac`
  (copies); with references `co_reward/true_accuracy` (the verifier on the original questions'
  rows, for logging only).
  """
  name = "co_reward"
  order = 10
  provides = ("pair_group",)
  needs_answers = True

  def __init__(self, field: str = "rephrased", generate: bool = True,
               instruction: str = REPHRASE_INSTRUCTION, max_new_tokens: int = 128,
               keep_numbers: bool = True, count_missing: bool = False, min_votes: int = 2):
    if "{question}" not in instruction:
      raise ValueError("co_reward instruction needs a '{question}' placeholder "
                       "(config.hooks.co_reward.instruction)")
    if min_votes < 1:
      raise ValueError(f"co_reward min_votes={min_votes} must be >= 1")
    self.field = field
    self.generate = bool(generate)
    self.instruction = instruction
    self.max_new_tokens = int(max_new_tokens)
    self.keep_numbers = bool(keep_numbers)
    self.count_missing = bool(count_missing)
    self.min_votes = int(min_votes)
    self._last: dict[str, float] = {}

  def expand(self, prompts: list, env: HookEnv) -> list:
    questions = []
    rephrased: list[Optional[str]] = []
    for p in prompts:
      question = next(m["content"] for m in reversed(p.example.prompt) if m["role"] == "user")
      questions.append(_split_instruction(question))
      rephrased.append(_field(p.example, self.field) if self.field else None)
    from_field = [r is not None for r in rephrased]
    todo = [i for i, r in enumerate(rephrased) if r is None]
    generated = 0
    if todo and self.generate:
      tokens = [env.encode_chat(self.instruction.format(question=questions[i][0])) for i in todo]
      comps, texts = env.sample(tokens, 1, env.key, temperature=0.0,
                                max_new_tokens=self.max_new_tokens)
      truncated = np.asarray(comps.truncated)
      for j, i in enumerate(todo):
        text = _clean_rephrasing(texts[j])
        question = questions[i][0].strip()
        same_numbers = not self.keep_numbers or _numbers(text) == _numbers(question)
        if text and not truncated[j] and text != question and same_numbers:
          rephrased[i] = text
          generated += 1
    out, failed = [], 0
    for p, (_, instr), text in zip(prompts, questions, rephrased):
      pair = self._rephrased_prompt(p, instr, text, env)
      failed += pair is None
      out += [p, pair if pair is not None else self._copy(p)]
    attempted = len(todo) if self.generate else 0
    self._last = {"co_reward/rephrase_attempted_frac": attempted / max(len(prompts), 1),
                  "co_reward/rephrase_generated_frac": generated / max(len(prompts), 1),
                  "co_reward/rephrase_field_frac": sum(from_field) / max(len(prompts), 1),
                  "co_reward/rephrase_failed_frac": failed / max(len(prompts), 1)}
    return out

  def _rephrased_prompt(self, prompt, instr, text, env):
    """The rephrased question as an encoded prompt, or None when it does not fit."""
    if text is None:
      return None
    content = text if instr is None else f"{text.strip()}\n\n{instr}"
    messages = [dict(m) for m in prompt.example.prompt]
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    messages[last_user]["content"] = content
    tokens = prompts_lib.encode_prompt(env.tokenizer, messages)
    if env.max_prompt_tokens and len(tokens) > env.max_prompt_tokens:
      return None
    return prompts_lib.EncodedPrompt(example=_with_question(prompt.example, messages, "rephrased"),
                                     tokens=tokens)

  @staticmethod
  def _copy(prompt):
    return prompts_lib.EncodedPrompt(
        example=_with_question(prompt.example, list(prompt.example.prompt), "copy"),
        tokens=list(prompt.tokens))

  def process(self, batch: HostBatch, env: HookEnv) -> HostBatch:
    k = batch.num_groups
    if k % 2:
      raise ValueError(f"co_reward needs the groups in pairs (original 2k, rephrasing 2k+1); the "
                       f"batch has {k} groups. Another hook changed the groups after expand.")
    answers = _answers(batch, env)
    pair = np.arange(k) ^ 1
    sizes = [int(s) for s in batch.group_sizes]
    labelled_rows = np.flatnonzero(batch.group_ids % 2 == 0)
    true_acc = _true_accuracy(batch, labelled_rows)
    r, majorities = rewards_lib.co_reward_rewards(
        answers, pair, sizes, self.count_missing, min_votes=self.min_votes)
    batch.rewards = r
    batch.extras["pair_group"] = pair[batch.group_ids].astype(np.int32)
    agree = [majorities[2 * i] is not None and majorities[2 * i] == majorities[2 * i + 1]
             for i in range(k // 2)]
    batch.metrics.update(self._last)
    batch.metrics.update({
        "co_reward/agreement_rate": float(np.mean(agree)) if agree else 0.0,
        "co_reward/reward_mean": float(np.mean(r)),
        "co_reward/no_answer_frac": float(np.mean([a is None for a in answers]))})
    if true_acc is not None:
      batch.metrics["co_reward/true_accuracy"] = true_acc
    return batch
