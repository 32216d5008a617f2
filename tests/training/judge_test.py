"""The `process_judge` hook (spec B6 PPR, B7 Posterior-GRPO): steps, the judge's P(Yes) against a
direct computation from the full logits, the per-unit gating and cache, and 3-iteration runs of
configs/ppr.py and configs/posterior_grpo.py.

Mechanics use the tiny random model with the byte tokenizer (one token per byte, so step spans are
checked against character positions; the judge is the random policy). The judge's scores are
also checked on the real SmolLM2.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import data, models, sampling
from jaxrl_llm.objectives import presets
from jaxrl_llm.training import hooks as hooks_lib
from jaxrl_llm.training import hooks_judge
from tests.training.helpers import byte_parity_reward, tiny_random_model
from tests.training.seed_e2e_test import _run, _values

def _tiny_model():
  model, tokenizer, _ = tiny_random_model()
  return model, tokenizer


def _env(model, tokenizer, step=0):
  return hooks_lib.HookEnv(
      model=model, tokenizer=tokenizer, params=model.params(), mesh=None,
      sampling_config=sampling.SamplingConfig(max_new_tokens=8, n=2), key=jax.random.key(0),
      score_fn=lambda texts, examples: np.zeros(len(texts), np.float32), step=step)


def _host_batch(tokenizer, questions, completions, rewards):
  """Group k holds the texts `completions[k]` (tokens + EOS) for question k."""
  examples = [data.Example(prompt=[{"role": "user", "content": q}], answer="", metadata={})
              for q in questions]
  rows = [(k, t) for k, texts in enumerate(completions) for t in texts]
  ids = [tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
         for _, t in rows]
  b, width = len(rows), max(len(i) for i in ids) + 2
  tokens, mask = np.zeros((b, width), np.int32), np.zeros((b, width), np.int32)
  for r, i in enumerate(ids):
    tokens[r, :len(i)], mask[r, :len(i)] = i, 1
  comps = sampling.Completions(
      tokens=tokens, mask=mask, logp=np.zeros((b, width), np.float32),
      lengths=np.asarray([len(i) for i in ids], np.int32), truncated=np.zeros(b, bool),
      prompt_tokens=np.ones((b, 2), np.int32), prompt_mask=np.ones((b, 2), np.int32))
  gids = np.asarray([k for k, _ in rows], np.int32)
  return hooks_lib.HostBatch(
      completions=comps, rewards=np.asarray(rewards, np.float32),
      examples=[examples[k] for k in gids], texts=[t for _, t in rows], group_ids=gids,
      prompts=[data.EncodedPrompt(e, [1]) for e in examples])


def _direct_yes_prob(model, prompt, yes, no):
  """softmax over the two ids of the full [1, T, V] logits at the prompt's last position."""
  logits = np.asarray(model(jnp.asarray([prompt], jnp.int32)), np.float64)[0, -1]
  z = logits[[yes, no]]
  e = np.exp(z - z.max())
  return e[0] / e.sum()


# --------------------------------------------------------------------------------------------------
# Steps and texts


def test_steps_split_on_newlines_or_closing_tags():
  text = "<think>add 2 and 3</think>\n<search>sum 2 3</search><answer>5</answer>"
  assert hooks_judge.split_steps(text, "tags") == [len("<think>add 2 and 3</think>"),
                                                   text.index("<answer>")]
  assert hooks_judge.split_steps("a\n\nb\nc\n", "newline") == [3, 5]
  assert hooks_judge.split_steps("\nonly one\n", "newline") == []
  with pytest.raises(ValueError, match="unknown step split"):
    hooks_judge.split_steps("x", "sentences")


def test_token_steps_follow_the_character_spans_and_merge_beyond_max_steps():
  _, tok = _tiny_model()
  text = "one\ntwo\n\nthree\nfour"
  ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
  starts = hooks_judge.split_steps(text)
  step_id, spans = hooks_judge.token_step_ids(tok, ids, starts, max_steps=8)
  assert [text[a:b] for a, b in spans] == ["one\n", "two\n\n", "three\n", "four"]
  assert step_id.tolist() == [0] * 4 + [1] * 5 + [2] * 6 + [3] * 5       # EOS in the last
  step_id, spans = hooks_judge.token_step_ids(tok, ids, starts, max_steps=2)
  assert [text[a:b] for a, b in spans] == ["one\n", "two\n\nthree\nfour"]
  assert step_id.max() == 1


def test_reasoning_text_is_the_think_part():
  assert hooks_judge.reasoning_text("<think> a\nb </think><answer>3</answer>") == "a\nb"
  assert hooks_judge.reasoning_text("plain 3") == "plain 3"
  assert hooks_judge.reasoning_text("<think>cut off") == "cut off"


