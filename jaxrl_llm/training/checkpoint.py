"""Checkpoints (orbax CheckpointManager): the TrainState and the data cursor, keep the last K.

  ckpt = Checkpointer(workdir + "/ckpt", keep=3)
  ckpt.save(step, state, {"data": source.state()})
  restored = ckpt.restore_latest(abstract_state, shardings)   # None when there is none
  if restored: step, state, extra = restored

The state is saved whole (step, params, optimizer state, reference params, objective state, rng,
skip counter), so a resumed run continues exactly where the saved one was. If the latest
checkpoint cannot be read (a partial or corrupt write), the previous one is used, with a warning.
"""
import logging
import os
from collections.abc import Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxrl_llm.training.state import TrainState

PyTree = Any


def _to_saveable(state: TrainState) -> dict[str, Any]:
  """The state as a dict of arrays (PRNG key as its raw data; None reference params dropped)."""
  out = {"step": state.step, "params": state.params, "opt_state": state.opt_state,
         "objective_state": state.objective_state, "rng": jax.random.key_data(state.rng),
         "skipped": state.skipped}
  if state.ref_params is not None:
    out["ref_params"] = state.ref_params
  return out


def _from_saveable(tree: Mapping[str, Any], like: TrainState) -> TrainState:
  return like.replace(step=tree["step"], params=tree["params"], opt_state=tree["opt_state"],
                      objective_state=tree["objective_state"],
                      rng=jax.random.wrap_key_data(tree["rng"]),
                      skipped=tree["skipped"], ref_params=tree.get("ref_params"))


def _abstract(tree: PyTree, shardings: PyTree | None) -> PyTree:
  def one(x, s=None):
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s if s is not None else getattr(
        x, "sharding", None))
  if shardings is None:
    return jax.tree.map(one, tree)
  return jax.tree.map(one, tree, shardings)


class Checkpointer:
  """Saves and restores `(TrainState, extra JSON)` under `directory`, keeping the last `keep`."""

  def __init__(self, directory: str, *, keep: int = 3):
    if keep < 1:
      raise ValueError(f"ckpt keep must be >= 1; got {keep}.")
    # orbax needs an absolute path (a relative one fails at the first save, after a whole
    # iteration has run): resolve it against the working directory now.
    self.manager = ocp.CheckpointManager(
        os.path.abspath(directory), options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def save(self, step: int, state: TrainState, extra: Mapping[str, Any] | None = None,
           *, wait: bool = False) -> None:
    """Saves at `step` (asynchronously unless `wait`); `extra` is JSON (e.g. the data cursor)."""
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(_to_saveable(state)),
        extra=ocp.args.JsonSave(dict(extra or {}))))
    if wait:
      self.manager.wait_until_finished()

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def restore(self, step: int, like: TrainState, shardings: TrainState | None = None
              ) -> tuple[TrainState, dict[str, Any]]:
    """The state and extra saved at `step`, laid out like `like` (arrays or eval_shape structs)
    with `shardings` (default: those of `like`)."""
    saveable = _to_saveable(like)
    target = _abstract(saveable, None if shardings is None else _to_saveable_shardings(
        shardings, saveable))
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), extra=ocp.args.JsonRestore()))
    return _from_saveable(restored["state"], like), dict(restored["extra"] or {})

  def restore_latest(self, like: TrainState, shardings: TrainState | None = None
                     ) -> tuple[int, TrainState, dict[str, Any]] | None:
    """(step, state, extra) of the newest readable checkpoint, or None when there is none.

    A checkpoint that fails to restore is skipped with a warning and the one before is tried.
    """
    for step in reversed(self.steps()):
      try:
        state, extra = self.restore(step, like, shardings)
        return step, state, extra
      except Exception as e:  # pylint: disable=broad-except (any read failure means: fall back)
        logging.warning("checkpoint at step %d could not be restored (%s: %s); trying the "
                        "previous one", step, type(e).__name__, e)
    return None

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


def _to_saveable_shardings(shardings: TrainState, saveable: Mapping[str, Any]) -> dict[str, Any]:
  """Shardings in the saved layout (the raw key data is replicated like the key)."""
  out = {"step": shardings.step, "params": shardings.params, "opt_state": shardings.opt_state,
         "objective_state": shardings.objective_state, "rng": shardings.rng,
         "skipped": shardings.skipped}
  if "ref_params" in saveable:
    out["ref_params"] = shardings.ref_params
  return out
