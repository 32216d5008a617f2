"""Label-free reward hooks (majority vote / TTRV, Co-Reward) and LaSeR, on host batches and end
to end.

The hooks' unit tests build `HostBatch`es by hand (no model): rewards replaced by the voting
rules, TTRV's vote-only rows split into a masked group, Co-Reward's pair layout and rephrasings.
The end-to-end tests run each config 3 iterations on the tiny random model (`seed_e2e_test._run`)
and check the method's own metrics; one test has the real SmolLM2 write Co-Reward's rephrasings.
"""
import time

import jax
import ml_collections
import numpy as np
import pytest

from jaxrl_llm import data, models, objectives as ob, rewards, sampling
from jaxrl_llm.training import hooks as hooks_lib
from jaxrl_llm.training import hooks_voting, loop
from tests.training.helpers import (
    byte_parity_reward, byte_tokenizer, load_config, random_completions)
from tests.training.seed_e2e_test import _run, _tiny_of, _values

INSTRUCTION = data.ANSWER_FORMATS["answer_tag"]


def _example(question, answer="", **metadata):
  return data.Example(prompt=[{"role": "user", "content": f"{question}\n\n{INSTRUCTION}"}],
                      answer=answer, metadata=metadata)


def _host(answers, sizes, examples=None, verifier=None, width=3):
  b = len(answers)
  comps = random_completions(0, b, 1, prompt_width=2, width=width, empty_row=False)
  ids = np.repeat(np.arange(len(sizes)), sizes)
  examples = examples or [_example(f"q{k}") for k in range(len(sizes))]
  return hooks_lib.HostBatch(
      completions=comps, rewards=verifier if verifier is not None else np.zeros(b),
      examples=[examples[k] for k in ids], texts=[f"t{i}" for i in range(b)], group_ids=ids,
      prompts=[data.EncodedPrompt(example=e, tokens=[1, 2]) for e in examples], answers=answers)


def _env(tokenizer=None, max_prompt_tokens=None):
  return hooks_lib.HookEnv(model=None, tokenizer=tokenizer, params=None, mesh=None,
                           sampling_config=sampling.SamplingConfig(), key=jax.random.key(0),
                           score_fn=lambda texts, examples: np.zeros(len(texts)),
                           answer_fn=rewards.AnswerExtractor(),
                           max_prompt_tokens=max_prompt_tokens)


# --- majority_vote hook ---------------------------------------------------------------------------

def test_mm_upt_hook_replaces_rewards_and_logs_true_accuracy_only_with_references():
  answers = ["5", "3", "5", None, "1", "2", "1"]
  verifier = np.array([1, 0, 1, 0, 0, 0, 0], np.float32)
  examples = [_example("q0", answer="5"), _example("q1")]          # group 1 is unlabelled
  hb = _host(answers, [4, 3], examples, verifier)
  out = hooks_lib.build_hooks({"majority_vote": {}})[0].process(hb, _env())
  np.testing.assert_array_equal(out.rewards, [1, 0, 1, 0, 1, 0, 1])
  m = out.metrics
  assert m["majority/agreement_rate"] == pytest.approx(4 / 7)
  assert m["majority/no_answer_frac"] == pytest.approx(1 / 7)
  assert m["majority/true_accuracy"] == pytest.approx(0.5)          # group 0's 4 rows only
  assert m["majority/vote_accuracy"] == 1.0                         # "5" won and is right
  unlabelled = _host(answers, [4, 3])
  out = hooks_voting.MajorityVote().process(unlabelled, _env())
  assert "majority/true_accuracy" not in out.metrics
  np.testing.assert_array_equal(out.rewards, [1, 0, 1, 0, 1, 0, 1])


def test_mm_upt_hook_all_distinct_group_gives_no_advantage():
  hb = _host(["1", "2", "3", "4", "7", "7", "7", "8"], [4, 4])
  out = hooks_voting.MajorityVote().process(hb, _env())
  batch = hooks_lib.to_rollout_batch(out)
  ctx, _ = ob.group_advantage().update(batch.ctx.replace(phase="rollout"), ())
  np.testing.assert_array_equal(np.asarray(ctx.advantages)[:4], 0.0)
  assert np.all(np.asarray(ctx.advantages)[4:7, 0] > 0) and np.asarray(ctx.advantages)[7, 0] < 0


