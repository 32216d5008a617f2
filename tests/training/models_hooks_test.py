"""The hooks that call a model (PAV's prover rollouts, Critique-GRPO's critiques and refinements):
step spans, one batched sampler call, the row replacement, and 3-iteration runs of their configs.

Mechanics run the real sampler of the tiny random model (byte tokenizer: one token per byte, so
step spans are checked against character positions). The `slow` tests use the real SmolLM2.
"""
import dataclasses

import jax
import ml_collections
import numpy as np
import pytest

from jaxrl_llm import data, objectives as ob, parallel, sampling
from jaxrl_llm.training import hooks as hooks_lib
from jaxrl_llm.training import hooks_models, loop
from tests.training.helpers import (
    byte_parity_reward, byte_tokenizer, load_config, tiny_random_model)
from tests.training.seed_e2e_test import _run, _values


@dataclasses.dataclass
class RecordingEnv(hooks_lib.HookEnv):
  """The real `HookEnv`, recording every sampler call (prompts, n, overrides, outputs)."""
  calls: list = dataclasses.field(default_factory=list)

  def generate_with(self, model, params, prompt_tokens, n, key, **overrides):
    comps, texts = super().generate_with(model, params, prompt_tokens, n, key, **overrides)
    self.calls.append(dict(prompts=[list(p) for p in prompt_tokens], n=n, overrides=overrides,
                           comps=comps, texts=texts, model=model))
    return comps, texts


def _scorer(reward):
  return lambda texts, examples: np.asarray([reward(t, e) for t, e in zip(texts, examples)],
                                            np.float32)


def _tiny_model():
  return tiny_random_model()


def _side_model(tokenizer):
  """A second random model (1 layer) with the policy's tokenizer: what `prover_source` /
  `critic_source` would load with `models.from_pretrained`."""
  c = load_config("tiny")
  c.model.random_config.vocab_size = len(tokenizer)
  c.model.random_config.num_layers = 1
  return loop.load_model(c.model, tokenizer)[0]


def _env(reward=byte_parity_reward, model=None, tokenizer=None, max_new_tokens=8, seed=0):
  if model is None:
    model, tokenizer, c = _tiny_model()
    mesh = parallel.make_mesh(c.mesh)
  else:
    mesh = None
  scfg = sampling.SamplingConfig(max_new_tokens=max_new_tokens, n=2, decode_chunk=8)
  return RecordingEnv(model=model, tokenizer=tokenizer, params=model.params(), mesh=mesh,
                      sampling_config=scfg, key=jax.random.key(seed), score_fn=_scorer(reward),
                      answer_fn=lambda text: text[-1:] or None)


def _example(question, answer):
  return data.Example(prompt=[{"role": "user", "content": question}], answer=answer,
                      metadata={})


def _host_batch(env, questions, answers, completions):
  """A host batch of hand-written completions: `completions[k]` are group k's texts (byte tokens +
  EOS), prompts encoded with the chat template, rewards from the env's verifier."""
  tok = env.tokenizer
  prompts = [data.EncodedPrompt(_example(q, a), env.encode_chat(q))
             for q, a in zip(questions, answers)]
  rows = [(k, t) for k, texts in enumerate(completions) for t in texts]
  ids = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for _, t in rows]
  width = max(len(i) for i in ids) + 2
  lp = max(len(p.tokens) for p in prompts)
  b = len(rows)
  tokens = np.zeros((b, width), np.int32)
  mask = np.zeros((b, width), np.int32)
  ptoks = np.zeros((b, lp), np.int32)
  pmask = np.zeros((b, lp), np.int32)
  for i, ((k, _), row) in enumerate(zip(rows, ids)):
    tokens[i, :len(row)], mask[i, :len(row)] = row, 1
    p = prompts[k].tokens
    ptoks[i, lp - len(p):], pmask[i, lp - len(p):] = p, 1
  comps = sampling.Completions(
      tokens=tokens, mask=mask, logp=np.where(mask > 0, -1.0, 0.0).astype(np.float32),
      lengths=mask.sum(1).astype(np.int32), truncated=np.zeros(b, bool), prompt_tokens=ptoks,
      prompt_mask=pmask)
  texts = [t for _, t in rows]
  examples = [prompts[k].example for k, _ in rows]
  return hooks_lib.HostBatch(completions=comps, rewards=env.score(texts, examples),
                             examples=examples, texts=texts,
                             group_ids=np.asarray([k for k, _ in rows], np.int32),
                             prompts=prompts)


