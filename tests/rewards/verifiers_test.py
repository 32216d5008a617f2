"""math-verify, exact-match, numeric and format rewards on hand-written cases."""

import pytest

from jaxrl_llm import data, rewards


def _example(answer: str) -> data.Example:
  return data.Example([{"role": "user", "content": "?"}], answer, {})


# (completion, reference answer, expected reward). The completion carries its answer in `\boxed{}`,
# an `<answer>` tag, or both; the table mixes equal values written differently with answers that
# look close but are wrong.
MATH_CASES = [
    # Fractions, decimals and LaTeX spellings of the same value.
    (r"so the answer is $\boxed{\frac{1}{2}}$", "0.5", 1.0),
    (r"<answer>1/2</answer>", r"\frac12", 1.0),
    (r"<answer>\dfrac{3}{4}</answer>", "0.75", 1.0),
    (r"\boxed{\tfrac{6}{8}}", r"\frac{3}{4}", 1.0),
    (r"\boxed{0.333}", r"\frac{1}{3}", 0.0),
    (r"\boxed{\frac{2}{3}}", r"\frac{3}{2}", 0.0),
    (r"<answer>0.5001</answer>", "1/2", 0.0),
    (r"\boxed{-\frac{1}{2}}", r"\frac{1}{2}", 0.0),
    # Integers and plain numbers.
    (r"\boxed{3}", "3.0", 1.0),
    (r"\boxed{18.0}", "18", 1.0),
    (r"\boxed{1,000}", "1000", 1.0),
    (r"\boxed{10^{3}}", "1000", 1.0),
    (r"\boxed{-4}", "4", 0.0),
    (r"\boxed{181}", "18", 0.0),
    (r"<answer>17</answer>", "18", 0.0),
    # Units, percentages and currency.
    (r"<answer>5 cm</answer>", "5", 1.0),
    (r"\boxed{5\text{ cm}}", "5", 1.0),
    (r"\boxed{50\%}", "50", 1.0),
    (r"<answer>\$18</answer>", "18", 1.0),
    (r"\boxed{6\text{ cm}}", "5", 0.0),
    # Radicals, pi and symbolic expressions.
    (r"\boxed{\sqrt{2}/2}", r"\frac{\sqrt{2}}{2}", 1.0),
    (r"\boxed{5\sqrt{2}}", r"\sqrt{50}", 1.0),
    (r"\boxed{2\pi}", "6.283185", 1.0),
    (r"\boxed{x^2+2x+1}", "(x+1)^2", 1.0),
    (r"\boxed{x^2+1}", "(x+1)^2", 0.0),
    (r"\boxed{\sqrt{3}}", r"\sqrt{2}", 0.0),
    # Equations, intervals and sets.
    (r"<answer>x=3</answer>", "3", 1.0),
    (r"\boxed{(1,2)}", "(1,2)", 1.0),
    (r"\boxed{[1,2)}", "(1,2)", 0.0),
    (r"\boxed{\{1,2\}}", r"\{2,1\}", 1.0),
    (r"\boxed{\{1,3\}}", r"\{1,2\}", 0.0),
    # Boxed against plain, the last box wins, and tags take precedence over boxes.
    (r"first \boxed{7}, corrected: \boxed{8}", "8", 1.0),
    (r"first \boxed{8}, corrected: \boxed{7}", "8", 0.0),
    (r"\boxed{9} <answer>8</answer>", "8", 1.0),
    (r"\boxed{\boxed{12}}", "12", 1.0),
    # Nothing to extract.
    (r"The answer is 8.", "8", 0.0),
    (r"\boxed{}", "8", 0.0),
]


@pytest.mark.parametrize("completion,reference,expected", MATH_CASES)
def test_math_verify_reward_on_table(completion, reference, expected):
  reward = rewards.math_verify_reward()
  assert reward(completion, _example(reference)) == expected


def test_math_table_has_enough_cases_of_both_kinds():
  assert len(MATH_CASES) >= 30
  assert sum(e == 0.0 for *_, e in MATH_CASES) >= 10
  assert sum(e == 1.0 for *_, e in MATH_CASES) >= 10


def test_math_verify_raises_on_unparsable_reference():
  with pytest.raises(ValueError, match="cannot parse the reference"):
    rewards.math_verify_reward()(r"\boxed{3}", _example("???"))


