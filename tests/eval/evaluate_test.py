"""evaluate() on the embedded SmolLM2 and a real reasoning-gym task, against manual scoring."""
import re

import numpy as np
import pytest
import reasoning_gym

from jaxrl_llm import data, eval as ev, rewards

SPEC = ("reasoning_gym:chain_sum?size=50&seed=3&min_terms=2&max_terms=2&min_digits=1&max_digits=1"
        "&answer_format=answer_tag")


def _last_number(text):
  found = re.findall(r"-?\d+(?:\.\d+)?", text)
  return found[-1] if found else None


def test_accuracy_matches_manual_scoring(smollm2):
  model, tokenizer = smollm2
  reward = rewards.reasoning_gym_reward(modes=("answer_tag", "last_number"))
  result = ev.evaluate(model, tokenizer, data.make_source(SPEC), reward, num_prompts=6, n=4,
                       ks=(1, 2, 4), temperature=1.0, max_new_tokens=32, batch_size=6,
                       num_workers=0, progress=False)
  # Manual scoring: reasoning-gym's own dataset and scorer, our own regex for the answer.
  task = reasoning_gym.create_dataset("chain_sum", size=1, seed=0, min_terms=2, max_terms=2,
                                      min_digits=1, max_digits=1)
  greedy_manual, sampled_manual = [], []
  for r in result.records:
    entry = {"question": r["question"], "answer": r["answer"], "metadata": {}}
    greedy_manual.append(task.score_answer(_last_number(r["greedy"]), entry) >= 1.0)
    sampled_manual.append([task.score_answer(_last_number(s), entry) >= 1.0 for s in r["samples"]])
  assert result.metrics["accuracy/greedy"] == pytest.approx(np.mean(greedy_manual))
  assert result.metrics["pass@1"] == pytest.approx(np.mean(sampled_manual))
  manual_pass4 = np.mean([any(row) for row in sampled_manual])
  assert result.metrics["pass@4"] == pytest.approx(manual_pass4)
  assert result.metrics["num_prompts"] == 6
  assert 0 < result.metrics["length/mean"] <= 32
  # SmolLM2 solves some one-digit sums: the check is not vacuous.
  assert 0 < np.mean(sampled_manual) < 1, sampled_manual
  # Greedy only (n=0, the trainer's periodic eval): the same greedy completions and accuracy.
  greedy_only = ev.evaluate(model, tokenizer, data.make_source(SPEC), reward, num_prompts=6, n=0,
                            max_new_tokens=32, batch_size=6, num_workers=0, progress=False)
  assert [r["greedy"] for r in greedy_only.records] == [r["greedy"] for r in result.records]
  assert greedy_only.metrics["accuracy/greedy"] == result.metrics["accuracy/greedy"]
  assert not any(k.startswith(("pass@", "maj@")) for k in greedy_only.metrics)
