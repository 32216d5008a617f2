"""Loading GSM8K- and MATH-style records through the real `datasets` code path."""

import json

import datasets
import pytest

from jaxrl_llm import data, rewards

GSM8K_ANSWERS = ["18", "90", "1325", "28", "128", "7", "18", "8"]
MATH_ANSWERS = [r"\frac{3}{4}", "4", r"5\sqrt{2}", "7", "10", "(-2, 2)"]


def _in_order(source):
  return list(data.make_source(source, shuffle=False, num_epochs=1))


def test_gsm8k_preset_reads_hash_answers(gsm8k_file):
  examples = _in_order(f"hf:{gsm8k_file}?preset=gsm8k")
  assert [e.answer for e in examples] == GSM8K_ANSWERS
  assert examples[0].question.startswith("A baker fills 4 trays")
  assert examples[0].metadata["source"] == f"hf:{gsm8k_file}"
  assert [e.metadata["index"] for e in examples] == list(range(8))


def test_math_preset_reads_boxed_answers_and_keeps_fields(math_file):
  examples = _in_order(f"hf:{math_file}?preset=math")
  assert [e.answer for e in examples] == MATH_ANSWERS
  assert examples[2].metadata["level"] == "Level 2"
  assert examples[4].metadata["type"] == "Counting & Probability"
  # The extracted references are what math-verify checks completions against.
  reward = rewards.math_verify_reward()
  assert reward(r"\boxed{0.75}", examples[0]) == 1.0
  assert reward(r"\boxed{\sqrt{50}}", examples[2]) == 1.0
  assert reward(r"\boxed{[-2, 2]}", examples[5]) == 0.0


def test_parquet_and_saved_folder_load_like_jsonl(math_file, tmp_path):
  table = datasets.load_dataset("json", data_files=str(math_file), split="train")
  table.to_parquet(str(tmp_path / "math.parquet"))
  table.save_to_disk(str(tmp_path / "saved"))
  for spec in (f"hf:{tmp_path / 'math.parquet'}?preset=math",
               f"hf:{tmp_path / 'saved'}?preset=math",
               {"source": f"hf:{tmp_path / 'math.parquet'}", "preset": "math"}):
    assert [e.answer for e in _in_order(spec)] == MATH_ANSWERS


def test_folder_of_split_files(gsm8k_file, tmp_path):
  lines = gsm8k_file.read_text().splitlines()
  (tmp_path / "train.jsonl").write_text("\n".join(lines[:5]) + "\n")
  (tmp_path / "test.jsonl").write_text("\n".join(lines[5:]) + "\n")
  train = _in_order(f"hf:{tmp_path}?preset=gsm8k")
  test = _in_order(f"hf:{tmp_path}?preset=gsm8k&hf_split=test")
  assert [e.answer for e in train] == GSM8K_ANSWERS[:5]
  assert [e.answer for e in test] == GSM8K_ANSWERS[5:]
  with pytest.raises(ValueError, match="no split 'validation'; it has (train, test|test, train)"):
    data.make_source(f"hf:{tmp_path}?preset=gsm8k&hf_split=validation")


def test_custom_field_mapping(tmp_path):
  rows = [{"prompt_text": "What is 2+3?", "target": "5"},
          {"prompt_text": "What is 4*4?", "target": "16"}]
  path = tmp_path / "custom.json"
  path.write_text(json.dumps(rows))
  examples = _in_order(f"hf:{path}?question_field=prompt_text&answer_field=target")
  assert [(e.question.split("\n")[0], e.answer) for e in examples] == [
      ("What is 2+3?", "5"), ("What is 4*4?", "16")]


def test_plain_jsonl_source_matches_hf(gsm8k_file):
  via_jsonl = _in_order(f"jsonl:{gsm8k_file}?preset=gsm8k")
  via_hf = _in_order(f"hf:{gsm8k_file}?preset=gsm8k")
  assert [e.answer for e in via_jsonl] == [e.answer for e in via_hf]
  assert [e.prompt for e in via_jsonl] == [e.prompt for e in via_hf]
  assert _in_order(str(gsm8k_file) + "?preset=gsm8k")[0].metadata["source"].startswith("jsonl:")


def test_missing_field_names_available_fields(math_file):
  with pytest.raises(ValueError, match=r"no field 'question'.*Available fields: problem, solution, "
                                       r"level, type"):
    data.make_source(f"hf:{math_file}")  # The default mapping expects `question`.
  with pytest.raises(ValueError, match=r"no field 'solutions'.*Did you mean 'solution'"):
    data.make_source(f"jsonl:{math_file}?preset=math&answer_field=solutions")


def test_empty_dataset_fails_clearly(tmp_path):
  empty = tmp_path / "empty.jsonl"
  empty.write_text("")
  with pytest.raises(ValueError, match="no usable records"):
    data.make_source(f"jsonl:{empty}")
  table = datasets.Dataset.from_dict({"question": [], "answer": []})
  table.to_parquet(str(tmp_path / "empty.parquet"))
  with pytest.raises(ValueError, match="is empty"):
    data.make_source(f"hf:{tmp_path / 'empty.parquet'}")


def test_hub_id_offline_says_to_pass_local_files(monkeypatch):
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
  with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE=1.*local folder or file"):
    data.make_source("hf:jaxrl-llm-tests/no-such-dataset?name=main")


def test_missing_local_path_is_not_sent_to_the_hub(tmp_path):
  with pytest.raises(FileNotFoundError, match="No such file"):
    data.make_source(f"hf:{tmp_path / 'missing.parquet'}")


def test_answers_without_hash_are_skipped_and_counted(tmp_path, caplog):
  path = tmp_path / "partial.jsonl"
  path.write_text(json.dumps({"question": "q1", "answer": "work\n#### 3"}) + "\n" +
                  json.dumps({"question": "q2", "answer": "no final answer"}) + "\n")
  examples = _in_order(f"jsonl:{path}?preset=gsm8k")
  assert [e.answer for e in examples] == ["3"]
  assert "skipped 1 records" in caplog.text