def test_ttrv_hook_trains_on_the_first_n_train_and_votes_with_all():
  """4 votes per prompt, 2 trained: the vote-only rows become their own group with mask 0, the
  rewards are the frequencies over all 4 votes, and GRPO's advantage runs over the trained rows."""
  answers = ["a", "b", "a", "a", "x", "y", "z", "x"]
  hb = _host(answers, [4, 4])
  hook = hooks_voting.MajorityVote(mode="ttrv", entropy_coef=0.5, n_train=2)
  out = hook.process(hb, _env())
  ref, entropy, _ = rewards.ttrv_rewards(answers, 4, 0.5)
  np.testing.assert_allclose(out.rewards, ref)
  assert out.group_ids.tolist() == [0, 0, 1, 1, 2, 2, 3, 3] and len(out.prompts) == 4
  np.testing.assert_array_equal(np.asarray(out.completions.mask).any(1),
                                [1, 1, 0, 0, 1, 1, 0, 0])
  assert out.metrics["ttrv/train_frac"] == 0.5
  assert out.metrics["ttrv/entropy_mean"] == pytest.approx(np.mean(entropy))
  batch = hooks_lib.to_rollout_batch(out)
  assert batch.ctx.group_size == 2
  ctx, _ = ob.group_advantage().update(batch.ctx.replace(phase="rollout"), ())
  adv = np.asarray(ctx.advantages)[:, 0]
  r = np.asarray(ref, np.float64)
  for rows in ([0, 1], [4, 5]):
    expected = (r[rows] - r[rows].mean()) / (r[rows].std(ddof=1) + 1e-6)
    np.testing.assert_allclose(adv[rows], expected, rtol=1e-5, atol=1e-6)
  assert np.all(np.asarray(ctx.advantages)[[2, 3, 6, 7]] == 0.0)   # masked rows add nothing


def test_hook_arguments_are_checked():
  with pytest.raises(ValueError, match="unknown majority_vote mode 'ttrl'"):
    hooks_voting.MajorityVote(mode="ttrl")
  with pytest.raises(ValueError, match="unknown argument 'n_vote' of hook 'majority_vote'"):
    hooks_lib.build_hooks({"majority_vote": {"n_vote": 8}})
  with pytest.raises(ValueError, match="placeholder"):
    hooks_voting.CoReward(instruction="rephrase this")


# --- co_reward hook --------------------------------------------------------------------------------

def test_co_reward_pairs_prompts_with_field_rephrasings_and_copies():
  """Group 2k is question k, 2k+1 its rephrasing: from the data field when present (with the
  answer-format instruction re-appended), else, without generation, a copy (counted failed)."""
  tok = byte_tokenizer()
  env = _env(tok, max_prompt_tokens=400)
  ex0 = _example("What is 2 + 3?", answer="5", rephrased="Add three to two. What do you get?")
  ex1 = _example("What is 4 * 4?", answer="16")
  prompts = [data.EncodedPrompt(e, data.encode_prompt(tok, e.prompt)) for e in (ex0, ex1)]
  hook = hooks_voting.CoReward(generate=False)
  out = hook.expand(prompts, env)
  assert len(out) == 4 and out[0] is prompts[0] and out[2] is prompts[1]
  reph = out[1].example
  assert reph.prompt[-1]["content"] == f"Add three to two. What do you get?\n\n{INSTRUCTION}"
  assert reph.answer == "5" and reph.metadata["co_reward"] == "rephrased"
  assert out[1].tokens == data.encode_prompt(tok, reph.prompt)
  assert out[3].tokens == prompts[1].tokens and out[3].example.metadata["co_reward"] == "copy"
  assert hook._last["co_reward/rephrase_failed_frac"] == 0.5
  assert hook._last["co_reward/rephrase_field_frac"] == 0.5
  # too long for max_prompt_tokens: falls back to the copy
  short = hook.expand(prompts[:1], _env(tok, max_prompt_tokens=len(prompts[0].tokens)))
  assert short[1].tokens == prompts[0].tokens


class _CannedEnv(hooks_lib.HookEnv):
  """A HookEnv whose policy 'writes' given texts (the acceptance rule, without a model)."""
  replies: tuple = ()

  def sample(self, prompt_tokens, n, key, **overrides):
    assert n == 1 and overrides["temperature"] == 0.0 and len(prompt_tokens) == len(self.replies)
    texts = [t for t, _ in self.replies]
    b = len(texts)
    comps = sampling.Completions(
        tokens=np.zeros((b, 1), np.int32), mask=np.ones((b, 1), np.int32),
        logp=np.zeros((b, 1), np.float32), lengths=np.ones(b, np.int32),
        truncated=np.asarray([t for _, t in self.replies]),
        prompt_tokens=np.zeros((b, 1), np.int32), prompt_mask=np.ones((b, 1), np.int32))
    return comps, texts


