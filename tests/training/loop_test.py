"""The configs build every subsystem, and the tiny config runs the RL loop end to end."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxrl_llm import parallel, sampling, training
from jaxrl_llm.objectives import presets
from jaxrl_llm.training import loop, optim
from tests.training.helpers import byte_mean_reward, byte_parity_reward, byte_tokenizer

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"


def _config(name: str, arg=None):
  return training.load_config(CONFIGS / f"{name}.py", arg)


SEED_CONFIGS = ["grpo_llds", "gspo_llds", "dapo_nsr", "gspo_nsr", "owpo", "dapo_lowprob",
                "dapo_divergence", "unlikeliness", "fipo", "grpo_thr"]    # one per seed preset
# Issue 8's configs: config name -> the preset its objective uses (methods that act through
# rollout hooks run on a baseline preset).
SEED_II_CONFIGS: dict[str, str] = {}
SEED_II_CONFIGS.update({"ppr": "ppr", "posterior_grpo": "posterior_grpo"})   # B6, B7
SEED_II_CONFIGS.update({"pav": "pav", "critique_grpo": "critique_grpo"})   # B11, B12
SEED_II_CONFIGS.update({"knapsack": "grpo"})   # B3: GRPO with clip-higher and adv_clip = 5
SEED_II_CONFIGS.update({"mm_upt": "grpo", "ttrv": "grpo", "co_reward": "grpo",
                        "laser": "laser"})   # B8, B9, B10
SEED_II_CONFIGS.update({"grpo_attention": "grpo_attention"})   # B13
SEED_II_CONFIGS.update({"stratified_grpo": "stratified_grpo", "copo": "copo",
                        "d3s": "d3s"})   # B2, B4, B5
CONFIG_NAMES = ["base", "tiny", "grpo", "dapo", "dr_grpo", "gspo", "custom", *SEED_CONFIGS,
                *SEED_II_CONFIGS]


def test_every_config_file_is_built_below():
  assert sorted(p.stem for p in CONFIGS.glob("*.py")) == sorted(CONFIG_NAMES)


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_configs_build_every_subsystem(name):
  c = _config(name, "smollm2")
  assert set(c.keys()) >= {"model", "sampling", "objective", "optim", "mesh", "data", "reward",
                           "train", "eval", "ckpt", "log"}
  assert c.objective.name == {"base": "grpo", "tiny": "grpo", **SEED_II_CONFIGS}.get(name, name)
  c.mesh.num_devices = 1    # as on a plain CPU (the tests see 8 simulated devices)
  loop.check_config(c)
  presets.build(c.objective)
  optim.from_config(c.optim)
  sampling.SamplingConfig(**c.sampling.to_dict())
  assert c.reward.name in loop.REWARD_FNS
  if "max_len" in c.objective:    # DAPO-based: the overlong window follows the completion budget
    c.sampling.max_new_tokens = 64
    assert (c.objective.max_len, c.objective.cache_len) == (64, 16)
    c.objective.max_len = 100      # a one-way tie: the budget does not follow max_len
    assert c.sampling.max_new_tokens == 64
    assert c.train.max_sampling_rounds > 1


def test_config_arg_picks_the_model():
  assert _config("grpo", "smollm2").model.source == "smollm2-135m-instruct"
  assert _config("grpo", "qwen2.5-0.5b").model.source == "Qwen/Qwen2.5-0.5B-Instruct"
  assert _config("gspo", "/models/my_folder").model.source == "/models/my_folder"
  with pytest.raises(ValueError, match="unknown model 'gpt9'.*smollm2"):
    _config("grpo", "gpt9")


@pytest.mark.parametrize("override, message", [
    ({"objective.name": "grpoo"}, "unknown preset 'grpoo'; did you mean 'grpo'"),
    ({"objective.eps_hgh": 0.3}, "unknown key 'eps_hgh'.*eps_high"),
    ({"reward.name": "math"}, "unknown reward.name 'math'"),
    ({"train.remat": "dot"}, "train.remat: unknown remat policy 'dot'; valid: none, full, dots"),
    ({"reward.extract": ("answer_tagg",)}, "Did you mean 'answer_tag'"),
    ({"mesh.num_devices": -1, "mesh.fsdp": 3}, "fsdp=3 x tensor=1 = 3 devices, but 8 are"),
    ({"mesh.num_devices": 16}, "num_devices=16, but 8 devices"),
    ({"train.prompts_per_step": 3, "train.num_minibatches": 2}, "does not split into"),
    ({"train.num_micro_batches": 3}, "micro"),
    ({"data.eval_size": 0, "eval.every_steps": 5}, "needs held-out prompts"),
])
def test_bad_configs_fail_at_start_naming_the_key(override, message):
  c = _config("tiny")
  for path, value in override.items():
    section, key = path.split(".")
    c[section][key] = value
  with pytest.raises(ValueError, match=message):
    loop.check_config(c)


def test_unwritable_workdir_fails_at_start(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  with pytest.raises(ValueError, match="is not writable.*--workdir"):
    loop.check_config(_config("tiny"), str(blocker / "run"))


def _tiny_config(num_steps):
  c = _config("tiny")
  tokenizer = byte_tokenizer()
  c.model.random_config.vocab_size = len(tokenizer)
  c.train.num_steps = num_steps
  c.ckpt.every_steps = 1
  return c, None, tokenizer


def _tiny(tmp_path, name, num_steps):
  c, _, tokenizer = _tiny_config(num_steps)
  return c, str(tmp_path / name), tokenizer


def _same_run(a, b):
  for ra, rb in zip(a, b):
    for key in ra:
      if not key.startswith("time/") and key != "tokens_per_s":
        assert ra[key] == rb[key], key


def test_tiny_run_writes_metrics_and_resumes_exactly_after_sigkill(tmp_path):
  """2 iterations straight vs. killed during iteration 2 and resumed: the same iteration 2."""
  c, workdir, tokenizer = _tiny(tmp_path, "straight", 2)
  history, state = loop.train_and_evaluate(c, workdir, tokenizer=tokenizer,
                                           reward=byte_mean_reward)
  lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
  assert len(history) == len(lines) == 2
  assert json.loads(lines[-1]) == history[-1]
  last = history[-1]
  assert last["train_steps"] == 2 * c.train.num_updates * c.train.num_minibatches
  for key in ("reward/mean", "train/loss", "train/grad_norm", "completion/mean_length",
              "time/sample", "time/train"):
    assert np.isfinite(last[key]), key
  assert last["train/skipped"] == 0.0 and last["train/grad_norm"] > 0.0
  initial, _ = loop.load_model(c.model, tokenizer)
  assert not np.allclose(np.asarray(state.params["embed"]),
                         np.asarray(initial.params()["embed"]))   # it really trained
  assert any((pathlib.Path(workdir) / "tb").iterdir())           # TensorBoard events
  assert "reward" in loop._progress(last) and "done: iterations 1..2" in loop._summary(history)
  assert sorted(int(p.name) for p in (pathlib.Path(workdir) / "ckpt").iterdir()
                if p.name.isdigit()) == [1, 2]

  # The same run in a subprocess, SIGKILLed during iteration 2 once checkpoint 1 is on disk,
  # then resumed here: it continues with iteration 2 exactly as the uninterrupted run did.
  workdir2 = str(tmp_path / "killed")
  proc = subprocess.Popen([sys.executable, "-c", _KILLED_RUN.format(
      root=str(ROOT), workdir=workdir2)], cwd=str(ROOT), stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  checkpoint_1 = pathlib.Path(workdir2) / "ckpt" / "1"
  deadline = time.time() + 240
  while not (checkpoint_1.is_dir() and proc.poll() is None):
    assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
    assert time.time() < deadline, "the subprocess wrote no checkpoint"
    time.sleep(0.2)
  time.sleep(0.5)
  proc.send_signal(signal.SIGKILL)
  assert proc.wait() == -signal.SIGKILL
  assert len((pathlib.Path(workdir2) / "metrics.jsonl").read_text().splitlines()) == 1
  c2, _, _ = _tiny(tmp_path, "killed", 2)
  resumed, state2 = loop.train_and_evaluate(c2, workdir2, tokenizer=tokenizer,
                                            reward=byte_mean_reward)
  assert [r["step"] for r in resumed] == [2]
  _same_run(resumed, history[1:])
  for x, y in zip(jax.tree.leaves(state2.params), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert int(state2.step) == int(state.step)


_KILLED_RUN = """
import functools, sys
sys.path.insert(0, {root!r})
from jaxrl_llm.training import loop
from tests.training import helpers, loop_test
c, workdir, tokenizer = loop_test._tiny_config(2)
reward = functools.partial(helpers.byte_mean_reward_hanging_after,
                           marker={workdir!r} + "/metrics.jsonl")
