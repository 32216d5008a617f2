"""Shared benchmark helpers: timing, the matmul ceiling, table printing."""
import time

import jax
import jax.numpy as jnp
import numpy as np


def time_fn(fn, *, warmup: int = 1, repeats: int = 5) -> float:
  """Median wall time (s) of fn() after warm-up; fn must block until its result is ready."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def matmul_flops_per_s(n: int = 2048, dtype=jnp.float32) -> float:
  """Achieved FLOP/s of one large jitted square matmul: the physical ceiling on this machine."""
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), dtype)
  f = jax.jit(lambda a, b: a @ b)
  sec = time_fn(lambda: f(a, b).block_until_ready(), warmup=2, repeats=5)
  return 2 * n**3 / sec


def print_table(title: str, header: list[str], rows: list[list]) -> None:
  widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
  line = lambda r: "| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |"  # noqa: E731
  print(f"\n{title}")
  print(line(header))
  print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
  for r in rows:
    print(line(r))