def test_co_reward_accepts_generated_rephrasings_that_keep_the_numbers():
  """Accepted: a finished rewrite with the question's numbers. Rejected (copies): an answer
  instead of a rewrite, an unfinished one, and the question repeated."""
  tok = byte_tokenizer()
  qs = ["What is 205 - 838 + 505?", "What is 7 + 5?", "What is 2 * 9?", "What is 1 + 1?"]
  examples = [_example(q) for q in qs]
  prompts = [data.EncodedPrompt(e, data.encode_prompt(tok, e.prompt)) for e in examples]
  env = _CannedEnv(model=None, tokenizer=tok, params=None, mesh=None,
                   sampling_config=sampling.SamplingConfig(), key=jax.random.key(0),
                   score_fn=None, max_prompt_tokens=400)
  env.replies = (("Rewritten problem: Subtract 838 from 205, then add 505.", False),
                 ("The answer is 12.", False), ("Multiply 2 by 9", True), (qs[3], False))
  hook = hooks_voting.CoReward()
  out = hook.expand(prompts, env)
  assert out[1].example.prompt[-1]["content"] == (
      f"Subtract 838 from 205, then add 505.\n\n{INSTRUCTION}")
  assert [out[k].example.metadata["co_reward"] for k in (3, 5, 7)] == ["copy"] * 3
  assert hook._last == {"co_reward/rephrase_attempted_frac": 1.0,
                        "co_reward/rephrase_generated_frac": 0.25,
                        "co_reward/rephrase_field_frac": 0.0,
                        "co_reward/rephrase_failed_frac": 0.75}
  env.replies = env.replies[1:2]
  lenient = hooks_voting.CoReward(keep_numbers=False)
  assert lenient.expand(prompts[1:2], env)[1].example.metadata["co_reward"] == "rephrased"


def test_co_reward_process_rewards_cross_agreement():
  """The spec's fixture as a batch: orig [12, 12, 7, 12], rephrased [7, 7, 12, 7]."""
  answers = ["12", "12", "7", "12", "7", "7", "12", "7", "3", "3", "3", "3"]
  verifier = np.array([1, 1, 0, 1] + [0] * 8, np.float32)
  examples = [_example("x", answer="12"), _example("x'", answer="12"), _example("y"),
              _example("y'")]
  hb = _host(answers[:8] + ["3", "3", "3", "3"], [4, 4, 2, 2], examples, verifier)
  out = hooks_voting.CoReward().process(hb, _env())
  np.testing.assert_array_equal(out.rewards, [0, 0, 1, 0, 0, 0, 1, 0, 1, 1, 1, 1])
  assert out.extras["pair_group"].tolist() == [1] * 4 + [0] * 4 + [3, 3, 2, 2]
  assert out.metrics["co_reward/agreement_rate"] == 0.5              # pair 1 agrees on "3"
  assert out.metrics["co_reward/true_accuracy"] == 0.75              # originals of labelled pairs
  with pytest.raises(ValueError, match="in pairs"):
    hooks_voting.CoReward().process(_host(["1"] * 3, [3]), _env())


# --- end to end on the tiny random model -----------------------------------------------------------

def _assert_fraction(history, key):
  values = _values(history, key)
  assert np.all((values >= 0.0) & (values <= 1.0)), (key, values)
  return values


def test_mm_upt_config_trains_on_majority_rewards(tmp_path):
  """The rollout's reward is the hook's (`reward/mean` = `majority/reward_mean`, the agreement
  rate for MM-UPT), not the verifier's (`reward/total`, kept as `majority/true_accuracy`)."""
  c = load_config("mm_upt")
  assert c.hooks.majority_vote.mode == "mm_upt" and c.sampling.n == 10
  history, _, _ = _run(tmp_path, "mm_upt", byte_parity_reward, **{"sampling.n": 4})
  for key in ("majority/agreement_rate", "majority/no_answer_frac", "majority/true_accuracy"):
    _assert_fraction(history, key)
  np.testing.assert_allclose(_values(history, "reward/mean"),
                             _values(history, "majority/agreement_rate"), atol=1e-6)
  np.testing.assert_allclose(_values(history, "majority/true_accuracy"),
                             _values(history, "reward/total"), atol=1e-6)


def test_ttrv_config_votes_with_all_samples_and_trains_on_half(tmp_path):
  c = load_config("ttrv")
  assert (c.sampling.n, c.hooks.majority_vote.n_train) == (32, 16)
  history, _, _ = _run(tmp_path, "ttrv", byte_parity_reward, **{
      "sampling.n": 4,
      "hooks.majority_vote": ml_collections.ConfigDict(dict(mode="ttrv", n_train=2))})
  assert np.all(_values(history, "ttrv/train_frac") == 0.5)
  _assert_fraction(history, "ttrv/entropy_mean")
  np.testing.assert_allclose(_values(history, "reward/mean"),
                             _values(history, "majority/reward_mean"), atol=1e-6)


