"""pass@k against brute-force enumeration; maj@k voting and ties."""
import itertools

import numpy as np
import pytest

from jaxrl_llm import eval as ev


def _brute_force(n, c, k):
  """Fraction of all k-subsets of n samples (c of them correct) that hold a correct one."""
  samples = [True] * c + [False] * (n - c)
  subsets = list(itertools.combinations(range(n), k))
  return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_pass_at_k_equals_enumeration(n):
  for c in range(n + 1):
    for k in range(1, n + 1):
      assert ev.pass_at_k(n, c, k) == pytest.approx(_brute_force(n, c, k), abs=1e-12)


def test_pass_at_1_is_fraction_correct_and_large_n_is_stable():
  assert ev.pass_at_k(10, 3, 1) == pytest.approx(0.3)
  assert 0.0 < ev.pass_at_k(1000, 1, 10) < 0.011     # no overflow of C(1000, 10)


def test_pass_at_k_bad_inputs():
  with pytest.raises(ValueError, match="1 <= k <= n"):
    ev.pass_at_k(4, 1, 5)
  with pytest.raises(ValueError, match=r"c \(correct samples\)"):
    ev.pass_at_k(4, 5, 1)


def test_maj_at_k_votes_and_ties():
  answers = ["7", "3", "3", "7", None, None]
  correct = [True, False, False, True, False, False]
  assert ev.maj_at_k(answers, correct, 3) == 0.0      # 3 wins 2-1 in the first three
  assert ev.maj_at_k(answers, correct, 4) == 1.0      # 2-2 tie: the answer seen first (7) wins
  assert ev.maj_at_k([None, None, "5"], [False, False, True], 2) == 0.0   # nothing extracted
  assert ev.maj_at_k([None, None, "5"], [False, False, True], 3) == 1.0   # missing never wins
  with pytest.raises(ValueError, match="maj@k needs"):
    ev.maj_at_k(answers, correct, 7)
