"""Shared fixtures for the objectives tests: the spec's worked example and random batches.

The worked example is typed in from `spec/baselines_and_more.md` §3.1 (the independent
reference). Random batches put finite junk on padded positions, as the spec asks.
"""
import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_llm import objectives as ob

# --- spec §3.1 -------------------------------------------------------------------------------------
WE_LENGTHS = np.array([4, 6, 3, 5, 6, 2, 5, 4])
WE_GROUP_SIZE = 4
WE_REWARDS = np.array([1, 0, 0, 1, 0, 1, 1, 1], np.float64)
WE_LOGP = np.array([
    [-0.88, -0.01, -0.69, -1.64, 0.70, 0.70],
    [-2.35, -0.79, -0.25, -1.33, -1.13, -1.54],
    [-1.57, -1.15, -0.98, 0.70, 0.70, 0.70],
    [-0.98, -0.48, -1.33, -2.12, -0.76, 0.70],
    [-1.79, -0.97, -1.55, -0.04, -0.48, -0.76],
    [-1.10, -2.00, 0.70, 0.70, 0.70, 0.70],
    [-1.07, -2.06, -0.40, -1.99, -1.72, 0.70],
    [-1.55, -0.08, -0.89, -0.60, 0.70, 0.70]])
WE_OLD_LOGP = np.array([
    [-0.89, -0.32, -0.57, -1.73, -3.00, -3.00],
    [-2.19, -0.48, -0.53, -1.22, -1.56, -1.62],
    [-1.66, -1.27, -1.14, -3.00, -3.00, -3.00],
    [-0.89, -0.12, -1.75, -1.86, -0.91, -3.00],
    [-2.13, -1.12, -1.22, -0.27, -0.88, -1.12],
    [-1.16, -1.68, -3.00, -3.00, -3.00, -3.00],
    [-1.42, -2.19, -0.46, -1.88, -1.64, -3.00],
    [-1.13, -0.42, -0.86, -0.64, -3.00, -3.00]])
WE_REF_LOGP = np.array([
    [-1.17, -0.40, -0.85, -1.96, 1.00, 1.00],
    [-2.23, -0.47, -0.31, -1.31, -1.51, -1.51],
    [-1.75, -1.26, -0.98, 1.00, 1.00, 1.00],
    [-1.19, 0.03, -1.56, -2.08, -0.96, 1.00],
    [-2.42, -1.04, -1.04, -0.26, -0.74, -1.28],
    [-1.34, -1.76, 1.00, 1.00, 1.00, 1.00],
    [-1.52, -2.33, -0.19, -1.91, -1.35, 1.00],
    [-1.12, -0.18, -0.71, -0.59, 1.00, 1.00]])
WE_MASK = (np.arange(6)[None, :] < WE_LENGTHS[:, None]).astype(np.float64)


def worked_example_ctx(logp=None, **kwargs) -> ob.LossContext:
  """The §3.1 batch as a float32 LossContext (logp defaults to the spec's)."""
  args = dict(
      logp=jnp.asarray(WE_LOGP if logp is None else logp, jnp.float32),
      old_logp=jnp.asarray(WE_OLD_LOGP, jnp.float32),
      ref_logp=jnp.asarray(WE_REF_LOGP, jnp.float32),
      mask=jnp.asarray(WE_MASK, jnp.float32),
      rewards=jnp.asarray(WE_REWARDS, jnp.float32),
      group_size=WE_GROUP_SIZE)
  args.update(kwargs)
  return ob.LossContext.create(**args)


def loss_and_grad(objective: ob.Objective, ctx: ob.LossContext):
  """(loss, metrics, ∂loss/∂logp) of `objective(ctx)`, through jax.grad."""
  def f(logp):
    return objective(ctx.replace(logp=logp))
  (loss, metrics), grad = jax.value_and_grad(f, has_aux=True)(ctx.logp)
  return float(loss), metrics, np.asarray(grad)


# --- random batches --------------------------------------------------------------------------------
class Batch(dict):
  """Float64 NumPy arrays of a random batch (attribute access for brevity)."""
  __getattr__ = dict.__getitem__


def random_batch(seed: int = 0, num_prompts: int = 4, group_size: int = 4, width: int = 7,
                 junk: float = 7.5) -> Batch:
  """Random rollout batch: ragged lengths (an empty row), one uniform group, junk off the mask."""
  rng = np.random.default_rng(seed)
  b, t = num_prompts * group_size, width
  lengths = rng.integers(1, t + 1, size=b)
  lengths[1] = 0                                    # an empty row (e.g. overlong-filtered)
  lengths[2] = t                                    # a full row
  mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.float64)
  rewards = rng.integers(0, 2, size=b).astype(np.float64) + 0.1 * rng.normal(size=b)
  rewards[group_size:2 * group_size] = 1.0          # group 1 is uniform
  logp = -np.abs(rng.normal(1.0, 0.6, size=(b, t)))
  old_logp = logp + 0.25 * rng.normal(size=(b, t))
  ref_logp = logp + 0.3 * rng.normal(size=(b, t))
  sampler_logp = old_logp + 0.4 * rng.normal(size=(b, t))
  entropy = np.abs(rng.normal(1.0, 0.5, size=(b, t)))
  adv = rng.normal(size=b)
  truncated = rng.random(b) < 0.3
  truncated[0] = True
  truncated[3] = False
  out = Batch(mask=mask, rewards=rewards, logp=logp, old_logp=old_logp, ref_logp=ref_logp,
              sampler_logp=sampler_logp, entropy=entropy, advantages=adv[:, None] * mask,
              truncated=truncated, lengths=lengths.astype(np.float64), group_size=group_size)
  off = mask == 0
  for key in ("logp", "old_logp", "ref_logp", "sampler_logp", "entropy"):
    out[key] = np.where(off, junk * (1 + rng.random((b, t))), out[key])
  return out


def ctx_of(batch: Batch, *, with_advantages=False, drop=(), **kwargs) -> ob.LossContext:
  """A float32 LossContext of a random batch; `drop` lists inputs to leave out."""
  f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
  args = dict(logp=f32(batch.logp), old_logp=f32(batch.old_logp), ref_logp=f32(batch.ref_logp),
              mask=f32(batch.mask), rewards=f32(batch.rewards), group_size=batch.group_size,
              entropy=f32(batch.entropy),
              extras={"sampler_logp": f32(batch.sampler_logp),
                      "truncated": jnp.asarray(batch.truncated)})
  if with_advantages:
    args["advantages"] = f32(batch.advantages)
  for key in drop:
    if key in args:
      args[key] = None
    else:
      args["extras"] = {k: v for k, v in args["extras"].items() if k != key}
  args.update(kwargs)
  return ob.LossContext.create(**args)
