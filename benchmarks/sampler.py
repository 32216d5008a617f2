"""Sampling throughput of jaxrl_llm vs Hugging Face `generate` on SmolLM2-135M, CPU, one process.

Prompts of about 64 tokens, 128 new tokens with stopping disabled (both sides generate exactly 128),
greedy and T = 1, batch sizes 1, 8, 32, 64. Compilation is excluded (a warm-up call per shape) and
reported separately. Also prints our decode time per step against the memory-bandwidth floor,
(bytes of weights + bytes of KV cache read per step) / measured read bandwidth, and the compute
floor, matmul FLOPs per step / the rate of a large jitted matmul measured in the same process.
Last, the weight matmuls of one decode step alone (the fused q/k/v, output, fused gate/up and down
projections of every layer plus the LM head, M = batch rows, float32), timed in a jitted scan
and in torch on the same shapes: `matmul_bound_ratio` turns that time into the best tokens/s any
float32 implementation built on these matmul kernels could reach (the prefill we measured plus
new - 1 steps of matmuls and nothing else), and into the largest ratio against the HF rate
measured here (skipped with --skip_hf). Where that bound is below an issue target, no float32
sampler that runs one forward pass per token can meet it on this machine.
`JAXRL_LLM_TUNE_MALLOC=1` re-executes the process at start with glibc malloc tuned
(`parallel.host.tune_malloc`); HF's side shares it.

  python benchmarks/sampler.py [--batches 1,8,32,64] [--new 128]
"""
import argparse
import dataclasses
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import matmul_flops_per_s, print_table, time_fn  # noqa: E402
from benchmarks.forward import forward_flops  # noqa: E402
from jaxrl_llm import models, sampling  # noqa: E402
from jaxrl_llm.parallel import host  # noqa: E402


TARGETS = {1: 2.0, 32: 4.0}    # the issue's greedy/T=1 targets: ratio to HF generate
ISSUE_SHAPE = (64, 128)        # the prompt length and new tokens those targets are set for


def read_bandwidth() -> float:
  """Bytes/s of a jitted sum over 256 MiB, far beyond the caches: what a decode step does to its
  weights and cache. (An elementwise copy would also time the page faults of a fresh 256 MiB
  output on every call, about 6x slower here, which would put the floor below what we reach.)"""
  x = jnp.ones((64 * 1024 * 1024,), jnp.float32)
  f = jax.jit(jnp.sum)
  sec = time_fn(lambda: f(x).block_until_ready(), warmup=2, repeats=5)
  return x.nbytes / sec


def decode_matmul_shapes(config: models.ModelConfig) -> list[tuple[int, int]]:
  """[K, N] of one layer's decode weights: fused q/k/v, output, fused gate/up, down."""
  c = config
  d, h, f = c.hidden_size, c.head_dim, c.intermediate_size
  return [(d, (c.num_heads + 2 * c.num_kv_heads) * h), (c.num_heads * h, d), (d, 2 * f), (f, d)]


def decode_matmul_step_s(config: models.ModelConfig, batch: int, steps: int = 16) -> float:
  """Seconds per decode step of the weight matmuls alone at `batch` rows (float32, XLA:CPU).

  The same shapes as the sampler's decode: per layer x @ W_qkv [D, (N+2K)·H], o @ W_o [N·H, D],
  x @ W_gate_up [D, 2F], a @ W_down [F, D], then the LM head [D, V]; each result feeds the next so
  nothing is hoisted out of the scan over steps, and every step reads all weights, as decoding
  does."""
  c = config
  d, f, nq = c.hidden_size, c.intermediate_size, c.num_heads * c.head_dim
  shapes = decode_matmul_shapes(c)
  keys = jax.random.split(jax.random.key(0), c.num_layers * len(shapes) + 1)
  # One buffer per layer and an unrolled layer loop, as the sampler decodes (a scan over stacked
  # weights would add a copy of each layer's slice).
  layers = [[0.02 * jax.random.normal(keys[i * len(shapes) + j], s, jnp.float32)
             for j, s in enumerate(shapes)] for i in range(c.num_layers)]
  head = 0.02 * jax.random.normal(keys[-1], (d, c.vocab_size), jnp.float32)

  @jax.jit
  def run(x, layers, head):
    def step(x, _):
      for w_qkv, w_o, w_gu, w_down in layers:
        x = x + (x @ w_qkv)[:, :nq] @ w_o
        gu = x @ w_gu
        x = x + (jax.nn.silu(gu[:, :f]) * gu[:, f:]) @ w_down
      return x + 1e-3 * jnp.tanh((x @ head)[:, :d]), None
    return jax.lax.scan(step, x, None, length=steps)[0]

  x = jnp.ones((batch, d), jnp.float32)
  return time_fn(lambda: run(x, layers, head).block_until_ready(), warmup=1, repeats=3) / steps


