"""Label-free rewards from the answers a group agrees on: majority vote (MM-UPT), answer frequency
(TTRV) and cross-question agreement (Co-Reward). `spec/baselines_and_more.md` B9, B10.

Answers are the canonical strings that `AnswerExtractor` returns (through
`RewardRunner(answer_fn=...)`), so equal values written differently already compare equal; None
is an unparsable completion. Groups are given by a common `group_size` (rows `i*G .. i*G+G-1` are
the completions of prompt i), by a list of group sizes (contiguous groups of unequal size, as
Knapsack RL samples them), or by explicit `group_ids` (any ints; groups in increasing id order).

  majority_vote      each group's most frequent answer; reward 1 for agreeing with it (MM-UPT)
  answer_ids         group-local int ids of the answers (0, 1, ... by first appearance; −1 = none)
  ttrv_rewards       r = p_k(answer) − λ·H̄_k, frequencies over the voting rows (TTRV)
  co_reward_rewards  reward for agreeing with the *paired* group's majority (Co-Reward)

Unparsable answers never win a vote and score 0 by default (`count_missing=False`, the spec's
choice); `count_missing=True` lets None take part like any other answer (MM-UPT's released
extractor returns the string "None", which can win).
"""

import collections
import math
from typing import Optional, Sequence, Union

import numpy as np

Answers = Sequence[Optional[str]]
GroupSpec = Union[int, Sequence[int], None]


