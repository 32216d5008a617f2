"""The reward runner contains crashes, hangs and NaNs, and matches serial scoring."""

import logging
import math
import os
import time

import numpy as np
import pytest

from jaxrl_llm import data, rewards

TIMEOUT_S = 1.0
MARGIN_S = 3.0  # Process start-up, pipes and a loaded CI machine.


def _example(answer):
  return data.Example([{"role": "user", "content": "?"}], answer, {})


def misbehaving(completion, example):
  """1.0 for ordinary completions; each special completion breaks the verifier in its own way."""
  if completion.startswith("raise"):
    raise RuntimeError("verifier bug")
  if completion == "sleep":
    time.sleep(60)
  if completion == "spin":
    while True:  # A CPU-bound hang that holds the GIL, like sympy on an adversarial string.
      pass
  if completion == "nan":
    return math.nan
  if completion == "exit":
    os._exit(3)
  return 1.0


def _batch(bad):
  completions = ["fine"] * 12 + list(bad) + ["fine"] * 12
  return completions, [_example("1")] * len(completions)


@pytest.fixture(scope="module")
def runner():
  with rewards.RewardRunner({"check": misbehaving}, num_workers=2, timeout_s=TIMEOUT_S) as r:
    r.score(["fine"], [_example("1")])  # Wait for the workers to be up before timing anything.
    yield r


def test_failures_are_contained_and_the_batch_finishes_in_time(runner):
  bad = ["raise", "sleep", "nan"]
  completions, examples = _batch(bad)
  failures_before = runner.failures
  start = time.monotonic()
  result = runner.score(completions, examples)
  elapsed = time.monotonic() - start
  assert elapsed < TIMEOUT_S + MARGIN_S, elapsed
  expected_failed = np.array([c in bad for c in completions])
  np.testing.assert_array_equal(result.failed, expected_failed)
  np.testing.assert_array_equal(result.rewards, np.where(expected_failed, 0.0, 1.0))
  np.testing.assert_array_equal(result.terms["check"], result.rewards)
  assert runner.failures == failures_before + 3
  assert result.metrics["reward/failures"] == runner.failures
  assert result.metrics["reward/failure_frac"] == pytest.approx(3 / len(completions))
  assert result.metrics["reward/check"] == pytest.approx(1 - 3 / len(completions))


def test_cpu_bound_hang_and_dead_worker_are_contained(runner):
  completions, examples = _batch(["spin", "exit"])
  start = time.monotonic()
  result = runner.score(completions, examples)
  assert time.monotonic() - start < TIMEOUT_S + MARGIN_S
  assert result.failed.sum() == 2
  assert result.rewards.sum() == len(completions) - 2


def test_runner_keeps_working_after_replacing_workers(runner):
  # Two hangs on two workers at once: both get replaced, and the rest of the batch still scores.
  completions, examples = _batch(["sleep", "sleep", "fine"])
  result = runner.score(completions, examples)
  assert result.failed.sum() == 2
  result = runner.score(["fine"] * 50, [_example("1")] * 50)
  assert not result.failed.any()
  assert result.rewards.sum() == 50


def test_offending_sample_is_logged_once(runner, caplog):
  completions, examples = _batch(["raise for the log test"])
  with caplog.at_level(logging.WARNING, logger="jaxrl_llm.rewards.runner"):
    runner.score(completions, examples)
    runner.score(completions, examples)
  messages = [r.getMessage() for r in caplog.records if "Reward failure" in r.getMessage()]
  assert len(messages) == 1
  assert "verifier bug" in messages[0] and "raise for the log test" in messages[0]


def test_real_verifiers_match_serial_scoring():
  reward = rewards.weighted_sum({"accuracy": rewards.math_verify_reward(),
                                 "format": (rewards.format_reward(), 0.5)})
  references = ["0.5", "3", r"\frac{2}{3}", "10"]
  completions, examples = [], []
  for i in range(40):
    reference = references[i % 4]
    body = [r"\frac{1}{2}", "3.0", "0.6667", "10"][i % 4] if i % 3 else "7"
    tagged = f"<think>t</think><answer>{body}</answer>"
    completions.append(tagged if i % 2 else rf"\boxed{{{body}}}")
    examples.append(_example(reference))
  extractor = rewards.AnswerExtractor()
  with rewards.RewardRunner(reward, answer_fn=extractor, num_workers=2, timeout_s=10) as runner:
    result = runner.score(completions, examples)
  serial = np.array([reward(c, e) for c, e in zip(completions, examples)], np.float32)
  np.testing.assert_array_equal(result.rewards, serial)
  assert result.answers == [extractor(c) for c in completions]
  assert not result.failed.any()
  assert 0 < result.metrics["reward/accuracy"] < 1
  assert result.metrics["reward/format"] == 0.5
  assert result.metrics["reward/total"] == pytest.approx(float(serial.mean()))


def test_inline_mode_contains_exceptions_and_nan():
  runner = rewards.RewardRunner(misbehaving, num_workers=0)
  result = runner.score(["fine", "raise", "nan"], [_example("1")] * 3)
  np.testing.assert_array_equal(result.rewards, [1.0, 0.0, 0.0])
  assert result.metrics["reward/failures"] == 2
  assert list(result.terms) == ["misbehaving"]


def test_unpicklable_reward_names_the_fix():
  with pytest.raises(TypeError, match="module level"):
    rewards.RewardRunner(lambda c, e: 1.0, num_workers=1)


def test_mismatched_lengths_fail():
  runner = rewards.RewardRunner(misbehaving, num_workers=0)
  with pytest.raises(ValueError, match="one example per completion"):
    runner.score(["a", "b"], [_example("1")])
