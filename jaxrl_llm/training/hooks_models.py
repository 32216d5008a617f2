"""Rollout hooks that call a model on the host: PAV's prover rollouts, Critique-GRPO's refinements.

  pav_prover  (Rewarding Progress, arXiv 2410.08146; spec B11): splits each completion into steps,
              samples Monte-Carlo continuations from every step boundary with a prover (the
              policy, or another model), scores them with the run's verifier and writes
              `step_id` [B, T] and `step_value` [B, S] for `objectives.process.pav_advantage`.
  critique    (Critique-GRPO, arXiv 2506.03106; spec B12): critiques the group's initial
              responses (from the ground truth, or by a critic model), samples one refinement per
              critique, and puts the selected refinement in the group as a response to the
              original prompt, flagged in `offpolicy` [B] for `objectives.process.
              critique_surrogate`.

Both keep the number of sampler calls per iteration fixed: every prefix (PAV) or every
refinement prompt (critique) of the iteration goes to ONE batched sampler call.

A side model (`prover_source`, `critic_source`: any `models.from_pretrained` source) must use the
policy's tokenizer: `HookEnv.generate_with` decodes with the run's tokenizer, and PAV continues
the policy's own token prefixes. It is loaded once per process and runs unsharded with its own
parameters.
"""
import os
from collections.abc import Sequence
from typing import Any, Optional

import jax
import numpy as np

from jaxrl_llm import sampling
from jaxrl_llm.objectives.process import bok_value
from jaxrl_llm.training.hooks import HookEnv, HostBatch, RolloutHook, register_hook

_SIDE_MODELS: dict[str, tuple[Any, Any]] = {}


def load_side_model(source: str, env: HookEnv) -> Any:
  """`models.from_pretrained(source)`'s model, cached per process; raises if its tokenizer's
  vocabulary is not the policy's (prefixes and texts are exchanged as the policy's tokens)."""
  from jaxrl_llm import models  # pylint: disable=g-import-not-at-top
  if source not in _SIDE_MODELS:
    _SIDE_MODELS[source] = models.from_pretrained(source)
  model, tokenizer = _SIDE_MODELS[source]
  if tokenizer is not None and tokenizer.get_vocab() != env.tokenizer.get_vocab():
    raise ValueError(f"the side model {source!r} has another tokenizer than the policy's: the "
                     "prover/critic must share the policy's tokenizer (pick a model of the same "
                     "family, or leave the source empty to use the policy itself).")
  return model


def _field(example: Any, name: str) -> str:
  value = getattr(example, name, None)
  if value is None and isinstance(example, dict):
    value = example.get(name)
  if value is None:
    raise ValueError(f"the critique hook needs the example's {name!r} (data.Example.{name}); "
                     f"got an example of type {type(example).__name__} without it")
  return str(value)


def _host_completions(c: sampling.Completions) -> sampling.Completions:
  return jax.tree.map(lambda x: np.array(jax.device_get(x)), c)


# --------------------------------------------------------------------------------------------------
# Steps of a completion


def step_starts(text: str, delimiter: str = "\n") -> list[int]:
  """Character offsets where steps 1, 2, ... of `text` start.

  A step ends with a run of one or more `delimiter`s (the run belongs to the step it ends); a
  boundary is kept only when both sides hold non-whitespace text, so leading/trailing newlines
  never make an empty step.
  """
  if not delimiter:
    raise ValueError("the step delimiter must be a non-empty string (e.g. '\\n' or '\\n\\n')")
  starts, i = [], 0
  while True:
    j = text.find(delimiter, i)
    if j < 0:
      return starts
    e = j + len(delimiter)
    while text.startswith(delimiter, e):
      e += len(delimiter)
    if text[:e].strip() and text[e:].strip():
      starts.append(e)
    i = e