def group_index(num_rows: int, group_size: GroupSpec = None,
                group_ids: Optional[Sequence[int]] = None) -> list[np.ndarray]:
  """The row indices of each group.

  Args:
    num_rows: B.
    group_size: an int G (B must be a multiple of it: contiguous groups of G rows) or a sequence
      of group sizes (contiguous groups, summing to B).
    group_ids: [B] ints instead of `group_size`; groups need not be contiguous, and come out in
      increasing id order.

  Returns:
    one int array of row indices per group.
  """
  if (group_size is None) == (group_ids is None):
    raise ValueError("pass exactly one of group_size (an int or a list of group sizes) and "
                     "group_ids (one id per row)")
  if group_ids is not None:
    ids = np.asarray(group_ids)
    if ids.shape != (num_rows,):
      raise ValueError(f"group_ids has shape {ids.shape}; it needs one id per answer "
                       f"({num_rows},)")
    return [np.flatnonzero(ids == k) for k in np.unique(ids)]
  if isinstance(group_size, (int, np.integer)):
    if group_size < 1 or num_rows % group_size:
      raise ValueError(f"{num_rows} answers do not split into groups of {group_size}; rows must "
                       "be group-major with the same group size for every prompt (or pass "
                       "group_ids / a list of group sizes).")
    sizes = [int(group_size)] * (num_rows // int(group_size))
  else:
    sizes = [int(s) for s in group_size]
    if any(s < 1 for s in sizes) or sum(sizes) != num_rows:
      raise ValueError(f"group sizes {sizes} must be >= 1 and sum to the {num_rows} answers")
  starts = np.cumsum([0] + sizes[:-1])
  return [np.arange(s, s + n) for s, n in zip(starts, sizes)]


def _winner(group: Answers, count_missing: bool, min_votes: int) -> Optional[str]:
  """The most frequent answer (ties: first occurrence), None if it has fewer than `min_votes`."""
  votes = collections.Counter(a for a in group if count_missing or a is not None)
  if not votes:
    return None
  top = max(votes.values())
  if top < min_votes:
    return None
  return next(a for a in group if (count_missing or a is not None) and votes[a] == top)


def _agrees(answer: Optional[str], winner: Optional[str], has_winner: bool,
            count_missing: bool) -> bool:
  return has_winner and answer == winner and (answer is not None or count_missing)


def majority_vote(answers: Answers, group_size: GroupSpec = None, count_missing: bool = False,
                  *, group_ids: Optional[Sequence[int]] = None, min_votes: int = 1
                  ) -> tuple[list[Optional[str]], np.ndarray]:
  """Each group's most frequent answer, and reward 1 for the completions that agree with it.

  MM-UPT (arXiv 2505.22453; code `verl/workers/reward/function.py`):
    maj_k = most frequent answer in group k (ties → first occurrence);  r_b = 1[ans_b = maj_k].

  Args:
    answers: one answer per completion; None where nothing was extracted.
    group_size: completions per prompt (G; `len(answers)` must be a multiple of it), or a list
      of group sizes (contiguous groups of unequal size).
    count_missing: let None take part in the vote (MM-UPT's released code lets its "None" string
      win). By default a missing answer never wins and always gets reward 0.
    group_ids: one group id per row, instead of `group_size`.
    min_votes: a majority needs at least this many votes, else the group has none (all rewards
      0). MM-UPT's code uses 1, so when every answer differs the *first* one wins and a random
      sample gets the signal; 2 makes a group whose answers all differ carry no signal.

  Returns:
    (majority answer of each group, None when it has none; float32 [B] rewards).
  """
  groups = group_index(len(answers), group_size, group_ids)
  majorities: list[Optional[str]] = []
  rewards = np.zeros(len(answers), np.float32)
  for rows in groups:
    group = [answers[i] for i in rows]
    winner = _winner(group, count_missing, min_votes)
    has_winner = _has_majority(group, count_missing, min_votes)
    majorities.append(winner)
    for i, a in zip(rows, group):
      if _agrees(a, winner, has_winner, count_missing):
        rewards[i] = 1.0
  return majorities, rewards


def answer_ids(answers: Answers, group_size: GroupSpec = None, *,
               group_ids: Optional[Sequence[int]] = None) -> np.ndarray:
  """int32 [B]: each answer as an id local to its group (0, 1, ... in order of first appearance
  in the group); −1 where there is no answer. Equal ids within a group mean equal answers."""
  out = np.full(len(answers), -1, np.int32)
  for rows in group_index(len(answers), group_size, group_ids):
    seen: dict[str, int] = {}
    for i in rows:
      a = answers[i]
      if a is None:
        continue
      out[i] = seen.setdefault(a, len(seen))
  return out


def normalized_entropy(counts: Sequence[int], total: int) -> float:
  """H̄ = −Σ_a p(a) ln p(a) / ln(#distinct answers), p(a) = count(a)/total; 0 with < 2 answers."""
  counts = [c for c in counts if c > 0]
  if len(counts) < 2:
    return 0.0
  p = np.asarray(counts, np.float64) / float(total)
  return float(-np.sum(p * np.log(p)) / math.log(len(counts)))


def ttrv_rewards(answers: Answers, group_size: GroupSpec = None, entropy_coef: float = 0.75,
                 count_missing: bool = False, *, group_ids: Optional[Sequence[int]] = None,
                 voters: Optional[Sequence[bool]] = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """TTRV's frequency reward with an entropy penalty (arXiv 2510.06783; code
  `verl/utils/reward_score/ttrl/ttt_metrics.py`):

    p_k(a) = count_k(a) / N_vote,  H̄_k = −Σ_a p_k(a) ln p_k(a) / ln(#distinct answers)  (0 if < 2)
    r_b = p_k(ans_b) − λ·H̄_k

  Counts run over the voting rows of the group (`voters`; all rows by default), N_vote is their
  number, and every row (voter or not) gets the reward of its answer. An unparsable answer is no
  answer class (`count_missing=False`): it counts in N_vote (it was sampled) but not in the
  entropy, and its row gets p = 0, so r = −λ·H̄_k. With `count_missing=True` None is an answer
  like the others. λ·H̄_k is the same for the whole group, so it cancels in any group-centred
  advantage (GRPO, Dr. GRPO, RLOO; spec B10 (b)); it matters for logging and for estimators with
  a global or zero baseline.

  Args:
    answers: one answer per row (None: unparsable).
    group_size / group_ids: the groups (see `group_index`).
    entropy_coef: λ (TTRV's run script: 0.75).
    count_missing: see above.
    voters: [B] bool, the rows whose answers are counted (TTRV's N_vote samples); default all.

  Returns:
    (float32 [B] rewards, float64 [num_groups] H̄_k, float64 [B] p_k(ans_b)).
  """
  b = len(answers)
  voters = np.ones(b, bool) if voters is None else np.asarray(voters, bool)
  if voters.shape != (b,):
    raise ValueError(f"voters has shape {voters.shape}; it needs one flag per answer ({b},)")
  groups = group_index(b, group_size, group_ids)
  rewards = np.zeros(b, np.float32)
  freq = np.zeros(b, np.float64)
  entropies = np.zeros(len(groups), np.float64)
  for k, rows in enumerate(groups):
    votes = [answers[i] for i in rows if voters[i]]
    if not votes:
      raise ValueError(f"group {k} has no voting rows: every group needs at least one voter")
    counts = collections.Counter(a for a in votes if count_missing or a is not None)
    h = normalized_entropy(list(counts.values()), len(votes))
    entropies[k] = h
    for i in rows:
      a = answers[i]
      p = counts.get(a, 0) / len(votes) if (a is not None or count_missing) else 0.0
      freq[i] = p
      rewards[i] = p - entropy_coef * h
  return rewards, entropies, freq


def co_reward_rewards(answers: Answers, pair_of_group: Sequence[int], group_size: GroupSpec = None,
                      count_missing: bool = False, *, group_ids: Optional[Sequence[int]] = None,
                      min_votes: int = 1) -> tuple[np.ndarray, list[Optional[str]]]:
  """Co-Reward's cross-question agreement (arXiv 2508.00410, §3):

    y_v^k = majority answer of group k;  r_b = 1[ans_b = y_v^{pair(k)}]   for b in group k

  so the rollouts of a question are rewarded for agreeing with the majority of its rephrasing,
  and vice versa. Answers must be comparable across the two groups (canonical strings).

  Args:
    answers: one answer per row (None: unparsable; never a majority, scores 0 unless
      `count_missing`).
    pair_of_group: [num_groups] the group paired with each group (`pair_of_group[pair[k]] == k`
      for a proper pairing; not required).
    group_size / group_ids: the groups (see `group_index`).
    count_missing, min_votes: as in `majority_vote`.

  Returns:
    (float32 [B] rewards, the majority answer of each group).
  """
  groups = group_index(len(answers), group_size, group_ids)
  pair = np.asarray(pair_of_group, np.int64)
  if pair.shape != (len(groups),) or np.any((pair < 0) | (pair >= len(groups))):
    raise ValueError(f"pair_of_group {pair.tolist()} must give one group index in "
                     f"0..{len(groups) - 1} for each of the {len(groups)} groups")
  majorities = [_winner([answers[i] for i in rows], count_missing, min_votes) for rows in groups]
  has = [_has_majority([answers[i] for i in rows], count_missing, min_votes) for rows in groups]
  rewards = np.zeros(len(answers), np.float32)
  for k, rows in enumerate(groups):
    other = int(pair[k])
    for i in rows:
      if _agrees(answers[i], majorities[other], has[other], count_missing):
        rewards[i] = 1.0
  return rewards, majorities


def _has_majority(group: Answers, count_missing: bool, min_votes: int) -> bool:
  """Whether the group has a majority answer (None itself can be one with `count_missing`)."""
  votes = collections.Counter(a for a in group if count_missing or a is not None)
  return bool(votes) and max(votes.values()) >= min_votes