def test_co_reward_config_doubles_the_groups(tmp_path):
  """The tiny model rarely finishes a rephrasing within 8 tokens: those pairs fall back to a copy
  of the question. 2 x 4 prompts x 2 samples = 16 rows per batch."""
  history, _, c = _run(tmp_path, "co_reward", byte_parity_reward, **{
      "hooks.co_reward": ml_collections.ConfigDict(dict(max_new_tokens=8))})
  assert c.train.prompts_per_step == 4
  for key in ("co_reward/agreement_rate", "co_reward/rephrase_generated_frac",
              "co_reward/rephrase_failed_frac", "co_reward/true_accuracy"):
    _assert_fraction(history, key)
  gen, failed = (_values(history, "co_reward/rephrase_generated_frac"),
                 _values(history, "co_reward/rephrase_failed_frac"))
  np.testing.assert_allclose(gen + failed, 1.0)
  lengths = _values(history, "completion/mean_length")
  tokens = _values(history, "rollout/tokens")
  np.testing.assert_allclose(tokens, lengths * 16, rtol=1e-5)


def _trainer_has_sr_logp() -> bool:
  from jaxrl_llm.training import forward
  return "sr_logp" in getattr(forward, "FORWARD_REQUIRES", ())


@pytest.mark.xfail(not _trainer_has_sr_logp(), strict=True,
                   reason="the trainer does not yet produce ctx.extras['sr_logp'] "
                          "(training/forward.py), which LaSeR requires")
def test_laser_config_learns_a_self_reward_and_integrates_it_after_warmup(tmp_path):
  """`train/loss/sr` > 0 (the MSE term through the trainer's differentiable sr_logp);
  `laser/integrated` (rollout phase) turns on once ctx.step reaches the warm-up: steps 0, 2, 4
  at the three rollouts (one minibatch, mu = 2) with warm-up 2. Truncated rows are masked out of
  the loss, and the random model rarely samples its stop token within 8 tokens: 40 of the 259
  byte-tokenizer ids stop a row here, so most rows finish (none finishing in a batch of 8 has
  probability (1 − 0.154)^64 ≈ 2e-5)."""
  c = load_config("laser")
  assert c.objective.sr_token == 16 and c.train.num_minibatches == 1
  history, _, _ = _run(tmp_path, "laser", byte_parity_reward, **{
      "objective.warmup_steps": 2, "sampling.stop_token_ids": tuple(range(60, 100))})
  assert np.all(_values(history, "train/loss/sr") > 0.0)
  assert np.all(np.isfinite(_values(history, "train/laser/sr_mse")))
  _assert_fraction(history, "train/laser/sr_accuracy")
  assert _values(history, "laser/integrated").tolist() == [0.0, 1.0, 1.0]


# --- the real SmolLM2 rephrases -------------------------------------------------------------------

@pytest.mark.slow
def test_co_reward_with_smollm2_rephrasings_end_to_end(tmp_path):
  """SmolLM2-135M-Instruct writes the rephrasings (greedy) and is trained on the pairs for 3
  iterations: 2 questions x 2 samples, short completions. A 135M model mostly answers the
  question instead of rewriting it; the number check then falls back to copies (a measured
  outcome, printed), so the test asserts that every question went through the generation pass
  and was either rephrased or copied."""
  model, tokenizer = models.from_pretrained("smollm2-135m-instruct")
  c = _tiny_of("co_reward")
  c.model.random_init = False
  c.train.num_steps = 3
  c.train.prompts_per_step = 2
  c.ckpt.every_steps = 3
  c.log.tensorboard = False
  c.hooks.co_reward.max_new_tokens = 96
  c.sampling.n = 2
  t0 = time.perf_counter()
  history, _ = loop.train_and_evaluate(c, str(tmp_path / "run"), model=model,
                                       tokenizer=tokenizer)
  assert [r["step"] for r in history] == [1, 2, 3]
  generated = _values(history, "co_reward/rephrase_generated_frac")
  failed = _values(history, "co_reward/rephrase_failed_frac")
  assert np.all(_values(history, "co_reward/rephrase_attempted_frac") == 1.0)
  np.testing.assert_allclose(generated + failed, 1.0)
  for r in history:
    assert np.isfinite(r["train/loss"]) and 0.0 <= r["co_reward/agreement_rate"] <= 1.0
  print(f"co_reward with SmolLM2: {time.perf_counter() - t0:.1f}s, accepted rephrasings "
        f"{generated}")