def token_cuts(tokenizer: Any, ids: Sequence[int], starts: Sequence[int],
               text: str | None = None) -> tuple[list[int], list[int]]:
  """Token counts where the text's character offsets `starts` fall, and what they cover.

  With `text = decode(ids)` (special tokens skipped, as the batch's texts) and `c_k` the number
  of leading characters of `text` that `decode(ids[:k])` reproduces, offset `s` maps to
  `k = min{k : c_k ≥ s}`: a token that holds the characters on both sides of `s` stays before
  the cut. Cuts are strictly increasing and in (0, L); an offset landing in the previous cut's
  token is dropped. Exact for any tokenizer whose prefix decodes are prefixes of the full decode
  (a partial multi-byte character at a prefix's end only lowers `c_k`). O(len(starts)·log L)
  prefix decodes. Returns (cuts k_1 < k_2 < ..., the characters c_{k_h} each cut covers).
  """
  ids = [int(i) for i in ids]
  n = len(ids)
  if text is None:
    text = tokenizer.decode(ids, skip_special_tokens=True)
  cache: dict[int, int] = {0: 0}

  def covered(k: int) -> int:
    if k not in cache:
      prefix = tokenizer.decode(ids[:k], skip_special_tokens=True)
      cache[k] = len(os.path.commonprefix([prefix, text]))
    return cache[k]

  cuts, chars = [], []
  for s in starts:
    lo, hi = 1, n
    while lo < hi:             # smallest k in [1, n] with covered(k) >= s
      mid = (lo + hi) // 2
      if covered(mid) >= s:
        hi = mid
      else:
        lo = mid + 1
    if 0 < lo < n and (not cuts or lo > cuts[-1]):
      cuts.append(lo)
      chars.append(covered(lo))
  return cuts, chars


def token_steps(tokenizer: Any, ids: Sequence[int], delimiter: str = "\n"
                ) -> tuple[np.ndarray, list[int]]:
  """(step id of each token, int32 [L]; token counts k_1 < k_2 < ... where steps 1, 2, ... start).

  Steps split at `step_starts(decode(ids), delimiter)`, mapped to whole tokens by `token_cuts`
  (a merged token across the delimiter stays in the earlier step).
  """
  ids = [int(i) for i in ids]
  if not ids:
    return np.zeros(0, np.int32), []
  text = tokenizer.decode(ids, skip_special_tokens=True)
  cuts, _ = token_cuts(tokenizer, ids, step_starts(text, delimiter), text)
  return step_ids_of(cuts, len(ids)), cuts


def step_ids_of(cuts: Sequence[int], n: int) -> np.ndarray:
  """int32 [n]: the step of each of n tokens, steps starting at token counts `cuts`."""
  return np.searchsorted(np.asarray(cuts, np.int64), np.arange(n), side="right").astype(np.int32)


# --------------------------------------------------------------------------------------------------
# PAV prover