# --------------------------------------------------------------------------------------------------
# Steps


def test_step_starts_skip_empty_steps_and_merge_delimiter_runs():
  assert hooks_models.step_starts("a\nb\n\n\nc\n") == [2, 6]
  assert hooks_models.step_starts("\n\na\nb") == [4]
  assert hooks_models.step_starts("a\nb\n\nc", "\n\n") == [5]
  assert hooks_models.step_starts("no steps") == []
  with pytest.raises(ValueError, match="non-empty"):
    hooks_models.step_starts("a", "")


@pytest.mark.parametrize("delimiter", ["\n", "\n\n"])
def test_token_steps_are_exact_character_spans(delimiter):
  """Byte tokens: token t covers byte t, so step h's tokens decode to exactly text[s_h:s_{h+1}];
  the EOS (no text) joins the last step. A 2-byte character (é) splits over two tokens."""
  tok = byte_tokenizer()
  text = "Add 2 and 3.\nThen é\n\nSum: 5\n\n\nAnswer 5\n"
  ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
  step_id, cuts = hooks_models.token_steps(tok, ids, delimiter)
  starts = hooks_models.step_starts(text, delimiter)
  byte_starts = [len(text[:s].encode()) for s in starts]
  assert cuts == byte_starts and len(step_id) == len(ids)
  assert np.all(np.diff(step_id) >= 0) and step_id[-1] == len(starts)
  bounds = [0] + starts + [len(text)]
  for h in range(len(starts) + 1):
    span = [i for i, s in zip(ids, step_id) if s == h]
    assert tok.decode(span, skip_special_tokens=True) == text[bounds[h]:bounds[h + 1]]
  assert hooks_models.token_steps(tok, [], delimiter)[1] == []


def test_token_steps_keep_a_token_across_the_delimiter_in_the_earlier_step():
  """A tokenizer whose tokens merge "\\n" with the next word: the merged token ends step 0's text
  and starts step 1's, and stays in step 0 (steps are whole tokens)."""
  class Merged:
    pieces = {1: "ab", 2: ".\nc", 3: "d", 4: "\n", 5: "e"}

    def decode(self, ids, skip_special_tokens=True):
      return "".join(self.pieces[i] for i in ids)
  step_id, cuts = hooks_models.token_steps(Merged(), [1, 2, 3, 4, 5])
  assert cuts == [2, 4] and step_id.tolist() == [0, 0, 1, 1, 2]


# --------------------------------------------------------------------------------------------------
# pav_prover on the tiny model


