"""Evaluating a test-time extrapolated model: `evaluate(..., base_model=, gamma=)` and the CLI.

Tiny random models over a byte tokenizer (no SmolLM2 needed); the reference is the sampler
itself, called with the same prompts, keys and base model.
"""
import itertools

import jax
import numpy as np
import pytest

from jaxrl_llm import cli, data, eval as ev, models, rewards, sampling
from tests.training.helpers import byte_mean_reward, byte_tokenizer

SPEC = "reasoning_gym:chain_sum?size=20&seed=0&answer_format=answer_tag"
MAX_NEW = 8


@pytest.fixture(scope="module")
def tokenizer():
  return byte_tokenizer()


def _model(tokenizer, seed):
  config = models.ModelConfig(
      model_type="llama", vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
      num_layers=1, num_heads=2, num_kv_heads=1, head_dim=8, max_position_embeddings=1024,
      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
  return models.Transformer(config, models.init_params(config, jax.random.key(seed), std=0.5))


@pytest.fixture(scope="module")
def rl_and_base(tokenizer):
  return _model(tokenizer, 0), _model(tokenizer, 1)


def _evaluate(model, tokenizer, **kwargs):
  return ev.evaluate(model, tokenizer, data.make_source(SPEC), byte_mean_reward, num_prompts=3,
                     n=2, ks=(1, 2), max_new_tokens=MAX_NEW, batch_size=3, seed=5,
                     num_workers=0, progress=False, **kwargs)


def test_evaluate_samples_through_the_extrapolation(rl_and_base, tokenizer):
  """The greedy completions are the sampler's with the base model; gamma = 0 is the RL model."""
  rl, base = rl_and_base
  result = _evaluate(rl, tokenizer, base_model=base, gamma=1.0)
  encoded = data.TokenizedSource(data.make_source(SPEC), tokenizer)
  ids = [p.tokens for p in itertools.islice(encoded, 3)]
  greedy_cfg = sampling.SamplingConfig(max_new_tokens=MAX_NEW, temperature=0.0)
  expected = sampling.extrapolation(rl, base, gamma=1.0)(ids, jax.random.key(5), greedy_cfg)
  tokens, lengths = jax.device_get((expected.tokens, expected.lengths))
  texts = [tokenizer.decode(row[:n], skip_special_tokens=True) for row, n in zip(tokens, lengths)]
  assert [r["greedy"] for r in result.records] == texts
  plain = _evaluate(rl, tokenizer)
  assert [r["greedy"] for r in plain.records] != texts          # the base model changed them
  zero = _evaluate(rl, tokenizer, base_model=base, gamma=0.0)
  assert zero.records == plain.records


def test_cli_evaluate_loads_the_base_model(rl_and_base, tokenizer, tmp_path, capsys):
  """`launch/eval.py --base_model=... --gamma=...` (cli.evaluate) evaluates the extrapolation."""
  rl, base = rl_and_base
  models.save_pretrained(rl, tokenizer, tmp_path / "rl")
  models.save_pretrained(base, tokenizer, tmp_path / "base")
  kwargs = dict(model=str(tmp_path / "rl"), data=SPEC, num_prompts=3, n=2, ks=[1, 2],
                temperature=1.0, max_new_tokens=MAX_NEW, reward="exact_match",
                extract=["answer_tag", "last_number"], batch_size=3, seed=5, output=None)
  result = cli.evaluate(**kwargs, base_model=str(tmp_path / "base"), gamma=1.0)
  assert "extrapolated from" in capsys.readouterr().out
  direct = ev.evaluate(
      rl, tokenizer, data.make_source(SPEC), rewards.exact_match_reward(modes=kwargs["extract"]),
      answer_fn=rewards.AnswerExtractor(modes=tuple(kwargs["extract"])), num_prompts=3, n=2,
      ks=(1, 2), max_new_tokens=MAX_NEW, batch_size=3, seed=5, base_model=base, gamma=1.0,
      progress=False)
  assert [r["greedy"] for r in result.records] == [r["greedy"] for r in direct.records]
  assert [r["samples"] for r in result.records] == [r["samples"] for r in direct.records]
  alone = cli.evaluate(**kwargs)
  assert [r["greedy"] for r in alone.records] != [r["greedy"] for r in result.records]
  assert np.isfinite(result.metrics["accuracy/greedy"])
