"""The loss-transform protocol: `LossTransform(init, update, requires)`, `stateless`, `Objective`.

optax's protocol, applied to losses (`STYLE.md` §2.4): a transform is a pair of pure functions,
`init(ctx) -> state` and `update(ctx, state) -> (ctx, state)`, plus the set of inputs the trainer
must compute first (`requires`: "ref_logp", "entropy", "hidden", ...) and the phase it belongs to.
An `Objective` is two chains: `rollout` (once per rollout batch, outside the gradient, on whole
groups) and `loss` (per minibatch, inside `value_and_grad`).
"""
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, Union

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from jaxrl_llm.objectives.context import LossContext, Mean

# A coefficient: a float, or a function of the step count (optax's ScalarOrSchedule).
Schedule = Callable[[Any], Any]
ScalarOrSchedule = Union[float, Schedule]

PyTree = Any

# Phase a transform belongs to: "rollout" (group statistics, reward shaping, filters on whole
# groups), "loss" (reads the current forward pass), "any" (pure per-token/per-row edits of batch
# inputs), "mixed" (a chain holding both rollout and loss transforms).
TRANSFORM_PHASES = ("rollout", "loss", "any", "mixed")


class EmptyState(NamedTuple):
  """The state of a stateless transform."""


class LossTransform(NamedTuple):
  """A loss transform: `init(ctx) -> state`, `update(ctx, state) -> (ctx, state)`.

  Both functions are pure, jit-able and differentiable. `requires` names what the trainer must
  compute before `update` runs (e.g. `frozenset({"ref_logp"})`); chains propagate the union.
  `phase` is where it belongs ("rollout", "loss", "any"); `Objective` checks it at construction.
  """
  init: Callable[[LossContext], PyTree]
  update: Callable[[LossContext, PyTree], tuple[LossContext, PyTree]]
  requires: frozenset[str] = frozenset()
  phase: str = "any"


def stateless(fn: Callable[[LossContext], LossContext], requires: Iterable[str] = (),
              phase: str = "any") -> LossTransform:
  """Wraps a pure `ctx -> ctx` function as a `LossTransform` with an empty state."""
  if phase not in TRANSFORM_PHASES:
    raise ValueError(f"phase must be one of {TRANSFORM_PHASES}, got {phase!r}")

  def init_fn(ctx):
    del ctx
    return EmptyState()

  def update_fn(ctx, state):
    return fn(ctx), state

  return LossTransform(init_fn, update_fn, frozenset(requires), phase)


def identity() -> LossTransform:
  """The transform that changes nothing (an empty chain)."""
  return stateless(lambda ctx: ctx)


def at_step(coef: ScalarOrSchedule, step) -> Float[Array, ""]:
  """Value of a `ScalarOrSchedule` coefficient at `step`."""
  return coef(step) if callable(coef) else jnp.asarray(coef, jnp.float32)


def _union_phase(phases: Iterable[str]) -> str:
  kinds = {p for p in phases if p != "any"}
  if "mixed" in kinds or kinds == {"rollout", "loss"}:
    return "mixed"
  return kinds.pop() if kinds else "any"


class ObjectiveState(NamedTuple):
  rollout: PyTree
  loss: PyTree


class Objective(NamedTuple):
  """An objective in two phases: `rollout` then `loss`, each a `LossTransform` (usually a chain).

  `rollout` runs once per rollout batch, outside the gradient and before minibatching (reward
  shaping, advantages, group filters). `loss` runs per minibatch inside `value_and_grad` (ratio and
  clipping, token weights of the current pass, regularisers, aggregation).

  `objective(ctx) -> (loss, metrics)` runs both phases on one whole batch with a fresh state and
  returns the scalar loss and a dict of scalar metrics (rollout-phase metrics included), for users
  who hold the whole batch. Gradients flow through `ctx.logp` (and `entropy`/`hidden`) only.
  """
  rollout: LossTransform
  loss: LossTransform

  @property
  def requires(self) -> frozenset[str]:
    """What the trainer must compute: the union over both phases."""
    return frozenset(self.rollout.requires | self.loss.requires)

  def check(self) -> "Objective":
    """Raises if a loss-phase transform sits in `rollout` or a rollout-phase one in `loss`."""
    if self.rollout.phase in ("loss", "mixed"):
      raise ValueError("Objective.rollout holds a loss-phase transform (one that needs the current "
                       "logp): put it in the loss phase (Objective.loss).")
    if self.loss.phase in ("rollout", "mixed"):
      raise ValueError("Objective.loss holds a rollout-phase transform (group statistics or reward "
                       "shaping need whole groups): put it in the rollout phase "
                       "(Objective.rollout).")
    return self

  def init(self, ctx: LossContext) -> ObjectiveState:
    return ObjectiveState(self.rollout.init(ctx), self.loss.init(ctx))

  def run(self, ctx: LossContext, state: ObjectiveState | None = None
          ) -> tuple[LossContext, LossContext, ObjectiveState]:
    """Runs both phases; returns (rollout ctx, loss ctx, new state)."""
    self.check()
    if state is None:
      state = self.init(ctx)
    rctx, rstate = self.rollout.update(ctx.replace(phase="rollout"), state.rollout)
    if ctx.logp is None:
      raise ValueError("Objective(ctx) runs the loss phase and needs ctx.logp (the current "
                       "policy's log-probabilities): pass logp=... to LossContext.create")
    lctx = LossContext.from_batch(rctx, logp=ctx.logp, entropy=ctx.entropy, hidden=ctx.hidden)
    lctx, lstate = self.loss.update(lctx, state.loss)
    if lctx.loss is None:
      raise ValueError("the loss chain set no ctx.loss: end it with aggregate(mode)")
    return rctx, lctx, ObjectiveState(rstate, lstate)

  def __call__(self, ctx: LossContext) -> tuple[Float[Array, ""], dict[str, Float[Array, ""]]]:
    rctx, lctx, _ = self.run(ctx)
    metrics = {**rctx.metrics, **lctx.metrics}
    return lctx.loss.value(), {k: m.value() for k, m in metrics.items()}


def metric_values(metrics: dict[str, Mean]) -> dict[str, Float[Array, ""]]:
  """`Mean` pairs -> plain scalars (`total / max(count, 1)`)."""
  return {k: m.value() for k, m in metrics.items()}

