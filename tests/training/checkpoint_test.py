"""Checkpoints: the TrainState and extra JSON round-trip; keep K; a corrupt latest falls back."""
import pathlib

import jax
import numpy as np

from jaxrl_llm import objectives as ob, training
from jaxrl_llm.training.checkpoint import Checkpointer
from tests.training.helpers import one_device_mesh, random_batch, tiny_params


def _state(seed, ref=True):
  objective = ob.presets.grpo(kl_coef=0.04)
  optimizer = training.optim.optimizer(learning_rate=1e-3)
  obj_state = training.init_objective_state(objective, random_batch(0, 2, 2))
  params = tiny_params(seed)
  return training.init_train_state(params, optimizer, jax.random.key(seed), one_device_mesh(),
                                   objective_state=obj_state,
                                   ref_params=tiny_params(seed + 1) if ref else None)


def _assert_same(a, b):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(la) == len(lb)
  for x, y in zip(la, lb):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      x, y = jax.random.key_data(x), jax.random.key_data(y)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_keep_and_fallback(tmp_path):
  ckpt = Checkpointer(str(tmp_path / "ckpt"), keep=2)
  saved = {}
  for step in (1, 2, 3):
    state, shardings = _state(step)
    state = state.replace(step=state.step + step)
    ckpt.save(step, state, {"data": {"index": step}}, wait=True)
    saved[step] = state
  assert ckpt.steps() == [2, 3]                                   # keep=2
  like, shardings = _state(0)
  step, restored, extra = ckpt.restore_latest(like, shardings)
  assert step == 3 and extra == {"data": {"index": 3}}
  _assert_same(restored, saved[3])
  assert restored.params["embed"].sharding == shardings.params["embed"]
  # Corrupt the latest checkpoint: the one before is restored instead.
  for f in pathlib.Path(tmp_path / "ckpt" / "3").rglob("*"):
    if f.is_file():
      f.write_bytes(b"garbage")
  step, restored, extra = ckpt.restore_latest(like, shardings)
  assert step == 2 and extra == {"data": {"index": 2}}
  _assert_same(restored, saved[2])
  ckpt.close()


def test_without_reference_params(tmp_path):
  ckpt = Checkpointer(str(tmp_path), keep=1)
  state, shardings = _state(4, ref=False)
  ckpt.save(7, state, None, wait=True)
  step, restored, extra = ckpt.restore_latest(state, shardings)
  assert step == 7 and extra == {} and restored.ref_params is None
  _assert_same(restored, state)
  assert Checkpointer(str(tmp_path / "empty"), keep=1).restore_latest(state) is None


def test_relative_directory_saves_and_restores(tmp_path, monkeypatch):
  """`--workdir=runs/x` is relative: orbax wants absolute paths, so the Checkpointer resolves it
  (the default run once failed at its final save for this)."""
  monkeypatch.chdir(tmp_path)
  state, shardings = _state(1)
  ckpt = Checkpointer("runs/rel/ckpt", keep=1)
  ckpt.save(3, state, {"data": {"index": 5}}, wait=True)
  ckpt.close()
  assert (tmp_path / "runs" / "rel" / "ckpt" / "3").is_dir()
  like, shardings = _state(0)
  step, restored, extra = Checkpointer("runs/rel/ckpt").restore_latest(like, shardings)
  assert step == 3 and extra["data"] == {"index": 5}
  _assert_same(restored, state)
