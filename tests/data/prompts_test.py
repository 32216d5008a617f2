"""Chat-template prompts through the real SmolLM2 tokenizer, and length filtering."""

import json

import pytest

from jaxrl_llm import data


def test_chat_template_renders_system_user_and_generation_prompt(tokenizer):
  example = next(data.make_source("rg:gcd?size=3", system_prompt="Answer briefly."))
  text = data.render_prompt(tokenizer, example.prompt)
  assert "<|im_start|>system\nAnswer briefly.<|im_end|>" in text
  assert example.question in text
  assert text.endswith("<|im_start|>assistant\n")
  tokens = data.encode_prompt(tokenizer, example.prompt)
  assert tokenizer.decode(tokens) == text
  assert tokens.count(tokenizer.convert_tokens_to_ids("<|im_start|>")) == 3


def test_long_prompts_are_dropped_and_counted_not_truncated(tokenizer, gsm8k_file):
  spec = f"jsonl:{gsm8k_file}?preset=gsm8k&shuffle=false&num_epochs=1"
  lengths = [len(data.encode_prompt(tokenizer, e.prompt)) for e in data.make_source(spec)]
  limit = sorted(lengths)[4]  # Keeps 5 (or more, on ties) of the 8 prompts.
  expected_kept = sum(n <= limit for n in lengths)
  source = data.TokenizedSource(data.make_source(spec), tokenizer, max_prompt_tokens=limit)
  kept = list(source)
  assert len(kept) == expected_kept < 8
  assert source.num_dropped == 8 - expected_kept
  assert source.metrics() == {"data/dropped_prompts": float(8 - expected_kept)}
  for item in kept:  # Kept prompts are whole: same tokens as encoding the example directly.
    assert len(item.tokens) <= limit
    assert item.tokens == data.encode_prompt(tokenizer, item.example.prompt)


def test_tokenized_source_resumes_with_its_drop_count(tokenizer, gsm8k_file):
  spec = f"jsonl:{gsm8k_file}?preset=gsm8k&seed=4"
  lengths = sorted(len(data.encode_prompt(tokenizer, e.prompt))
                   for e in data.make_source(spec, num_epochs=1))
  limit = lengths[3]
  full = data.TokenizedSource(data.make_source(spec), tokenizer, limit)
  reference = [next(full) for _ in range(6)]
  first = data.TokenizedSource(data.make_source(spec), tokenizer, limit)
  [next(first) for _ in range(3)]
  cursor = json.loads(json.dumps(first.state()))
  resumed = data.TokenizedSource(data.make_source(spec), tokenizer, limit)
  resumed.restore(cursor)
  assert resumed.num_dropped == first.num_dropped
  assert [next(resumed).tokens for _ in range(3)] == [r.tokens for r in reference[3:]]
  assert resumed.num_dropped == full.num_dropped


def test_all_prompts_too_long_raises_instead_of_spinning(tokenizer):
  source = data.TokenizedSource(data.make_source("rg:gcd?size=4"), tokenizer, max_prompt_tokens=5)
  with pytest.raises(ValueError, match="All 4 prompts .* longer than max_prompt_tokens=5"):
    next(source)
  assert source.num_dropped == 4
