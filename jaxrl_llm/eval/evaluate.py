"""Evaluation of a model on a prompt source: greedy accuracy, pass@k, maj@k, lengths, truncation.

`evaluate(model, tokenizer, source, reward, ...)` samples each prompt once greedily and `n` times at
`temperature`, scores every completion with the reward (through `rewards.RewardRunner`, so a crashing
or hanging verifier scores 0 and is counted), and aggregates:
  accuracy (greedy), pass@k for each k (unbiased estimator over the n samples), maj@k (first k
  samples), mean completion length and truncation rate of the sampled completions.
A completion is correct when its reward is ≥ `correct_threshold`. With `n=0` only the greedy
completions are sampled and scored (accuracy, length and truncation of the greedy completions):
the cheap check the trainer runs periodically on held-out prompts.
"""

import dataclasses
import functools
import itertools
import json
import pathlib
from typing import Any, Iterable, Optional, Sequence

import jax
import numpy as np
import tqdm

from jaxrl_llm import data as data_lib
from jaxrl_llm import rewards as rewards_lib
from jaxrl_llm import sampling
from jaxrl_llm.eval import passk


@dataclasses.dataclass
class EvalResult:
  metrics: dict[str, float]
  records: list[dict[str, Any]]      # per prompt: question, answer, completions, rewards

  def table(self) -> str:
    width = max(len(k) for k in self.metrics)
    lines = [f"| {'metric'.ljust(width)} | value  |", f"|{'-' * (width + 2)}|--------|"]
    lines += [f"| {k.ljust(width)} | {v:6.3f} |" for k, v in self.metrics.items()]
    return "\n".join(lines)

  def save(self, path: str | pathlib.Path) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"metrics": self.metrics, "records": self.records}, indent=1))
    return path


def evaluate(model, tokenizer, source: Iterable, reward, *, num_prompts: int, n: int = 8,
             ks: Sequence[int] = (1, 4, 8), temperature: float = 1.0, max_new_tokens: int = 256,
             max_prompt_tokens: Optional[int] = None, batch_size: int = 8, seed: int = 0,
             answer_fn=None, correct_threshold: float = 1.0, timeout_s: float = 10.0,
             num_workers: Optional[int] = None, progress: bool = True, params=None,
             mesh=None, base_model=None, gamma: float = 0.5) -> EvalResult:
  """Evaluates `model` on the first `num_prompts` prompts of `source` (see the module docstring).

  Args:
    source: a prompt source (`data.make_source(...)`) yielding `Example`s.
    reward: a reward function or mapping for `rewards.weighted_sum`.
    ks: the k of pass@k / maj@k; each must be ≤ n.
    answer_fn: extracts the answer maj@k votes on (default `rewards.AnswerExtractor()`).
    params, mesh: parameters to sample with instead of the model's (the trainer's), and their
      mesh (`sampling.sample`).
    base_model, gamma: evaluate the test-time extrapolation of `model` away from `base_model`,
      logits (1 + gamma)·z_model − gamma·z_base (`sampling.extrapolation`), greedy and sampled.
  """
  if n < 0:
    raise ValueError(f"n={n} must be >= 0 (0: greedy accuracy only).")
  ks = () if n == 0 else ks
  bad = [k for k in ks if not 1 <= k <= n]
  if bad:
    raise ValueError(f"k values {bad} are not in [1, n={n}]: raise n or drop them.")
  encoded = data_lib.TokenizedSource(source, tokenizer, max_prompt_tokens)
  prompts = list(itertools.islice(encoded, num_prompts))
  if not prompts:
    raise ValueError("The source yielded no prompts to evaluate.")
  if base_model is None:
    sample = functools.partial(sampling.sample, model)
  else:
    sample = sampling.extrapolation(model, base_model, gamma)
  answer_fn = answer_fn or rewards_lib.AnswerExtractor()
  runner = rewards_lib.RewardRunner(reward, answer_fn=answer_fn, timeout_s=timeout_s,
                                    num_workers=num_workers)
  greedy_cfg = sampling.SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0, n=1)
  sample_cfg = (sampling.SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                                        n=n) if n else None)
  per_prompt = n or 1                 # completions per prompt in `sampled`
  key = jax.random.key(seed)
  records = []
  try:
    for start in tqdm.trange(0, len(prompts), batch_size, desc="eval", disable=not progress):
      batch = prompts[start:start + batch_size]
      ids = [p.tokens for p in batch]
      greedy = _decode(tokenizer, sample(ids, key, greedy_cfg, params=params, mesh=mesh))
      key, sub = jax.random.split(key)
      examples = [p.example for p in batch]
      g_scores = runner.score(greedy["texts"], examples)
      if n:
        sampled = _decode(tokenizer, sample(ids, sub, sample_cfg, params=params, mesh=mesh))
        s_scores = runner.score(sampled["texts"], [e for e in examples for _ in range(n)])
      else:   # greedy only: its completions stand in for the samples' length statistics
        sampled, s_scores = greedy, g_scores
      for i, ex in enumerate(examples):
        rows = slice(i * per_prompt, (i + 1) * per_prompt)
        records.append({
            "question": ex.question, "answer": str(ex.answer),
            "greedy": greedy["texts"][i], "greedy_reward": float(g_scores.rewards[i]),
            "samples": sampled["texts"][rows], "rewards": s_scores.rewards[rows].tolist(),
            "answers": s_scores.answers[rows], "lengths": sampled["lengths"][rows].tolist(),
            "truncated": sampled["truncated"][rows].tolist(),
        })
  finally:
    runner.close()
  return EvalResult(_aggregate(records, ks, n, correct_threshold, runner.failures), records)


def _decode(tokenizer, out: sampling.Completions) -> dict[str, Any]:
  tokens, lengths, truncated = jax.device_get((out.tokens, out.lengths, out.truncated))
  texts = [tokenizer.decode(row[:length], skip_special_tokens=True)
           for row, length in zip(tokens, lengths)]
  return {"texts": texts, "lengths": np.asarray(lengths), "truncated": np.asarray(truncated)}


def _aggregate(records, ks, n, threshold, failures) -> dict[str, float]:
  metrics = {"accuracy/greedy": float(np.mean([r["greedy_reward"] >= threshold for r in records]))}
  for k in ks:
    metrics[f"pass@{k}"] = float(np.mean([
        passk.pass_at_k(n, int(sum(x >= threshold for x in r["rewards"])), k) for r in records]))
  for k in ks:
    metrics[f"maj@{k}"] = float(np.mean([
        passk.maj_at_k(r["answers"], [x >= threshold for x in r["rewards"]], k) for r in records]))
  metrics["length/mean"] = float(np.mean([np.mean(r["lengths"]) for r in records]))
  metrics["truncated/frac"] = float(np.mean([np.mean(r["truncated"]) for r in records]))
  metrics["reward/failures"] = float(failures)
  metrics["num_prompts"] = float(len(records))
  return metrics
