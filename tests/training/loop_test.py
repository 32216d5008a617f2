"""The configs build every subsystem, and the tiny config runs the RL loop end to end."""
import importlib.util
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from jaxrl_llm import parallel, sampling, training
from jaxrl_llm.objectives import presets
from jaxrl_llm.training import loop, optim
from tests.training.helpers import byte_mean_reward, byte_tokenizer

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"


def _config(name: str, arg=None):
  spec = importlib.util.spec_from_file_location(f"config_{name}", CONFIGS / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def test_base_and_tiny_build_every_subsystem():
  for name in ("base", "tiny"):
    c = _config(name)
    assert set(c.keys()) >= {"model", "sampling", "objective", "optim", "mesh", "data", "reward",
                             "train", "ckpt", "log"}
    presets.build(c.objective)
    optim.from_config(c.optim)
    sampling.SamplingConfig(**c.sampling.to_dict())
    parallel.make_mesh(c.mesh)
    assert c.reward.name in loop.REWARD_FNS


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


def byte_parity_reward(completion: str, example) -> float:
  """1 when the completion's byte sum is even: a group of 2 is uniform about half the time."""
  del example
  return float(sum(completion.encode("utf-8", "replace")) % 2 == 0)


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
    comps, scores, examples, metrics = loop._sample_and_score(
        model, tokenizer, source, runner, model.params(), mesh, scfg, 4, 6, jax.random.key(0))
  g = scfg.n
  assert comps.tokens.shape[0] == scores.shape[0] == len(examples) == 4 * g
  informative = training.informative_groups(scores, g)
  kept = int(round(metrics["sampling/kept_frac"] * 4))
  assert informative[:kept].all() and kept >= 1 and metrics["sampling/rounds"] > 1
  prompts = np.asarray(comps.prompt_tokens).reshape(4, g, -1)
  assert (prompts == prompts[:, :1]).all()                     # rows stay whole groups
  assert [e.answer for e in examples[::g]] == [e.answer for e in examples[1::g]]
