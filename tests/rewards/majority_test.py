"""Majority vote over canonical answers (the B10 spec's fixture cases)."""

import numpy as np
import pytest

from jaxrl_llm import rewards


def test_majority_and_agreement_rewards_per_group():
  answers = ["12", "12", "7", "12", "7", "7", "12", "7"]
  majorities, reward = rewards.majority_vote(answers, group_size=4)
  assert majorities == ["12", "7"]
  np.testing.assert_array_equal(reward, [1, 1, 0, 1, 1, 1, 0, 1])


def test_ties_go_to_first_occurrence_and_missing_never_wins():
  majorities, reward = rewards.majority_vote(["3", "4", "4", "3", None, None, None, "5"], 4)
  assert majorities == ["3", "5"]
  np.testing.assert_array_equal(reward, [1, 0, 0, 1, 0, 0, 0, 1])
  majorities, reward = rewards.majority_vote([None, None], 2)
  assert majorities == [None]
  np.testing.assert_array_equal(reward, [0, 0])


def test_count_missing_reproduces_none_winning():
  majorities, reward = rewards.majority_vote([None, None, "5"], 3, count_missing=True)
  assert majorities == [None]
  np.testing.assert_array_equal(reward, [1, 1, 0])


def test_votes_on_canonical_answers_from_the_extractor():
  extractor = rewards.AnswerExtractor()
  group = [r"\boxed{0.5}", r"<answer>\frac{1}{2}</answer>", r"\boxed{1/3}", r"\boxed{0.3333}"]
  majorities, reward = rewards.majority_vote([extractor(c) for c in group], 4)
  assert majorities == ["1/2"]
  np.testing.assert_array_equal(reward, [1, 1, 0, 0])


def test_bad_group_size():
  with pytest.raises(ValueError, match="groups of 3"):
    rewards.majority_vote(["1", "2"], 3)
