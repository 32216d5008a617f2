"""Majority vote over the extracted answers of each group (label-free rewards, MM-UPT style).

Answers are the canonical strings that `AnswerExtractor` returns through
`RewardRunner(answer_fn=...)`, so equal values written differently already compare equal. Rows are group-major: rows
`i*G .. i*G+G-1` are the G completions of prompt i.
"""

import collections
from typing import Optional, Sequence

import numpy as np


def majority_vote(answers: Sequence[Optional[str]], group_size: int,
                  count_missing: bool = False) -> tuple[list[Optional[str]], np.ndarray]:
  """Each group's most frequent answer, and reward 1 for the completions that agree with it.

  Args:
    answers: one answer per completion, group-major; None where nothing was extracted.
    group_size: completions per prompt (G); `len(answers)` must be a multiple of it.
    count_missing: let None take part in the vote (MM-UPT's released code lets its "None" string
      win). By default a missing answer never wins and always gets reward 0.

  Returns:
    (majority answer of each group, None when no answer was extracted in it; float32 [B] rewards).
    Ties go to the answer that appears first in the group.
  """
  if group_size < 1 or len(answers) % group_size:
    raise ValueError(f"{len(answers)} answers do not split into groups of {group_size}; rows must "
                     "be group-major with the same group size for every prompt.")
  majorities: list[Optional[str]] = []
  rewards = np.zeros(len(answers), np.float32)
  for start in range(0, len(answers), group_size):
    group = answers[start:start + group_size]
    votes = collections.Counter(a for a in group if count_missing or a is not None)
    if not votes:
      majorities.append(None)
      continue
    top = max(votes.values())
    winner = next(a for a in group if (count_missing or a is not None) and votes[a] == top)
    majorities.append(winner)
    for offset, answer in enumerate(group):
      if answer == winner and (answer is not None or count_missing):
        rewards[start + offset] = 1.0
  return majorities, rewards
