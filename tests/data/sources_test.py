"""Spec parsing, determinism, resumable cursors, splits, and the errors for bad specs."""

import json

import pytest

from jaxrl_llm import data


def _take(source, n):
  return [next(source) for _ in range(n)]


def _key(example):
  return (example.metadata["source"], example.metadata["index"], example.metadata["epoch"])


def test_parse_spec():
  assert data.parse_spec("reasoning_gym:chain_sum?size=10&allow_negation=false&seed=3") == (
      "reasoning_gym", "chain_sum", {"size": 10, "allow_negation": False, "seed": 3})
  assert data.parse_spec("rg:gcd") == ("reasoning_gym", "gcd", {})
  assert data.parse_spec("/data/x.jsonl?limit=5") == ("jsonl", "/data/x.jsonl", {"limit": 5})
  assert data.parse_spec("openai/gsm8k?name=main") == ("hf", "openai/gsm8k", {"name": "main"})
  assert data.parse_spec("hf:/d?system_prompt=Be+brief%21") == (
      "hf", "/d", {"system_prompt": "Be brief!"})
  with pytest.raises(ValueError, match="Did you mean 'jsonl'"):
    data.parse_spec("jsnl:/data/x.jsonl")
  with pytest.raises(ValueError, match="has no value"):
    data.parse_spec("rg:gcd?size")


@pytest.mark.parametrize("spec", ["reasoning_gym:basic_arithmetic?size=12",
                                  "jsonl:{gsm8k}?preset=gsm8k"])
def test_resume_from_saved_cursor_continues_at_next_example(spec, gsm8k_file):
  spec = spec.format(gsm8k=gsm8k_file)
  k = 10  # Past the end of the 8-record file: the cursor also carries the epoch.
  reference = _take(data.make_source(spec, seed=5), k + 3)
  interrupted = data.make_source(spec, seed=5)
  _take(interrupted, k)
  cursor = json.loads(json.dumps(interrupted.state()))  # Survives a checkpoint round trip.
  resumed = data.make_source(spec, seed=5, state=cursor)
  assert [_key(e) for e in _take(resumed, 3)] == [_key(e) for e in reference[k:]]
  assert next(data.make_source(spec, seed=5, state=cursor)).prompt == reference[k].prompt


def test_cursor_from_another_source_is_refused():
  cursor = data.make_source("reasoning_gym:gcd?size=10").state()
  with pytest.raises(ValueError, match="different source"):
    data.make_source("reasoning_gym:gcd?size=11", state=cursor)
  with pytest.raises(ValueError, match="different source"):
    data.make_source("reasoning_gym:lcm?size=10", state=cursor)


def test_same_seed_same_stream_other_seed_other_order():
  a = [_key(e) for e in _take(data.make_source("rg:gcd?size=20&seed=1"), 20)]
  b = [_key(e) for e in _take(data.make_source("rg:gcd?size=20&seed=1"), 20)]
  c = [_key(e) for e in _take(data.make_source("rg:gcd?size=20&seed=2"), 20)]
  assert a == b
  assert a != c
  assert sorted(k[1] for k in a) == list(range(20))  # One epoch visits every record once.


def test_epochs_reshuffle_and_num_epochs_stops():
  source = data.make_source("rg:gcd?size=6&num_epochs=2")
  examples = list(source)
  assert len(examples) == 12
  indices = [e.metadata["index"] for e in examples]
  first, second = indices[:6], indices[6:]
  assert sorted(first) == sorted(second) == list(range(6))
  assert first != second
  ordered = data.make_source("rg:gcd?size=6&shuffle=false&num_epochs=1")
  assert [e.metadata["index"] for e in ordered] == list(range(6))


def test_train_eval_splits_are_disjoint(gsm8k_file):
  train, evaluation = data.train_eval_sources(f"jsonl:{gsm8k_file}?preset=gsm8k", eval_size=3)
  assert (len(train), len(evaluation)) == (5, 3)
  eval_questions = {e.question for e in evaluation}
  train_questions = {e.question for e in _take(train, 5)}
  assert len(eval_questions) == 3 and not eval_questions & train_questions
  rg_train, rg_eval = data.train_eval_sources("rg:chain_sum?size=10", eval_fraction=0.2)
  assert (len(rg_train), len(rg_eval)) == (10, 2)
  assert {e.metadata["index"] for e in rg_eval} == {10, 11}
  with pytest.raises(ValueError, match="eval_size"):
    data.make_source(f"jsonl:{gsm8k_file}?preset=gsm8k&split=eval")


def test_prompt_format_system_prompt_and_instruction():
  example = next(data.make_source("rg:gcd?size=3", system_prompt="You are terse.",
                                  answer_format="boxed"))
  assert example.prompt[0] == {"role": "system", "content": "You are terse."}
  assert example.prompt[1]["role"] == "user"
  assert example.prompt[1]["content"].endswith(data.ANSWER_FORMATS["boxed"])
  plain = next(data.make_source("rg:gcd?size=3&answer_format=none"))
  assert [m["role"] for m in plain.prompt] == ["user"]
  assert plain.question == plain.metadata["reasoning_gym"]["question"]


def test_config_mapping_with_task_config():
  source = data.make_source({"source": "reasoning_gym:chain_sum", "size": 4, "seed": 1,
                             "config": {"min_terms": 5, "max_terms": 5}, "num_epochs": 1})
  for example in source:
    assert example.metadata["reasoning_gym"]["metadata"]["num_terms"] == 5


def test_unknown_task_suggests_close_names():
  with pytest.raises(ValueError, match=r"Unknown reasoning-gym task 'chainsum'\. Did you mean "
                                       r"'chain_sum'"):
    data.make_source("reasoning_gym:chainsum")


def test_bad_task_config_and_options_name_the_fix(gsm8k_file):
  with pytest.raises(ValueError, match=r"no config option 'min_term'\. Did you mean 'min_terms'"):
    data.make_source("reasoning_gym:chain_sum?min_term=2")
  with pytest.raises(ValueError, match="rejected the config"):
    data.make_source("reasoning_gym:chain_sum?min_terms=5&max_terms=2")
  with pytest.raises(ValueError, match=r"Unknown option 'prest'.*Did you mean 'preset'"):
    data.make_source(f"jsonl:{gsm8k_file}?prest=gsm8k")
  with pytest.raises(ValueError, match=r"Unknown field-mapping preset 'gsm'.*gsm8k"):
    data.make_source(f"jsonl:{gsm8k_file}?preset=gsm")
  with pytest.raises(ValueError, match="needs a 'source' key"):
    data.make_source({"size": 3})
