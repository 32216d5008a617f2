"""Rollout hooks: the host batch, the hook registry and config checks, and hooks in the loop."""
import jax
import ml_collections
import numpy as np
import pytest

from jaxrl_llm import sampling
from jaxrl_llm.objectives import group_stats, stateless
from jaxrl_llm.training import hooks as hooks_lib
from jaxrl_llm.training import loop
from tests.training.helpers import (
    byte_mean_reward, byte_tokenizer, load_config, random_completions)


def _host(group_sizes, width=3, seed=0):
  b = int(sum(group_sizes))
  rng = np.random.default_rng(seed)
  comps = random_completions(0, b, 1, prompt_width=2, width=width, empty_row=False)
  ids = np.repeat(np.arange(len(group_sizes)), group_sizes)
  return hooks_lib.HostBatch(
      completions=comps, rewards=rng.random(b).astype(np.float32),
      examples=[f"ex{k}" for k in ids], texts=[f"t{i}" for i in range(b)], group_ids=ids,
      prompts=[f"p{k}" for k in range(len(group_sizes))],
      answers=[None if i % 4 == 3 else str(i % 2) for i in range(b)])


def test_host_batch_groups_take_and_concat():
  hb = _host([3, 1, 2])
  assert hb.num_groups == 3 and hb.group_sizes.tolist() == [3, 1, 2] and hb.group_size is None
  assert _host([2, 2]).group_size == 2
  part = hb.take(hb.group_rows(2).tolist() + hb.group_rows(0).tolist())
  assert part.group_ids.tolist() == [0, 0, 1, 1, 1] and part.prompts == ["p2", "p0"]
  assert part.examples == ["ex2", "ex2", "ex0", "ex0", "ex0"]
  np.testing.assert_array_equal(part.rewards, hb.rewards[[4, 5, 0, 1, 2]])
  both = hooks_lib.HostBatch.concat([hb, part])
  assert both.group_ids.tolist() == [0, 0, 0, 1, 2, 2, 3, 3, 4, 4, 4]
  assert both.prompts == ["p0", "p1", "p2", "p2", "p0"]


@pytest.mark.parametrize("ids", [[0, 0, 2], [1, 1], [0, 1, 0]])
def test_host_batch_rejects_non_contiguous_groups(ids):
  hb = _host([3])
  with pytest.raises(ValueError, match="non-decreasing"):
    hooks_lib.HostBatch(completions=hb.completions if len(ids) == 3 else
                        jax.tree.map(lambda x: x[:len(ids)], hb.completions),
                        rewards=np.zeros(len(ids)), examples=[0] * len(ids),
                        texts=[""] * len(ids), group_ids=ids, prompts=["p"] * 3)


def test_host_batch_rejects_extras_of_the_wrong_length():
  hb = _host([2, 2])
  hb.extras["stratum"] = np.zeros(3)
  with pytest.raises(ValueError, match="extras\\['stratum'\\].*4 rows"):
    hb.take(np.arange(4))


def test_group_local_answer_ids():
  ids = hooks_lib.group_local_ids(["7", "3", "7", None, "3", "9"], np.array([0, 0, 0, 0, 1, 1]))
  assert ids.tolist() == [0, 1, 0, -1, 0, 1]


def test_to_rollout_batch_equal_and_ragged_groups_give_the_same_group_statistics():
  """Equal groups keep `group_size`; unequal ones become explicit `group_ids`. The statistics of
  the same rows agree with a NumPy per-group computation either way."""
  for sizes in ([2, 2, 2], [3, 1, 2]):
    hb = _host(sizes)
    hb.extras["stratum"] = np.arange(hb.batch_size, dtype=np.int32)
    batch = hooks_lib.to_rollout_batch(hb)
    ctx = batch.ctx
    assert (ctx.group_size == 2) if sizes == [2, 2, 2] else ctx.group_size is None
    assert ctx.num_groups == 3
    np.testing.assert_array_equal(np.asarray(ctx.extras["stratum"]), hb.extras["stratum"])
    stats = group_stats(ctx.rewards, ctx, ddof=0)
    ref = np.concatenate([np.full(n, hb.rewards[hb.group_ids == k].mean())
                          for k, n in enumerate(sizes)])
    np.testing.assert_allclose(np.asarray(stats.mean), ref, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(stats.count), np.repeat(sizes, sizes))


def test_unknown_hooks_and_arguments_fail_with_a_suggestion():
  with pytest.raises(ValueError, match="unknown hook 'answer'.*did you mean 'answers'"):
    hooks_lib.build_hooks({"answer": {}})
  with pytest.raises(ValueError, match="unknown argument 'bogus' of hook 'answers'"):
    hooks_lib.build_hooks({"answers": {"bogus": 1}})


def test_an_objective_input_no_hook_provides_fails_naming_the_hook():
  needs = stateless(lambda ctx: ctx, requires={"answer_id"}).requires
  with pytest.raises(ValueError, match="answer_id.*config.hooks.answers"):
    hooks_lib.check_requirements(needs, [])
  hooks_lib.check_requirements(needs, hooks_lib.build_hooks({"answers": {}}))


