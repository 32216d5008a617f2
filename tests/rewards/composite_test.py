"""Weighted sums of named rewards."""

import pytest

from jaxrl_llm import data, rewards


def _example(answer):
  return data.Example([{"role": "user", "content": "?"}], answer, {})


def test_weighted_sum_total_and_terms():
  reward = rewards.weighted_sum({"accuracy": rewards.math_verify_reward(),
                                 "format": (rewards.format_reward(), 0.25)})
  good = "<think>a</think><answer>1/2</answer>"
  assert reward.terms(good, _example("0.5")) == {"accuracy": 1.0, "format": 1.0}
  assert reward(good, _example("0.5")) == 1.25
  wrong = "<think>a</think><answer>1/3</answer>"
  assert reward(wrong, _example("0.5")) == 0.25
  unformatted = r"\boxed{0.5}"
  assert reward.terms(unformatted, _example("0.5")) == {"accuracy": 1.0, "format": 0.0}


def test_single_function_is_named_after_it():
  reward = rewards.weighted_sum(rewards.format_reward())
  assert reward.names == ("format",)
  assert reward.weights == (1.0,)


def test_bad_terms_fail_clearly():
  with pytest.raises(ValueError, match="at least one"):
    rewards.weighted_sum({})
  with pytest.raises(TypeError, match="not callable"):
    rewards.weighted_sum({"accuracy": 3.0})
  with pytest.raises(ValueError, match="reserved"):
    rewards.weighted_sum({"total": rewards.format_reward()})