# --------------------------------------------------------------------------------------------------
# The judge's P(Yes)


def test_yes_probability_equals_the_softmax_of_the_full_logits():
  """Left padding, row padding and chunking change nothing: each prompt's score is the softmax
  over the two ids of its own full-logits forward."""
  model, tok = _tiny_model()
  yes, no = hooks_judge.yes_no_ids(tok)
  assert (yes, no) == (tok("Y")["input_ids"][0], tok("N")["input_ids"][0])   # first bytes
  prompts = [tok(f"question {i}" + "!" * (9 * i), add_special_tokens=False)["input_ids"]
             for i in range(3)]
  got = hooks_judge.yes_probability(model.config, model.params(), prompts, yes, no,
                                    batch_size=2)
  want = [_direct_yes_prob(model, p, yes, no) for p in prompts]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  again = hooks_judge.yes_probability(model.config, model.params(), prompts[::-1], yes, no)
  np.testing.assert_allclose(again[::-1], got, rtol=1e-5, atol=1e-6)
  assert np.all((got > 0.0) & (got < 1.0))


def test_bad_judge_settings_fail_at_construction():
  with pytest.raises(ValueError, match="unknown judge unit"):
    hooks_judge.ProcessJudge(unit="token")
  with pytest.raises(ValueError, match="placeholders"):
    hooks_judge.ProcessJudge(rubric="Is it good? Answer Yes or No.")
  _, tok = _tiny_model()
  with pytest.raises(ValueError, match="same token"):
    hooks_judge.yes_no_ids(tok, "Yes", "Yep")


# --------------------------------------------------------------------------------------------------
# The hook


def test_step_unit_writes_step_ids_and_scores_with_one_call_per_distinct_step():
  model, tok = _tiny_model()
  env = _env(model, tok)
  batch = _host_batch(tok, ["2 + 3?", "4 * 4?"],
                      [["add them\nso 5", "add them\nso 6"], ["16", "add them\nso 5"]],
                      [1.0, 0.0, 1.0, 0.0])
  hook = hooks_judge.ProcessJudge(unit="step", max_steps=3)
  assert set(hook.provides) == {"step_id", "step_value"}
  out = hook.process(batch, env)
  sid, sv = out.extras["step_id"], out.extras["step_value"]
  assert sv.shape == (4, 3) and sid.shape == batch.completions.tokens.shape
  assert [int(r.max()) + 1 for r in sid] == [2, 2, 1, 2]
  assert np.all(sid[batch.completions.mask == 0] == -1)
  assert np.all((sv > 0.0) & (sv < 1.0) | (sv == 0.0)) and np.all(sv[:, 2] == 0.0)
  # ("2 + 3?", "add them") twice: 6 distinct (question, step) of 7 units.
  assert out.metrics["judge/units"] == 7.0 and out.metrics["judge/calls"] == 6.0
  assert sv[0, 0] == sv[1, 0] and sv[0, 0] != sv[3, 0]
  prompt = hook.prompt(tok, "2 + 3?", "so 6")
  yes, no = hooks_judge.yes_no_ids(tok)
  assert sv[1, 1] == pytest.approx(_direct_yes_prob(model, prompt, yes, no), rel=1e-5)
  ctx = hooks_lib.to_rollout_batch(out).ctx
  assert ctx.extras["step_id"].shape == ctx.mask.shape


def test_response_unit_judges_only_correct_rows_and_caches_a_fixed_judge():
  model, tok = _tiny_model()
  batch = _host_batch(tok, ["2 + 3?"], [["<think>2+3=5</think>5", "6", "<think>x</think>5"]],
                      [1.0, 0.0, 1.0])
  hook = hooks_judge.ProcessJudge(unit="response", format_regex=r"<think>.*</think>")
  out = hook.process(batch, _env(model, tok))
  proc = out.extras["proc_score"]
  assert proc[1] == 0.0 and np.all((proc[[0, 2]] > 0.0) & (proc[[0, 2]] < 1.0))
  assert out.metrics["judge/calls"] == 2.0 and out.metrics["judge/judged_frac"] == 2 / 3
  assert out.extras["format_reward"].tolist() == [1.0, 0.0, 1.0]
  prompt = hook.prompt(tok, "2 + 3?", "2+3=5")
  yes, no = hooks_judge.yes_no_ids(tok)
  assert proc[0] == pytest.approx(_direct_yes_prob(model, prompt, yes, no), rel=1e-5)
  # The policy judge re-scores in a new iteration (its parameters moved); within one it reuses.
  assert hook.process(batch, _env(model, tok, step=0)).metrics["judge/calls"] == 0.0
  assert hook.process(batch, _env(model, tok, step=1)).metrics["judge/calls"] == 2.0
  everyone = hooks_judge.ProcessJudge(unit="response", judge_failed=True)
  assert everyone.process(batch, _env(model, tok)).metrics["judge/calls"] == 3.0


