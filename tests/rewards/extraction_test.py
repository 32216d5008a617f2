"""Answer extraction and canonical answers (what majority vote and Co-Reward compare)."""

import pytest

from jaxrl_llm import rewards


@pytest.mark.parametrize("text,expected", [
    (r"\boxed{42}", "42"),
    (r"a \boxed{1} then \boxed{\frac{2}{3}}", r"\frac{2}{3}"),
    (r"\boxed{\left\{ x \mid x>0 \right\}}", r"\left\{ x \mid x>0 \right\}"),
    (r"\boxed{{a}{b}}", "{a}{b}"),
    (r"\fbox{7}", "7"),
    (r"\boxed 5 is it", "5"),
    (r"\boxed{12", None),  # Unclosed: not an answer.
    (r"no box here", None),
])
def test_extract_boxed(text, expected):
  assert rewards.extract_boxed(text) == expected


def test_extract_tagged_takes_last_and_custom_tag():
  assert rewards.extract_tagged("<answer>1</answer> x <answer>\n 2 \n</answer>") == "2"
  assert rewards.extract_tagged("<final>ok</final>", "final") == "ok"
  assert rewards.extract_tagged("<answer>open only") is None


def test_extract_hash_and_last_number():
  assert rewards.extract_hash("work\n#### 1,325") == "1325"
  assert rewards.extract_hash("#### ") is None
  assert rewards.extract_last_number("it costs 1,200 or -3.5 dollars") == "-3.5"
  assert rewards.extract_last_number("it costs 1,200 dollars") == "1200"
  assert rewards.extract_last_number("none") is None


def test_extract_answer_tries_modes_in_order():
  text = r"\boxed{1} <answer>2</answer> #### 3 and 4"
  assert rewards.extract_answer(text) == "2"
  assert rewards.extract_answer(text, ("boxed", "answer_tag")) == "1"
  assert rewards.extract_answer(text, ("hash",)) == "3 and 4"
  assert rewards.extract_answer(text, ("last_number",)) == "4"
  assert rewards.extract_answer("nothing", ("answer_tag", "boxed")) is None


def test_unknown_mode_suggests_close_name():
  with pytest.raises(ValueError, match="Did you mean 'boxed'"):
    rewards.extract_answer("x", ("boxd",))


@pytest.mark.parametrize("spellings", [
    [r"\frac{1}{2}", "0.5", "1/2", r"\dfrac12"],
    ["3", "3.0", r"3\text{ cm}", "x = 3"],
    ["x+1", "1+x", r"1 + x"],
    ["Paris", " paris ", "PARIS."],
    ["1,000", "1000", "10^3"],
])
def test_canonical_answer_equal_for_equal_values(spellings):
  canonical = {rewards.canonicalize_answer(s) for s in spellings}
  assert len(canonical) == 1, canonical


@pytest.mark.parametrize("a,b", [("1/2", "0.51"), ("Paris", "Lyon"), ("x+1", "x-1"), ("3", "-3")])
def test_canonical_answer_differs_for_different_values(a, b):
  assert rewards.canonicalize_answer(a) != rewards.canonicalize_answer(b)


def test_answer_extractor_for_majority_vote():
  extractor = rewards.AnswerExtractor()
  group = [r"\boxed{0.5}", r"<answer>\frac{1}{2}</answer>", r"\boxed{1/3}", "no answer"]
  answers = [extractor(c) for c in group]
  assert answers[0] == answers[1] == "1/2"
  assert answers[2] == "1/3"
  assert answers[3] is None
  raw = rewards.AnswerExtractor(canonical=False)
  assert raw(r"\boxed{0.5}") == "0.5"
