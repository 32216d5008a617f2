"""Sample-based metrics: the unbiased pass@k estimator and majority-vote accuracy (maj@k)."""

from typing import Optional, Sequence

import numpy as np

from jaxrl_llm.rewards import majority


def pass_at_k(n: int, c: int, k: int) -> float:
  """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021, "Codex").

  pass@k = 1 − C(n−c, k) / C(n, k): the probability that a random k-subset of the n samples holds at
  least one correct one. Computed as 1 − Π_{i=n−c+1}^{n} (1 − k/i), which never forms the large
  binomials. Requires 1 ≤ k ≤ n and 0 ≤ c ≤ n.
  """
  if not 1 <= k <= n:
    raise ValueError(f"pass@k needs 1 <= k <= n; got k={k}, n={n}. Sample at least k completions.")
  if not 0 <= c <= n:
    raise ValueError(f"c (correct samples) must be in [0, n={n}]; got {c}.")
  if n - c < k:
    return 1.0
  return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def maj_at_k(answers: Sequence[Optional[str]], correct: Sequence[bool], k: int) -> float:
  """Majority-vote accuracy of one prompt from its first k samples.

  The voted answer is the most frequent extracted answer among samples 0..k−1; ties go to the
  answer that appears first, and samples with no extracted answer never win (the convention of
  `rewards.majority_vote`). The prompt counts as solved when a sample carrying the voted answer is
  correct. With no answer extracted at all, it is unsolved.
  """
  if not 1 <= k <= len(answers):
    raise ValueError(f"maj@k needs 1 <= k <= {len(answers)} samples; got k={k}.")
  if len(correct) != len(answers):
    raise ValueError(f"{len(answers)} answers but {len(correct)} correctness flags.")
  voted, _ = majority.majority_vote(list(answers[:k]), group_size=k)
  if voted[0] is None:
    return 0.0
  index = list(answers[:k]).index(voted[0])
  return float(bool(correct[index]))