@hooks_lib.register_hook
class _CountingHook(hooks_lib.RolloutHook):
  """A test hook: uneven sample counts, a per-row extra, and a state that counts iterations."""
  name = "test_counting"
  provides = ("stratum",)

  def __init__(self, uneven: bool = True):
    self.uneven = uneven
    self.calls = 0

  def counts(self, prompts, n, env):
    if not self.uneven:
      return None
    return [n + 1, n - 1] * (len(prompts) // 2)

  def process(self, batch, env):
    self.calls += 1
    assert env.step == self.calls - 1 and env.sampling_config.n == 2
    batch.extras["stratum"] = np.asarray(batch.group_ids % 2, np.int32)
    batch.metrics["test_counting/calls"] = float(self.calls)
    batch.metrics["test_counting/group_sizes"] = float(np.std(batch.group_sizes))
    return batch

  def state(self):
    return {"calls": self.calls}

  def restore(self, state):
    self.calls = int(state.get("calls", 0))


def _tiny(num_steps, **hooks):
  c = load_config("tiny")
  tokenizer = byte_tokenizer()
  c.model.random_config.vocab_size = len(tokenizer)
  c.train.num_steps = num_steps
  c.ckpt.every_steps = 1
  c.log.tensorboard = False
  c.hooks = ml_collections.ConfigDict(hooks)
  return c, tokenizer


def test_hooks_run_in_the_loop_and_their_state_resumes(tmp_path):
  """The answers hook and a stateful test hook run each iteration; a second call on the same
  workdir resumes the hook's state from the checkpoint (calls continue at 3, not 1)."""
  c, tokenizer = _tiny(2, answers={}, test_counting={"uneven": False})
  history, _ = loop.train_and_evaluate(c, str(tmp_path / "run"), tokenizer=tokenizer,
                                       reward=byte_mean_reward)
  assert [r["test_counting/calls"] for r in history] == [1.0, 2.0]
  assert all(0.0 <= r["answers/none_frac"] <= 1.0 for r in history)
  c.train.num_steps = 3
  more, _ = loop.train_and_evaluate(c, str(tmp_path / "run"), tokenizer=tokenizer,
                                    reward=byte_mean_reward)
  assert [r["test_counting/calls"] for r in more] == [3.0]


def test_uneven_counts_sample_groups_of_unequal_size():
  """A hook's counts give each prompt its own number of samples; rows stay group-major and the
  total stays prompts x n."""
  from jaxrl_llm import data, parallel, rewards
  c, tokenizer = _tiny(1, test_counting={})
  model, _ = loop.load_model(c.model, tokenizer)
  scfg = sampling.SamplingConfig(**c.sampling.to_dict())
  source = data.TokenizedSource(data.make_source(c.data.source), tokenizer, 256)
  hooks = hooks_lib.build_hooks(c.hooks)
  with rewards.RewardRunner(byte_mean_reward, num_workers=0) as runner:
    host = loop._sample_and_score(model, tokenizer, source, runner, model.params(),
                                  parallel.make_mesh(c.mesh), scfg, 4, 1, jax.random.key(0),
                                  hooks=hooks, env_kwargs=dict(answer_fn=str, step=0))
  assert host.group_sizes.tolist() == [3, 1, 3, 1] and host.batch_size == 8
  prompts = np.asarray(host.completions.prompt_tokens)
  for k in range(4):
    rows = host.group_rows(k)
    assert (prompts[rows] == prompts[rows[0]]).all()
    assert all(host.examples[i] is host.prompts[k].example for i in rows)
  assert host.extras["stratum"].tolist() == [0, 0, 0, 1, 0, 0, 0, 1]
  assert host.metrics["test_counting/group_sizes"] == 1.0


@hooks_lib.register_hook
class _BadCountsHook(hooks_lib.RolloutHook):
  """A test hook whose counts change the batch size."""
  name = "test_bad_counts"

  def __init__(self):
    pass

  def counts(self, prompts, n, env):
    return [n + 1] * len(prompts)


def test_counts_that_change_the_batch_size_fail_clearly():
  from jaxrl_llm import data, parallel, rewards
  c, tokenizer = _tiny(1, test_bad_counts={})
  model, _ = loop.load_model(c.model, tokenizer)
  source = data.TokenizedSource(data.make_source(c.data.source), tokenizer, 256)
  with rewards.RewardRunner(byte_mean_reward, num_workers=0) as runner:
    with pytest.raises(ValueError, match=r"counts \[3, 3, 3, 3\] must be >= 0 and sum to 8"):
      loop._sample_and_score(model, tokenizer, source, runner, model.params(),
                             parallel.make_mesh(c.mesh),
                             sampling.SamplingConfig(**c.sampling.to_dict()), 4, 1,
                             jax.random.key(0), hooks=hooks_lib.build_hooks(c.hooks))
