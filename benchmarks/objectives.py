"""Cost of the loss itself: one jitted value_and_grad of GRPO and DAPO vs a NumPy reference.

Batch [B, T] = [256, 1024] (groups of 8, ragged lengths), logits-free inputs (per-token logprobs,
as the trainer hands them over). For each objective:
  * jaxrl_llm: `jax.jit(jax.value_and_grad(loss))` of the preset (rollout + loss phases), float32;
  * NumPy: the same formula written directly in vectorised float64 NumPy, forward *and* the
    closed-form gradient ∂L/∂logp (so both sides produce the same two outputs);
  * peak memory of the compiled loss from XLA's `memory_analysis()` (temporaries + outputs; the
    inputs are listed separately), next to the size of one [B, T, V] float32 logits tensor of
    SmolLM2 (V = 49152), which the forward pass would need if it materialised the logits.
Prints a table with the NumPy/JAX time ratio and checks the two agree.

  python benchmarks/objectives.py [--batch 256 --seq 1024 --repeats 10]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import print_table, time_fn  # noqa: E402
from jaxrl_llm import objectives as ob  # noqa: E402

GROUP_SIZE = 8
VOCAB = 49152


def make_batch(b, t, seed=0):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(t // 8, t + 1, size=b)
  mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.float64)
  logp = -np.abs(rng.normal(1.0, 0.5, (b, t)))
  old_logp = logp + 0.2 * rng.normal(size=(b, t))
  ref_logp = logp + 0.2 * rng.normal(size=(b, t))
  rewards = rng.integers(0, 2, size=b).astype(np.float64)
  return dict(mask=mask, logp=logp, old_logp=old_logp, ref_logp=ref_logp, rewards=rewards)


# --- NumPy references (float64, forward + closed-form gradient) -----------------------------------
def _np_group_adv(r, eps):
  g = r.reshape(-1, GROUP_SIZE)
  adv = (g - g.mean(1, keepdims=True)) / (g.std(1, ddof=1, keepdims=True) + eps)
  return adv.reshape(-1)


def _np_clip(logp, old_logp, adv, mask, eps_low, eps_high):
  ratio = np.exp(np.where(mask > 0, logp - old_logp, 0.0))
  a = adv[:, None]
  unclipped, clipped = ratio * a, np.clip(ratio, 1 - eps_low, 1 + eps_high) * a
  active = unclipped <= clipped
  return -np.minimum(unclipped, clipped), np.where(active, -ratio * a, 0.0)


def numpy_grpo(d, beta=0.04):
  """GRPO: group-std advantage, PPO clip 0.2, β·k3, seq_mean_token_mean. Returns (L, ∂L/∂logp)."""
  mask = d["mask"]
  adv = _np_group_adv(d["rewards"], 1e-6)
  loss_t, grad_t = _np_clip(d["logp"], d["old_logp"], adv, mask, 0.2, 0.2)
  x = np.where(mask > 0, d["ref_logp"] - d["logp"], 0.0)
  loss_t = loss_t + beta * (np.exp(x) - x - 1)
  grad_t = grad_t + beta * (1 - np.exp(x))
  lengths = mask.sum(1)
  w = mask / np.maximum(lengths, 1)[:, None] / (lengths > 0).sum()
  return (w * loss_t).sum(), w * grad_t


def numpy_dapo(d):
  """DAPO: uniform-group filter, overlong shaping, group-std advantage, clip 0.2/0.28, token mean."""
  r = d["rewards"]
  g = r.reshape(-1, GROUP_SIZE)
  keep = np.repeat(g.max(1) != g.min(1), GROUP_SIZE).astype(np.float64)
  mask = d["mask"] * keep[:, None]
  lengths = d["mask"].sum(1)
  start = 20480 - 4096
  r = r + np.where(lengths <= start, 0.0, np.where(lengths <= 20480, (start - lengths) / 4096, -1))
  adv = _np_group_adv(r, 1e-6)
  loss_t, grad_t = _np_clip(d["logp"], d["old_logp"], adv * keep, mask, 0.2, 0.28)
  w = mask / mask.sum()
  return (w * loss_t).sum(), w * grad_t


# --- JAX ------------------------------------------------------------------------------------------
def jax_step(objective):
  def loss(logp, old_logp, ref_logp, mask, rewards):
    ctx = ob.LossContext.create(logp=logp, old_logp=old_logp, ref_logp=ref_logp, mask=mask,
                                rewards=rewards, group_size=GROUP_SIZE)
    return objective(ctx)[0]
  return jax.jit(jax.value_and_grad(loss))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--seq", type=int, default=1024)
  parser.add_argument("--repeats", type=int, default=10)
  args = parser.parse_args()
  b, t = args.batch, args.seq
  data = make_batch(b, t)
  keys = ("logp", "old_logp", "ref_logp", "mask", "rewards")
  inputs = [jnp.asarray(data[k], jnp.float32) for k in keys]
  input_bytes = sum(x.nbytes for x in inputs)
  logits_gib = b * t * VOCAB * 4 / 2**30

  rows = []
  for name, objective, reference in (("grpo", ob.presets.grpo(), numpy_grpo),
                                     ("dapo", ob.presets.dapo(), numpy_dapo)):
    step = jax_step(objective)
    value, grad = step(*inputs)
    ref_value, ref_grad = reference(data)
    err = float(np.max(np.abs(np.asarray(grad, np.float64) - ref_grad)) / np.max(np.abs(ref_grad)))
    assert abs(float(value) - ref_value) < 1e-5 * max(1.0, abs(ref_value)), (value, ref_value)
    assert err < 1e-4, err
    t_jax = time_fn(lambda: jax.block_until_ready(step(*inputs)), warmup=2, repeats=args.repeats)
    t_np = time_fn(lambda: reference(data), warmup=1, repeats=args.repeats)
    mem = step.lower(*inputs).compile().memory_analysis()
    peak = (mem.temp_size_in_bytes + mem.output_size_in_bytes) if mem is not None else float("nan")
    rows.append([name, f"{t_jax * 1e3:.2f}", f"{t_np * 1e3:.1f}", f"{t_np / t_jax:.1f}x",
                 f"{peak / 2**20:.1f}", f"{input_bytes / 2**20:.1f}", f"{err:.1e}"])

  device = jax.devices()[0]
  print(f"device: {device.platform} ({device.device_kind}), {os.cpu_count()} CPU cores; "
        f"batch [{b}, {t}], groups of {GROUP_SIZE}; jax {jax.__version__}")
  print_table(
      "value_and_grad of the loss (jax float32, jitted) vs NumPy float64 (forward + closed-form "
      "gradient)",
      ["objective", "jax ms", "numpy ms", "numpy/jax", "jax temp+out MiB", "inputs MiB",
       "grad rel. err"], rows)
  print(f"\nFor scale: one [B, T, V] float32 logits tensor at V = {VOCAB} is {logits_gib:.1f} GiB.")


if __name__ == "__main__":
  main()