def test_pav_prover_one_sampler_call_with_every_prefix():
  env = _env()
  batch = _host_batch(env, ["What is 2+3?", "What is 4+4?"], ["5", "8"], [
      ["Add 2 and 3.\nThe sum is 5.\nAnswer: 5", "It is 6"],
      ["Four plus four.\nEight.\nSo 8.\nDone\nAnswer: 8", "a\n\nb"]])
  hook = hooks_models.PavProver(n_mc=3, max_steps=2, bok_k=2, seed=1)
  out = hook.process(batch, env)
  assert len(env.calls) == 1 and env.calls[0]["n"] == 3
  c = batch.completions
  cuts = []
  for i in range(batch.batch_size):
    ids = c.tokens[i, :c.lengths[i]].tolist()
    full_id, full_cuts = hooks_models.token_steps(env.tokenizer, ids)
    sid = out.extras["step_id"][i]
    kept = [int(k) for k in np.flatnonzero(np.diff(sid[:len(ids)])) + 1]
    assert set(kept) <= set(full_cuts) and len(kept) == min(len(full_cuts), 2)
    if len(full_cuts) <= 2:
      np.testing.assert_array_equal(sid[:len(ids)], full_id)
    assert np.all(sid[len(ids):] == -1)
    cuts.append(kept)
  assert [len(k) for k in cuts] == [2, 0, 2, 1]      # row 2 has 4 boundaries: 2 kept at random
  prompt = [p.tokens for p in batch.prompts]
  want = prompt + [prompt[batch.group_ids[i]] + c.tokens[i, :k].tolist()
                   for i in range(4) for k in cuts[i]]
  assert env.calls[0]["prompts"] == want
  # Values: BoK_2 of the mean verifier score of each prefix's 3 continuations; the end = reward.
  call = env.calls[0]
  heads = [[]] * 2 + [c.tokens[i, :k].tolist() for i in range(4) for k in cuts[i]]
  owners = [0, 2] + [i for i in range(4) for _ in cuts[i]]
  full = [heads[j // 3] + call["comps"].tokens[j, :call["comps"].lengths[j]].tolist()
          for j in range(len(want) * 3)]
  texts = env.tokenizer.batch_decode(full, skip_special_tokens=True)
  scores = env.score(texts, [batch.examples[owners[j // 3]] for j in range(len(full))])
  values = ob.bok_value(scores.reshape(-1, 3).mean(1), 2)
  sv = out.extras["step_value"]
  assert sv.shape == (4, 4)
  j = 2
  for i in range(4):
    h = len(cuts[i]) + 1
    np.testing.assert_allclose(sv[i, 0], values[batch.group_ids[i]], rtol=1e-6)
    np.testing.assert_allclose(sv[i, 1:h], values[j:j + h - 1], rtol=1e-6)
    j += h - 1
    assert sv[i, h] == batch.rewards[i] and np.all(sv[i, h + 1:] == 0)
  assert out.metrics["pav/mc_rollouts"] == len(want) * 3
  assert out.metrics["pav/steps_per_row"] == np.mean([len(k) + 1 for k in cuts])
  assert 0.0 <= out.metrics["pav/value_mean"] <= 1.0
  assert out.metrics["pav/progress_abs_mean"] >= 0.0
  # Into the loss: step_id fits the completion width, the advantage is finite and telescopes.
  rb = hooks_lib.to_rollout_batch(out)
  ctx = rb.ctx.replace(phase="rollout")
  tx = ob.pav_advantage(1.0)
  adv = np.asarray(tx.update(ctx, tx.init(ctx))[0].advantages)
  assert adv.shape == c.tokens.shape and np.all(np.isfinite(adv))


def test_pav_prover_with_another_model_uses_generate_with(monkeypatch):
  """`prover_source` loads a model with `models.from_pretrained` (here: a second random model
  standing in for it, same tokenizer) and samples the continuations with it."""
  model, tokenizer, c = _tiny_model()
  prover = _side_model(tokenizer)
  monkeypatch.setitem(hooks_models._SIDE_MODELS, "my-prover", (prover, tokenizer))
  env = _env()
  batch = _host_batch(env, ["Q?"], ["1"], [["x\ny", "z"]])
  out = hooks_models.PavProver(n_mc=2, prover_source="my-prover").process(batch, env)
  assert len(env.calls) == 1 and env.calls[0]["model"] is prover
  assert out.extras["step_value"].shape == (2, 10)
  other = byte_tokenizer()
  other.add_tokens(["<extra>"])
  monkeypatch.setitem(hooks_models._SIDE_MODELS, "bad-prover", (prover, other))
  with pytest.raises(ValueError, match="another tokenizer"):
    hooks_models.PavProver(prover_source="bad-prover").process(batch, env)


def test_pav_config_checks():
  with pytest.raises(ValueError, match="n_mc >= 1"):
    hooks_models.PavProver(n_mc=0)
  with pytest.raises(ValueError, match="integer K >= 1"):
    hooks_models.PavProver(bok_k=0)
  needs = ob.pav_advantage().requires
  with pytest.raises(ValueError, match="step_id.*config.hooks.pav_prover"):
    hooks_lib.check_requirements(needs, [])
  hooks_lib.check_requirements(needs, hooks_lib.build_hooks({"pav_prover": {}}))


# --------------------------------------------------------------------------------------------------
# critique on the tiny model


def _critique_batch(env):
  return _host_batch(env, ["What is 2+3?", "What is 4+4?"], ["5", "8"], [
      ["The answer is 5", "It is 6", "Maybe 7"], ["Eight", "8", "16"]])


def test_critique_replaces_each_groups_last_row_with_its_selected_refinement():
  env = _env()
  batch = _critique_batch(env)
  before = dataclasses.replace(batch, completions=jax.tree.map(np.copy, batch.completions),
                               texts=list(batch.texts), rewards=batch.rewards.copy())
  out = hooks_models.Critique().process(batch, env)
  assert len(env.calls) == 1                          # simple_gt: only the refinement call
  call = env.calls[0]
  assert call["n"] == 1 and len(call["prompts"]) == 4     # n − 1 = 2 initial rows x 2 groups
  initial = [0, 1, 3, 4]
  for j, i in enumerate(initial):
    text = env.tokenizer.decode(call["prompts"][j])
    verdict = "correct" if before.rewards[i] >= 1.0 else "incorrect"
    assert before.examples[i].question in text and before.texts[i] in text
    assert (f"The generated solution is {verdict}. The ground truth answer is "
            f"{before.examples[i].answer}.") in text
  # Shapes, groups and prompts stay; the last row of each group is the selected refinement.
  assert out.batch_size == 6 and out.group_ids.tolist() == [0, 0, 0, 1, 1, 1]
  assert out.extras["offpolicy"].tolist() == [False, False, True, False, False, True]
  c0, c1 = before.completions, out.completions
  np.testing.assert_array_equal(c1.prompt_tokens, c0.prompt_tokens)
  np.testing.assert_array_equal(c1.prompt_mask, c0.prompt_mask)
  scores = env.score(call["texts"], [before.examples[i] for i in initial])
  width = c0.tokens.shape[1]
  for g, (t, cands) in enumerate([(2, [0, 1]), (5, [2, 3])]):
    j = cands[hooks_models.select_refinement(scores[cands])]
    r = call["comps"]
    n = min(int(r.lengths[j]), width)
    np.testing.assert_array_equal(c1.tokens[t, :n], r.tokens[j, :n])
    assert c1.lengths[t] == n and c1.mask[t].sum() == n and c1.mask[t, :n].all()
    assert bool(c1.truncated[t]) == bool(r.truncated[j] or r.lengths[j] > width)
    assert out.rewards[t] == scores[j] and out.texts[t] == call["texts"][j]
  for i in initial:
    np.testing.assert_array_equal(c1.tokens[i], c0.tokens[i])
    assert out.rewards[i] == before.rewards[i] and out.texts[i] == before.texts[i]
  assert out.metrics["critique/count"] == 4.0 and out.metrics["critique/offpolicy_rows"] == 2.0
  assert out.metrics["critique/refined_correct_frac"] == float(np.mean(scores >= 1.0))
  rb = hooks_lib.to_rollout_batch(out)
  assert rb.ctx.group_size == 3
  np.testing.assert_array_equal(np.asarray(rb.ctx.extras["offpolicy"]), out.extras["offpolicy"])
  np.testing.assert_array_equal(np.asarray(rb.ctx.mask), c1.mask)


def test_select_refinement_takes_the_first_correct_else_the_best():
  assert hooks_models.select_refinement([0.2, 1.0, 1.0]) == 1
  assert hooks_models.select_refinement([0.2, 0.7, 0.7]) == 1
  assert hooks_models.select_refinement([0.0, 0.0]) == 0


def test_model_critiques_take_one_batched_critic_call():
  env = _env()
  batch = _critique_batch(env)
  out = hooks_models.Critique(critique_type="model", critique_max_new_tokens=6).process(batch,
                                                                                         env)
  assert len(env.calls) == 2
  critic, refine = env.calls
  assert critic["n"] == 1 and critic["overrides"] == {"max_new_tokens": 6}
  assert len(critic["prompts"]) == 4 and refine["overrides"] == {}
  assert "Reference answer: 5" in env.tokenizer.decode(critic["prompts"][0])
  for j in range(4):
    assert critic["texts"][j] in env.tokenizer.decode(refine["prompts"][j])
  assert out.extras["offpolicy"].sum() == 2


def test_critic_source_writes_the_critiques_and_the_policy_the_refinements(monkeypatch):
  model, tokenizer, _ = _tiny_model()
  critic = _side_model(tokenizer)
  monkeypatch.setitem(hooks_models._SIDE_MODELS, "my-critic", (critic, tokenizer))
  env = _env()
  hook = hooks_models.Critique(critique_type="model", critic_source="my-critic",
                               critic_sees_answer=False, critique_max_new_tokens=4)
  out = hook.process(_critique_batch(env), env)
  assert [c["model"] for c in env.calls] == [critic, model]
  assert "Reference answer" not in env.tokenizer.decode(env.calls[0]["prompts"][0])
  assert out.extras["offpolicy"].sum() == 2


def test_failed_only_refinement_keeps_groups_that_all_pass():
  env = _env(reward=lambda text, example: 1.0)
  batch = _critique_batch(env)
  tokens = np.copy(batch.completions.tokens)
  out = hooks_models.Critique(refine="failed").process(batch, env)
  assert env.calls == [] and not out.extras["offpolicy"].any()
  np.testing.assert_array_equal(out.completions.tokens, tokens)
  assert out.metrics["critique/count"] == 0.0


def test_critique_needs_two_rows_per_group_and_valid_options():
  env = _env()
  batch = _host_batch(env, ["Q?"], ["1"], [["only one"]])
  with pytest.raises(ValueError, match="at least 2 rows per group.*sampling.n >= 2"):
    hooks_models.Critique().process(batch, env)
  with pytest.raises(ValueError, match="unknown critique_type 'gpt'"):
    hooks_models.Critique(critique_type="gpt")
  with pytest.raises(ValueError, match="unknown refine mode"):
    hooks_models.Critique(refine="some")
  with pytest.raises(ValueError, match="offpolicy.*config.hooks.critique"):
    hooks_lib.check_requirements(ob.critique_surrogate().requires, [])


# --------------------------------------------------------------------------------------------------
# End to end: each config, shrunk to tiny, runs 3 iterations


def test_pav_config_trains_end_to_end(tmp_path):
  """The random model rarely writes a newline, so its completions have one step mostly: the
  hook still samples the roots (4 prompts x n_mc) every iteration and the progress of a one-step
  row is r − V̂(s_0)."""
  history, _, c = _run(tmp_path, "pav", byte_parity_reward,
                       **{"hooks.pav_prover": ml_collections.ConfigDict(dict(n_mc=2))})
  assert c.objective.name == "pav" and c.hooks.pav_prover.n_mc == 2
  assert np.all(_values(history, "pav/mc_rollouts") >= 4 * 2)
  assert np.all(_values(history, "pav/steps_per_row") >= 1.0)
  values = _values(history, "pav/value_mean")
  assert np.all((values >= 0.0) & (values <= 1.0))
  assert np.all(np.isfinite(_values(history, "pav/progress_abs_mean")))
  assert np.all(np.isfinite(_values(history, "adv/progress_abs_mean")))


def test_critique_grpo_config_trains_end_to_end(tmp_path):
  """Groups of 3 (2 initial responses + 1 refinement): every group gets a refinement, so 4 of the
  12 rows are off-policy each iteration, and the off-policy shaping is logged by the loss."""
  history, _, c = _run(tmp_path, "critique_grpo", byte_parity_reward, **{"sampling.n": 2})
  assert c.objective.name == "critique_grpo" and c.train.recompute_old_logp
  assert np.all(_values(history, "critique/offpolicy_rows") == 4.0)
  assert np.all(_values(history, "critique/count") == 4.0)
  frac = _values(history, "critique/refined_correct_frac")
  assert np.all((frac >= 0.0) & (frac <= 1.0))
  shaping = _values(history, "train/critique/shaping_mean")
  assert np.all((shaping > 0.0) & (shaping < 1.0))
  assert np.all(_values(history, "train/critique/offpolicy_frac") > 0.0)


# --------------------------------------------------------------------------------------------------
# The real SmolLM2


@pytest.fixture(scope="module")
def smollm2():
  from jaxrl_llm import models
  return models.from_pretrained("smollm2-135m-instruct")


def _smol_env(smollm2, reward, max_new_tokens=24):
  model, tokenizer = smollm2
  return _env(reward=reward, model=model, tokenizer=tokenizer, max_new_tokens=max_new_tokens)


def _contains_answer(text, example):
  return float(example.answer in text)


@pytest.mark.slow
def test_smollm2_token_steps_and_prover_rollouts(smollm2):
  """SmolLM2's tokenizer: step spans decode to the text's lines; 2 prompts of prover rollouts."""
  env = _smol_env(smollm2, _contains_answer)
  tok = env.tokenizer
  text = "Step 1: add 2 and 3.\n\nStep 2: the sum is 5.\nAnswer: 5"
  ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
  step_id, cuts = hooks_models.token_steps(tok, ids)
  assert len(cuts) == 2
  spans = [tok.decode([i for i, s in zip(ids, step_id) if s == h], skip_special_tokens=True)
           for h in range(3)]
  assert spans == ["Step 1: add 2 and 3.\n\n", "Step 2: the sum is 5.\n", "Answer: 5"]
  batch = _host_batch(env, ["What is 2 + 3? End with 'Answer: <n>'.", "What is 4 + 4?"],
                      ["5", "8"], [[text, "The answer is 6."], ["4 + 4 = 8.\nAnswer: 8", "9"]])
  out = hooks_models.PavProver(n_mc=2, bok_k=1).process(batch, env)
  assert len(env.calls) == 1 and len(env.calls[0]["prompts"]) == 2 + 2 + 1
  sv = out.extras["step_value"]
  assert sv[0, 3] == 1.0 and sv[1, 1] == 0.0           # the ends are the rows' own rewards
  assert all(np.isfinite(v) for v in out.metrics.values())
  print("SmolLM2 prover continuations:", env.calls[0]["texts"][:4], "values:", sv.tolist())


@pytest.mark.slow
def test_smollm2_writes_critiques_and_refinements(smollm2):
  """The real model writes critiques (critique_type="model") and refinements for 2 prompts."""
  env = _smol_env(smollm2, _contains_answer, max_new_tokens=32)
  batch = _host_batch(env, ["What is 12 + 7?", "What is 3 * 5?"], ["19", "15"],
                      [["12 + 7 = 20", "It is 18", "19"], ["3 * 5 = 8", "15", "35"]])
  out = hooks_models.Critique(critique_type="model", critique_max_new_tokens=32).process(batch,
                                                                                         env)
  critic, refine = env.calls
  assert all(t.strip() for t in critic["texts"]) and all(t.strip() for t in refine["texts"])
  assert out.extras["offpolicy"].tolist() == [False, False, True] * 2
  print("SmolLM2 critiques:", critic["texts"], "refinements:", refine["texts"])


def _smol_run(tmp_path, name, **hooks):
  c = load_config(name, "smollm2")
  c.train.num_steps = 3
  c.train.prompts_per_step = 2
  c.train.num_minibatches = 1
  c.train.num_micro_batches = 1
  c.sampling.n = 3
  c.sampling.max_new_tokens = 24
  c.mesh.num_devices = 1
  c.reward.num_workers = 0
  c.data.eval_size = 0
  c.eval.every_steps = 0
  c.ckpt.every_steps = 3
  c.ckpt.export_hf = False
  c.log.tensorboard = False
  c.log.progress = False
  for name_, kwargs in hooks.items():
    c.hooks[name_].update(kwargs)
  history, _ = loop.train_and_evaluate(c, str(tmp_path / name))
  assert [r["step"] for r in history] == [1, 2, 3]
  assert all(np.isfinite(r["train/loss"]) for r in history)
  return history


@pytest.mark.slow
def test_smollm2_pav_end_to_end(tmp_path):
  history = _smol_run(tmp_path, "pav", pav_prover=dict(n_mc=2, max_steps=2))
  print({k: v for k, v in history[-1].items() if k.startswith("pav/")})
  assert np.all(_values(history, "pav/mc_rollouts") >= 2 * 2)


@pytest.mark.slow
def test_smollm2_critique_grpo_end_to_end(tmp_path):
  history = _smol_run(tmp_path, "critique_grpo")
  print({k: v for k, v in history[-1].items() if k.startswith("critique/")})
  assert np.all(_values(history, "critique/offpolicy_rows") == 2.0)
