"""reasoning-gym's own scorers through the adapter, on real generated items."""

import pytest

from jaxrl_llm import data, rewards


def _bump(answer: str) -> str:
  return str(int(answer) + 1)


def _reverse(answer: str) -> str:
  return answer[::-1]


# Task -> a perturbation of its reference answer that is wrong.
PERTURBATIONS = {
    "chain_sum": _bump,
    "basic_arithmetic": _bump,
    "gcd": _bump,
    "leg_counting": _bump,
    "letter_counting": _bump,
    "caesar_cipher": _reverse,
}


@pytest.mark.parametrize("task", sorted(PERTURBATIONS))
def test_reference_scores_one_and_perturbed_zero(task):
  reward = rewards.reasoning_gym_reward()
  source = data.make_source(f"reasoning_gym:{task}?size=6&seed=11", shuffle=False, num_epochs=1)
  examples = list(source)
  assert len(examples) == 6
  for example in examples:
    right = f"<think>working</think><answer>{example.answer}</answer>"
    wrong = f"<think>working</think><answer>{PERTURBATIONS[task](example.answer)}</answer>"
    assert reward(right, example) == 1.0, (task, example.answer)
    assert reward(wrong, example) == 0.0, (task, example.answer)
    assert reward("I don't know", example) == 0.0


def test_scorer_uses_the_task_config():
  # word_sorting with descending order: the ascending reference order must fail.
  source = data.make_source("reasoning_gym:word_sorting?size=3&seed=2&num_epochs=1")
  for example in source:
    config = example.metadata["reasoning_gym"]["config"]
    assert "min_words" in config
  reward = rewards.reasoning_gym_reward()
  assert reward(f"<answer>{example.answer}</answer>", example) == 1.0


def test_missing_metadata_names_the_fix():
  example = data.Example([{"role": "user", "content": "?"}], "3", {})
  with pytest.raises(KeyError, match="reasoning_gym:<task>"):
    rewards.reasoning_gym_reward()("<answer>3</answer>", example)