loop.train_and_evaluate(c, {workdir!r}, tokenizer=tokenizer, reward=reward)
"""


def test_dynamic_sampling_refills_with_informative_groups():
  from jaxrl_llm import data, rewards
  c = _config("tiny")
  tokenizer = byte_tokenizer()
  c.model.random_config.vocab_size = len(tokenizer)
  model, _ = loop.load_model(c.model, tokenizer)
  scfg = sampling.SamplingConfig(**c.sampling.to_dict())
  source = data.TokenizedSource(data.make_source(c.data.source), tokenizer, 256)
  mesh = parallel.make_mesh(c.mesh)
  with rewards.RewardRunner(byte_parity_reward, num_workers=0) as runner:
    host = loop._sample_and_score(
        model, tokenizer, source, runner, model.params(), mesh, scfg, 4, 6, jax.random.key(0))
  comps, scores, examples, metrics = host.completions, host.rewards, host.examples, host.metrics
  g = scfg.n
  assert host.group_size == g and host.num_groups == 4
  assert comps.tokens.shape[0] == scores.shape[0] == len(examples) == 4 * g
  informative = training.informative_groups(scores, g)
  kept = int(round(metrics["sampling/kept_frac"] * 4))
  assert informative[:kept].all() and kept >= 1 and metrics["sampling/rounds"] > 1
  prompts = np.asarray(comps.prompt_tokens).reshape(4, g, -1)
  assert (prompts == prompts[:, :1]).all()                     # rows stay whole groups
  assert [e.answer for e in examples[::g]] == [e.answer for e in examples[1::g]]


def test_periodic_eval_and_hf_export(tmp_path):
  """eval.every_steps=1: greedy accuracy before training and after each iteration, equal to
  `eval.evaluate` run separately on the held-out split with the initial and the final params;
  ckpt.export_hf: the final policy as an HF folder."""
  from jaxrl_llm import data, eval as ev, rewards
  c, _, tokenizer = _tiny_config(2)
  c.eval.every_steps = 1
  c.ckpt.every_steps = 10
  c.ckpt.export_hf = True
  history, state = loop.train_and_evaluate(c, str(tmp_path / "run"), tokenizer=tokenizer,
                                           reward=byte_parity_reward)
  # The exported HF folder holds the final policy (and loads with its tokenizer).
  from jaxrl_llm import models
  exported, exported_tokenizer = models.from_pretrained(str(tmp_path / "run" / "hf"))
  for x, y in zip(jax.tree.leaves(exported.params()), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert exported_tokenizer is not None and len(exported_tokenizer) == len(tokenizer)
  assert [r["step"] for r in history] == [0, 1, 2]
  assert all("eval/accuracy_greedy" in r for r in history)
  assert "reward/mean" not in history[0] and "time/eval" in history[-1]
  initial, _ = loop.load_model(c.model, tokenizer)

  def separately(params):
    source = data.make_source(c.data.source, split="eval", eval_size=c.data.eval_size,
                              shuffle=False, num_epochs=1)
    result = ev.evaluate(initial, tokenizer, source, byte_parity_reward,
                         num_prompts=c.eval.num_prompts, n=0,
                         max_new_tokens=c.sampling.max_new_tokens,
                         max_prompt_tokens=c.data.max_prompt_tokens,
                         batch_size=c.eval.batch_size,
                         answer_fn=rewards.AnswerExtractor(tuple(c.reward.extract)),
                         num_workers=0, progress=False, params=params)
    return result
  before, after = separately(initial.params()), separately(state.params)
  assert history[0]["eval/accuracy_greedy"] == before.metrics["accuracy/greedy"]
  assert history[-1]["eval/accuracy_greedy"] == after.metrics["accuracy/greedy"]
  assert history[-1]["eval/length_mean"] == after.metrics["length/mean"]
  # Held out: none of the evaluated questions is among the training split's.
  train = data.make_source(c.data.source, split="train", eval_size=c.data.eval_size,
                           num_epochs=1)
  train_questions = {e.question for e in train}
  assert not train_questions & {r["question"] for r in after.records}


def test_share_prompts_off_runs_whole_rows_with_the_same_result(tmp_path, monkeypatch):
  """train.share_prompts: the loop's batches run each group's prompt once (the shared forward is
  traced), or, with False, whole rows (it is not); one iteration trains to the same parameters."""
  from jaxrl_llm import models
  traced = []
  shared_forward = models.forward_shared_prompts

  def spy(*args, **kwargs):
    traced.append(1)
    return shared_forward(*args, **kwargs)
  monkeypatch.setattr(models, "forward_shared_prompts", spy)
  results = {}
  for share in (True, False):
    c, workdir, tokenizer = _tiny(tmp_path, f"share_{share}", 1)
    c.train.share_prompts = share
    c.eval.every_steps, c.eval.at_start = 0, False
    traced.clear()
    history, state = loop.train_and_evaluate(c, workdir, tokenizer=tokenizer,
                                             reward=byte_mean_reward)
    results[share] = (history[-1], state.params, bool(traced))
  (h_on, p_on, traced_on), (h_off, p_off, traced_off) = results[True], results[False]
  assert traced_on and not traced_off
  np.testing.assert_allclose(h_on["train/loss"], h_off["train/loss"], rtol=1e-5, atol=1e-7)
  for x, y in zip(jax.tree.leaves(p_on), jax.tree.leaves(p_off)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5)