@register_hook
class PavProver(RolloutHook):
  """Prover values at every step boundary by Monte-Carlo rollouts (spec B11 (d)).

  For each row b with completion tokens y_b (length L_b) and steps h = 0..H_b−1 (`token_steps`;
  `delimiter` "\\n" or "\\n\\n"), the states are s_0 = the prompt and s_h = prompt + y_b[:k_h].
  Writes
    step_id    int32 [B, T]: the step of each completion token, −1 on padding;
    step_value float32 [B, max_steps + 2]: step_value[b, 0] = V̂(s_0) (shared by the group),
               step_value[b, h] = V̂(s_h) for h = 1..H_b−1, step_value[b, H_b] = r_b (the row's
               own reward: the verifier's value of the full response), 0 after H_b.
  V̂(s) = BoK_K(mean of the verifier's scores of `n_mc` continuations from s), BoK_K(v) =
  1 − (1 − v)^K (`bok_k`; 1 = the prover's plain value). The prover is the current policy
  (`prover_source=""`, spec (d)'s cheapest faithful choice: a BoK(π) prover) or the model
  `models.from_pretrained(prover_source)` (it must share the policy's tokenizer). A row with more
  than `max_steps` interior boundaries keeps a uniformly random subset of `max_steps` of them
  (the steps between two kept boundaries merge into one step; the telescoping identity still
  holds). All prefixes of the iteration (one root per group, every kept boundary of every row)
  go to ONE sampler call with n = n_mc; continuations get `max_new_tokens` tokens (0: the run's).
  Logs pav/steps_per_row, pav/mc_rollouts, pav/value_mean (over sampled states),
  pav/progress_abs_mean (mean |V̂(s_{h+1}) − V̂(s_h)| over the batch's steps).
  """
  name = "pav_prover"
  order = 60
  provides = ("step_id", "step_value")

  def __init__(self, n_mc: int = 4, max_steps: int = 8, delimiter: str = "\n", bok_k: int = 4,
               prover_source: str = "", max_new_tokens: int = 0, seed: int = 0):
    if n_mc < 1 or max_steps < 0:
      raise ValueError(f"pav_prover needs n_mc >= 1 and max_steps >= 0, got {n_mc}, {max_steps}")
    bok_value(0.5, bok_k)         # validates K
    step_starts("", delimiter)    # validates the delimiter
    self.n_mc, self.max_steps, self.delimiter = int(n_mc), int(max_steps), delimiter
    self.bok_k, self.prover_source = int(bok_k), prover_source
    self.max_new_tokens, self.seed = int(max_new_tokens), int(seed)

  def _generate(self, env: HookEnv, prefixes: list[list[int]]):
    overrides = {"max_new_tokens": self.max_new_tokens} if self.max_new_tokens else {}
    key = jax.random.fold_in(env.key, 0x9A7)
    if not self.prover_source:
      return env.sample(prefixes, self.n_mc, key, **overrides)
    model = load_side_model(self.prover_source, env)
    return env.generate_with(model, None, prefixes, self.n_mc, key, **overrides)

  def process(self, batch: HostBatch, env: HookEnv) -> HostBatch:
    c = _host_completions(batch.completions)
    tokens, lengths = c.tokens, c.lengths
    b, width = tokens.shape
    rng = np.random.default_rng([self.seed, int(env.step)])
    step_id = np.full((b, width), -1, np.int32)
    cuts = []
    for i in range(b):
      ids = tokens[i, :lengths[i]].tolist()
      sid, ks = token_steps(env.tokenizer, ids, self.delimiter)
      if len(ks) > self.max_steps:
        ks = sorted(int(k) for k in rng.choice(ks, self.max_steps, replace=False))
        sid = step_ids_of(ks, len(ids))
      step_id[i, :len(ids)] = sid
      cuts.append(ks)
    prompt = [row[m > 0].tolist() for row, m in zip(c.prompt_tokens, c.prompt_mask)]
    first = [int(batch.group_rows(g)[0]) for g in range(batch.num_groups)]
    # States: one root per group, then every kept boundary of every row.
    heads = [[] for _ in first] + [tokens[i, :k].tolist() for i in range(b) for k in cuts[i]]
    owners = first + [i for i in range(b) for _ in cuts[i]]
    prefixes = [prompt[i] + h for i, h in zip(owners, heads)]
    comps, _ = self._generate(env, prefixes)
    m = self.n_mc
    full = [heads[j // m] + comps.tokens[j, :comps.lengths[j]].tolist()
            for j in range(len(prefixes) * m)]
    texts = env.tokenizer.batch_decode(full, skip_special_tokens=True)
    examples = [batch.examples[owners[j // m]] for j in range(len(full))]
    scores = env.score(texts, examples).astype(np.float64).reshape(len(prefixes), m)
    values = bok_value(scores.mean(axis=1), self.bok_k)

    step_value = np.zeros((b, self.max_steps + 2), np.float32)
    root = dict(zip(range(batch.num_groups), values[:batch.num_groups]))
    j = batch.num_groups
    progress = []
    for i in range(b):
      v = [root[int(batch.group_ids[i])]]
      v += values[j:j + len(cuts[i])].tolist()
      j += len(cuts[i])
      v.append(float(batch.rewards[i]))
      step_value[i, :len(v)] = v
      progress += np.abs(np.diff(v)).tolist()
    batch.extras["step_id"] = step_id
    batch.extras["step_value"] = step_value
    batch.metrics.update({
        "pav/steps_per_row": float(np.mean([len(k) + 1 for k in cuts])),
        "pav/mc_rollouts": float(len(full)),
        "pav/value_mean": float(values.mean()),
        "pav/progress_abs_mean": float(np.mean(progress)),
    })
    return batch


# --------------------------------------------------------------------------------------------------
# Critique-GRPO

CRITIQUE_TYPES = ("simple_gt", "model")
REFINE_MODES = ("all", "failed")


def simple_gt_critique(correct: bool, answer: str) -> str:
  """The rule-based critique from the ground truth (spec B12 (b), `simple_gt`)."""
  verdict = "correct" if correct else "incorrect"
  return f"The generated solution is {verdict}. The ground truth answer is {answer}."


def critic_prompt(question: str, response: str, answer: Optional[str]) -> str:
  """The user message asking a critic model for a critique of `response`."""
  text = ("Review the solution below. Check each step, point out the first mistake if there is "
          "one, and say whether its final answer is correct.\n\n"
          f"Problem:\n{question}\n\nSolution:\n{response}\n")
  if answer is not None:
    text += f"\nReference answer: {answer}\n"
  return text


def refine_prompt(question: str, response: str, critique: str) -> str:
  """The user message conditioning a refinement on the attempt and its critique."""
  return (f"{question}\n\nA previous attempt at this problem:\n{response}\n\n"
          f"Feedback on that attempt:\n{critique}\n\n"
          "Taking the feedback into account, write a new, complete solution to the problem.")


def select_refinement(scores: Sequence[float], threshold: float = 1.0) -> int:
  """Index of the chosen refinement of a group: the first scoring >= `threshold`, else the
  highest-scoring one (the first among ties), as the official code's selection."""
  scores = np.asarray(scores, np.float64)
  hits = np.flatnonzero(scores >= threshold)
  return int(hits[0]) if hits.size else int(np.argmax(scores))


def _fit(x: np.ndarray, width: int) -> np.ndarray:
  if x.shape[1] >= width:
    return x[:, :width]
  return np.pad(x, ((0, 0), (0, width - x.shape[1])))


@register_hook
class Critique(RolloutHook):
  """Critique-guided refinements as one off-policy row per group (spec B12 (b)).

  The sampler draws n = sampling.n rows per prompt as usual (counts() is None). The first n − 1
  rows of each group are the initial responses y_1..y_{n−1}; the group's last row is REPLACED by
  the selected refinement, so every group keeps n rows (n − 1 on-policy + 1 refinement) and the
  batch keeps its shape. (The official code likewise overwrites one of the n sampled rows of each
  group with the refinement; here the last row's sample is discarded unused.)
  For each initial response (`refine="all"`, the spec and official code; `"failed"`: only those
  scoring below `success_threshold`): a critique c_i, from the ground truth
  (`critique_type="simple_gt"`, `simple_gt_critique`, ground truth = example.answer) or generated
  by a critic model (`"model"`: the policy, or `models.from_pretrained(critic_source)` sharing the
  policy's tokenizer, prompted by `critic_prompt`, with the reference answer when
  `critic_sees_answer`; ONE batched sampler call, `critique_max_new_tokens` tokens); then a
  refinement z_i ~ π_old(· | refine_prompt(x, y_i, c_i)) from the current policy, all in ONE
  batched sampler call with the run's sampling settings; the verifier scores them. Selection: the
  first refinement scoring ≥ `success_threshold`, else the highest-scoring (`select_refinement`).
  The chosen refinement's completion tokens become the group's last row, laid after the group's
  ORIGINAL prompt tokens (its mask, lengths and truncated flag are the refinement's; its reward
  the verifier's score of it; its answer re-extracted). Its `logp` is the sampler's under the
  refinement prompt: Critique-GRPO's off-policy term does not read old_logp, and configs set
  `train.recompute_old_logp=True` so that the trainer's old_logp of every row is the one under
  the original prompt. A group whose initial responses all pass with `refine="failed"` keeps its
  last on-policy row. Writes extras["offpolicy"] (bool [B]). Runs first (order 10) so that later
  hooks see the final rows. Logs critique/count (critiques made), critique/refined_correct_frac
  (refinements scoring ≥ threshold), critique/offpolicy_rows, critique/initial_correct_frac.
  """
  name = "critique"
  order = 10
  provides = ("offpolicy",)

  def __init__(self, critique_type: str = "simple_gt", refine: str = "all",
               critic_source: str = "", critic_sees_answer: bool = True,
               critique_max_new_tokens: int = 128, success_threshold: float = 1.0):
    if critique_type not in CRITIQUE_TYPES:
      raise ValueError(f"unknown critique_type {critique_type!r}; valid: {CRITIQUE_TYPES}")
    if refine not in REFINE_MODES:
      raise ValueError(f"unknown refine mode {refine!r}; valid: {REFINE_MODES}")
    self.critique_type, self.refine, self.critic_source = critique_type, refine, critic_source
    self.critic_sees_answer = bool(critic_sees_answer)
    self.critique_max_new_tokens = int(critique_max_new_tokens)
    self.success_threshold = float(success_threshold)

  def _critiques(self, env: HookEnv, questions, responses, answers, correct) -> list[str]:
    if self.critique_type == "simple_gt":
      return [simple_gt_critique(ok, a) for ok, a in zip(correct, answers)]
    prompts = [env.encode_chat(critic_prompt(q, r, a if self.critic_sees_answer else None))
               for q, r, a in zip(questions, responses, answers)]
    key = jax.random.fold_in(env.key, 0xC41)
    overrides = {"max_new_tokens": self.critique_max_new_tokens}
    if self.critic_source:
      model = load_side_model(self.critic_source, env)
      _, texts = env.generate_with(model, None, prompts, 1, key, **overrides)
    else:
      _, texts = env.sample(prompts, 1, key, **overrides)
    return list(texts)

  def process(self, batch: HostBatch, env: HookEnv) -> HostBatch:
    sizes = batch.group_sizes
    if sizes.size and sizes.min() < 2:
      raise ValueError("the critique hook needs at least 2 rows per group (n − 1 initial "
                       f"responses + 1 refinement); got group sizes {sizes.tolist()}: set "
                       "sampling.n >= 2")
    thr = self.success_threshold
    groups = [batch.group_rows(g) for g in range(batch.num_groups)]
    initial = [int(i) for rows in groups for i in rows[:-1]]
    correct = {i: bool(batch.rewards[i] >= thr) for i in initial}
    chosen = [i for i in initial if self.refine == "all" or not correct[i]]
    off = np.zeros(batch.batch_size, bool)
    metrics = {"critique/count": float(len(chosen)), "critique/refined_correct_frac": 0.0,
               "critique/offpolicy_rows": 0.0,
               "critique/initial_correct_frac": float(np.mean(list(correct.values())))}
    if chosen:
      questions = [_field(batch.examples[i], "question") for i in chosen]
      answers = [_field(batch.examples[i], "answer") for i in chosen]
      responses = [batch.texts[i] for i in chosen]
      critiques = self._critiques(env, questions, responses, answers, [correct[i] for i in chosen])
      prompts = [env.encode_chat(refine_prompt(q, r, k))
                 for q, r, k in zip(questions, responses, critiques)]
      ref, ref_texts = env.sample(prompts, 1, jax.random.fold_in(env.key, 0x2EF))
      ref = _host_completions(ref)
      scores = env.score(ref_texts, [batch.examples[i] for i in chosen])
      metrics["critique/refined_correct_frac"] = float(np.mean(scores >= thr))
      batch = self._replace(batch, env, groups, chosen, ref, ref_texts, scores, off)
      metrics["critique/offpolicy_rows"] = float(off.sum())
    batch.extras["offpolicy"] = off
    batch.metrics.update(metrics)
    return batch

  def _replace(self, batch, env, groups, chosen, ref, ref_texts, scores, off) -> HostBatch:
    """The batch with each group's last row replaced by its selected refinement (sets `off`)."""
    c = _host_completions(batch.completions)
    width = c.tokens.shape[1]
    r_tokens, r_mask, r_logp = (_fit(x, width) for x in (ref.tokens, ref.mask, ref.logp))
    r_len = np.minimum(ref.lengths, width)
    r_trunc = ref.truncated | (ref.lengths > width)
    tokens, mask, logp = c.tokens.copy(), c.mask.copy(), c.logp.copy()
    lengths, truncated = c.lengths.copy(), c.truncated.copy()
    rewards, texts, answers = batch.rewards.copy(), list(batch.texts), list(batch.answers)
    where = {row: j for j, row in enumerate(chosen)}
    for rows in groups:
      cands = [where[int(i)] for i in rows[:-1] if int(i) in where]
      if not cands:
        continue
      j = cands[select_refinement(scores[cands], self.success_threshold)]
      t = int(rows[-1])
      tokens[t], mask[t], logp[t] = r_tokens[j], r_mask[j], r_logp[j]
      lengths[t], truncated[t] = r_len[j], r_trunc[j]
      rewards[t], texts[t] = scores[j], ref_texts[j]
      answers[t] = env.answer_fn(ref_texts[j]) if env.answer_fn is not None else None
      off[t] = True
    batch.completions = c.replace(tokens=tokens, mask=mask, logp=logp, lengths=lengths,
                                  truncated=truncated)
    batch.rewards, batch.texts, batch.answers = rewards.astype(np.float32), texts, answers
    return batch.validate()