def torch_decode_matmul_step_s(config: models.ModelConfig, batch: int, steps: int = 4) -> float:
  """The same weight matmuls in torch (HF's engine), per decode step."""
  c = config
  d, f, nq = c.hidden_size, c.intermediate_size, c.num_heads * c.head_dim
  shapes = decode_matmul_shapes(c)
  gen = torch.Generator().manual_seed(0)
  layers = [[0.02 * torch.randn(s, generator=gen) for s in shapes] for _ in range(c.num_layers)]
  head = 0.02 * torch.randn((d, c.vocab_size), generator=gen)

  def run():
    x = torch.ones((batch, d))
    with torch.no_grad():
      for _ in range(steps):
        for w_qkv, w_o, w_gu, w_down in layers:
          x = x + (x @ w_qkv)[:, :nq] @ w_o
          gu = x @ w_gu
          x = x + (torch.nn.functional.silu(gu[:, :f]) * gu[:, f:]) @ w_down
        x = x + 1e-3 * torch.tanh((x @ head)[:, :d])
    return x

  return time_fn(run, warmup=1, repeats=3) / steps


def matmul_bound_ratio(prefill_s: float, matmul_step_s: float, new: int, tokens: int,
                       hf_s: float) -> tuple[float, float]:
  """(best tokens/s, its ratio to HF): our measured prefill + (new - 1) steps of matmuls only."""
  best = tokens / (prefill_s + (new - 1) * matmul_step_s)
  return best, best * hf_s / tokens