def test_objectives_ask_for_the_judge_hook_by_name():
  for name, unit in (("ppr", "step"), ("posterior_grpo", "response")):
    with pytest.raises(ValueError, match="config.hooks.process_judge"):
      hooks_lib.check_requirements(presets.build(name).requires, [])
    hooks_lib.check_requirements(presets.build(name).requires,
                                 hooks_lib.build_hooks({"process_judge": {"unit": unit}}))


# --------------------------------------------------------------------------------------------------
# End to end: 3 iterations of each config on the tiny random model


def test_ppr_config_trains_with_step_scores(tmp_path):
  """The judge scores every step of every row (the random policy judging itself); ReNorm's step
  rewards lie in [−1, 1] and the advantages vary along rows."""
  history, _, c = _run(tmp_path, "ppr", byte_parity_reward)
  assert c.hooks.process_judge.unit == "step"
  calls = _values(history, "judge/calls")
  assert np.all(calls > 0) and np.all(calls <= _values(history, "judge/units"))
  score = _values(history, "judge/score_mean")
  assert np.all((score > 0.0) & (score < 1.0))
  step_r = _values(history, "ppr/step_reward_mean")
  assert np.all((step_r >= -1.0) & (step_r <= 1.0))
  assert np.all(_values(history, "ppr/steps_per_row") >= 1.0)
  assert np.all(_values(history, "adv/abs_mean") > 0.0)
  print({k: _values(history, k).tolist() for k in ("judge/calls", "judge/score_mean",
                                                   "ppr/step_reward_mean", "adv/abs_mean")})


def test_posterior_grpo_config_trains_with_gated_scores(tmp_path):
  """Only rows the verifier passes are judged (about half with the parity reward); their think
  reward is added, so the mean shaped reward exceeds the outcome's."""
  history, _, c = _run(tmp_path, "posterior_grpo", byte_parity_reward)
  assert c.hooks.process_judge.success_threshold == c.objective.success_threshold == 1.0
  gated = _values(history, "posterior/gated_frac")
  np.testing.assert_allclose(gated, _values(history, "judge/judged_frac"), atol=1e-6)
  assert gated.max() > 0.0                # no passing row in 24 has probability 2^-24
  some = gated > 0
  assert np.all(_values(history, "judge/calls")[some] > 0)
  think = _values(history, "posterior/think_mean")
  assert np.all((think[some] > 0.0) & (think[some] < 1.0))
  np.testing.assert_allclose(_values(history, "reward/mean"),
                             _values(history, "posterior/outcome_mean") + gated * think,
                             rtol=1e-5)
  print({k: _values(history, k).tolist() for k in ("judge/calls", "judge/score_mean",
                                                   "posterior/gated_frac", "reward/mean")})


# --------------------------------------------------------------------------------------------------
# The real SmolLM2


@pytest.fixture(scope="module")
def smollm2():
  return models.from_pretrained("smollm2-135m-instruct")


@pytest.mark.slow
def test_smollm2_judge_scores_are_its_yes_probability(smollm2, monkeypatch):
  model, tok = smollm2
  monkeypatch.setitem(hooks_judge._JUDGES, "smollm2-135m-instruct", smollm2)   # loaded once
  yes, no = hooks_judge.yes_no_ids(tok)
  assert tok.decode([yes]) == "Yes" and tok.decode([no]) == "No"
  steps = ["2 + 3 = 5, so the answer is 5.", "2 + 3 = 7.", "The sky is green today.",
           "First, add the units digits: 2 + 3."]
  hook = hooks_judge.ProcessJudge(unit="step", judge_source="smollm2-135m-instruct")
  env = _env(model, tok)
  scores, calls = hook.score(env, [("What is 2 + 3?", s) for s in steps])
  assert calls == 4 and np.all((scores > 0.0) & (scores < 1.0))
  direct = [_direct_yes_prob(model, hook.prompt(tok, "What is 2 + 3?", s), yes, no)
            for s in steps]
  np.testing.assert_allclose(scores, direct, rtol=1e-4, atol=1e-5)
  again = hooks_judge.yes_probability(
      model.config, model.params(),
      [hook.prompt(tok, "What is 2 + 3?", s) for s in steps], yes, no)
  np.testing.assert_array_equal(again, scores)
  assert hook.score(env, [("What is 2 + 3?", steps[0])])[1] == 0      # cached (fixed judge)
  print("SmolLM2 judge P(Yes):", dict(zip(steps, np.round(scores, 4).tolist())))