def test_math_verify_boxed_only_ignores_tags():
  reward = rewards.math_verify_reward(modes=("boxed",))
  assert reward(r"<answer>8</answer>", _example("8")) == 0.0
  assert reward(r"<answer>8</answer> \boxed{8}", _example("8")) == 1.0


@pytest.mark.parametrize("completion,reference,expected", [
    ("<answer> Paris </answer>", "paris", 1.0),
    ("<answer>Paris.</answer>", "Paris", 1.0),
    ("<answer>New   York</answer>", "new york", 1.0),
    ("<answer>Lyon</answer>", "Paris", 0.0),
    ("Paris", "Paris", 0.0),  # No tag and no box: nothing extracted.
])
def test_exact_match(completion, reference, expected):
  assert rewards.exact_match_reward()(completion, _example(reference)) == expected


def test_exact_match_case_sensitive():
  reward = rewards.exact_match_reward(case_sensitive=True)
  assert reward("<answer>paris</answer>", _example("Paris")) == 0.0
  assert reward("<answer>Paris</answer>", _example("Paris")) == 1.0


@pytest.mark.parametrize("completion,reference,expected", [
    ("<answer>3.1415927</answer>", "3.14159265", 1.0),
    ("<answer>3.1416</answer>", "3.14159265", 0.0),
    ("so it is 1,325 dollars", "1325", 1.0),
    ("<answer>-3/4</answer>", "-0.75", 1.0),
    ("<answer>45%</answer>", "45", 1.0),
    ("<answer>inf</answer>", "45", 0.0),
    ("<answer>forty five</answer>", "45", 0.0),
])
def test_numeric_reward_default_tolerance(completion, reference, expected):
  assert rewards.numeric_reward()(completion, _example(reference)) == expected


def test_numeric_reward_tolerance_is_configurable():
  loose = rewards.numeric_reward(rtol=1e-3)
  assert loose("<answer>3.1416</answer>", _example("3.14159265")) == 1.0
  absolute = rewards.numeric_reward(rtol=0.0, atol=0.5)
  assert absolute("<answer>10.4</answer>", _example("10")) == 1.0
  assert absolute("<answer>10.6</answer>", _example("10")) == 0.0


def test_numeric_reward_rejects_non_numeric_reference():
  with pytest.raises(ValueError, match="not a number"):
    rewards.numeric_reward()("<answer>3</answer>", _example("three"))


@pytest.mark.parametrize("completion,expected", [
    ("<think>2+2 is 4</think><answer>4</answer>", 1.0),
    ("  <think>\nstep 1\nstep 2\n</think>\n\n<answer> 4 </answer>\n", 1.0),
    ("<think>a</think><answer></answer>", 0.0),
    ("<answer>4</answer>", 0.0),
    ("<think>a</think>", 0.0),
    ("<think>a</think> so <answer>4</answer>", 0.0),
    ("<think>a</think><answer>4</answer> trailing words", 0.0),
    ("<think>a</think><answer>4</answer><answer>5</answer>", 0.0),
    ("<think>a<think>b</think><answer>4</answer>", 0.0),
    ("<answer>4</answer><think>a</think>", 0.0),
])
def test_format_reward_think_answer(completion, expected):
  assert rewards.format_reward()(completion, None) == expected


def test_format_reward_custom_tags_and_prefilled_think():
  reward = rewards.format_reward(think_tag="reasoning", answer_tag="final")
  assert reward("<reasoning>x</reasoning><final>1</final>", None) == 1.0
  assert reward("<think>x</think><answer>1</answer>", None) == 0.0
  prefilled = rewards.format_reward(think_opened_in_prompt=True)
  assert prefilled("x y z</think><answer>1</answer>", None) == 1.0
  assert prefilled("<think>x</think><answer>1</answer>", None) == 0.0
  answer_only = rewards.format_reward(think_tag=None)
  assert answer_only(" <answer>1</answer> ", None) == 1.0
  assert answer_only("<think>x</think><answer>1</answer>", None) == 0.0


def test_format_reward_rejects_bad_tag():
  with pytest.raises(ValueError, match="plain identifiers"):
    rewards.format_reward(answer_tag="<answer>")