def verdict(best_ratio: float, target: float, args) -> str:
  """Whether the matmul bound allows the target; targets hold at the issue's shape only."""
  if (args.prompt_len, args.new) != ISSUE_SHAPE:
    return f"n/a: targets are for ~{ISSUE_SHAPE[0]} + {ISSUE_SHAPE[1]} tokens"
  return "reachable" if best_ratio >= target else "out of reach in float32"


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--batches", default="1,8,32,64")
  parser.add_argument("--new", type=int, default=128)
  parser.add_argument("--prompt_len", type=int, default=64)
  parser.add_argument("--skip_hf", action="store_true")
  args = parser.parse_args()
  torch.set_num_threads(os.cpu_count() or 1)
  model, _ = models.from_pretrained("smollm2-135m-instruct")
  hf = None
  if not args.skip_hf:
    from transformers import AutoModelForCausalLM
    path = models.embedded_model_path()
    hf = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()
  config = model.config
  params = model.params()
  weight_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
  bandwidth = read_bandwidth()
  ceiling = matmul_flops_per_s()
  rng = np.random.default_rng(0)
  rows, step_rows, bound_rows = [], [], []
  for batch in [int(b) for b in args.batches.split(",")]:
    # ragged prompts around prompt_len tokens, as a chat batch would be
    lengths = rng.integers(args.prompt_len - 8, args.prompt_len + 1, batch)
    prompts = [rng.integers(100, config.vocab_size, n).tolist() for n in lengths]
    for temperature in (0.0, 1.0):
      cfg = sampling.SamplingConfig(max_new_tokens=args.new, temperature=temperature,
                                    stop_token_ids=())
      one = dataclasses.replace(cfg, max_new_tokens=1)
      key = jax.random.key(0)
      run = lambda c: jax.block_until_ready(sampling.sample(model, prompts, key, c))  # noqa: E731
      t0 = time.perf_counter()
      run(cfg)
      run(one)
      compile_s = time.perf_counter() - t0
      ours = time_fn(lambda: run(cfg), warmup=0, repeats=2)
      prefill = time_fn(lambda: run(one), warmup=0, repeats=2)
      tokens = batch * args.new
      hf_s = float("nan")
      if hf is not None:
        longest = int(lengths.max())
        ids = torch.tensor([[0] * (longest - len(p)) + p for p in prompts])
        attn = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts])
        kw = dict(do_sample=temperature > 0, max_new_tokens=args.new, min_new_tokens=args.new,
                  pad_token_id=0)
        if temperature > 0:
          kw.update(temperature=temperature, top_k=0, top_p=1.0)

        def hf_run():
          with torch.no_grad():
            hf.generate(ids, attention_mask=attn, **kw)

        hf_s = time_fn(hf_run, warmup=0, repeats=1)
      mode = "greedy" if temperature == 0 else "T=1"
      rows.append([batch, mode, f"{tokens / ours:,.0f}", f"{tokens / hf_s:,.0f}",
                   f"{hf_s / ours:.1f}x", f"{compile_s:.1f}"])
      step = (ours - prefill) / (args.new - 1)
      if temperature == 0:
        bucket = next(b for b in sampling.DEFAULT_BUCKETS if b >= int(lengths.max()))
        slots = bucket + args.new + cfg.decode_chunk
        kv_bytes = (2 * config.num_layers * batch * config.num_kv_heads * slots * config.head_dim
                    * 4)
        floor = (weight_bytes + kv_bytes) / bandwidth
        compute = forward_flops(config, batch, 1, context=slots) / ceiling   # one decode step
        step_rows.append([batch, f"{step * 1e3:.1f}", f"{floor * 1e3:.1f}", f"{floor / step:.0%}",
                          f"{compute * 1e3:.1f}", f"{max(floor, compute) / step:.0%}",
                          f"{prefill * 1e3:.0f}"])
      if batch in TARGETS and hf is not None:     # the bound is a ratio to HF's measured rate
        if temperature == 0:      # the matmuls do not depend on the mode: timed once per batch
          matmuls = decode_matmul_step_s(config, batch)
          torch_matmuls = torch_decode_matmul_step_s(config, batch)
        best, best_ratio = matmul_bound_ratio(prefill, matmuls, args.new, tokens, hf_s)
        target = TARGETS[batch]
        bound_rows.append([
            batch, mode, f"{step * 1e3:.1f}", f"{matmuls * 1e3:.1f}", f"{torch_matmuls * 1e3:.1f}",
            f"{forward_flops(config, batch, 1, context=0) / matmuls / 1e9:.0f}",
            f"{best:,.0f}", f"{best_ratio:.1f}x", f"{target:.0f}x",
            verdict(best_ratio, target, args)])
  print_table(f"SmolLM2-135M sampling, prompts ~{args.prompt_len} tokens, {args.new} new tokens, "
              f"{os.cpu_count()} threads (tokens/s exclude compilation)",
              ["batch", "mode", "jaxrl_llm tok/s", "HF generate tok/s", "ratio", "compile s"], rows)
  print_table(f"Decode step vs memory-bandwidth floor (weights {weight_bytes / 1e6:.0f} MB, read "
              f"bandwidth {bandwidth / 1e9:.1f} GB/s)",
              ["batch", "ms / decode step", "memory floor ms", "of memory floor speed",
               "compute floor ms", "of max(floors) speed", "prefill+1 token ms"],
              step_rows)
  print(f"compute floor: matmul FLOPs per step at the jitted 2048^3 f32 matmul rate, "
        f"{ceiling / 1e9:.1f} GFLOP/s")
  if bound_rows:
    print_table("Targets against the weight matmuls alone: best tok/s = tokens / (our prefill "
                f"+ {args.new - 1} steps of only the decode matmuls), ratio to the HF rate above",
                ["batch", "mode", "ms / decode step", "matmuls alone ms (XLA)", "same in torch ms",
                 "matmul GFLOP/s", "best tok/s", "best ratio", "target", "verdict"], bound_rows)


if __name__ == "__main__":
  host.tune_malloc()   # JAXRL_LLM_TUNE_MALLOC=1: re-execute with malloc tuned (parallel/host.py)
  main()
