"""Forward throughput of jaxrl_llm vs Hugging Face transformers (PyTorch) on SmolLM2-135M, CPU.

Same weights (the embedded GGUF, dequantised by each library), same batch, same process, same
thread count. Prints tokens/s of each, the ratio, and the achieved FLOP/s of our forward against a
large jitted matmul measured in the same process (the physical ceiling).
`JAXRL_LLM_TUNE_MALLOC=1` runs both sides with glibc malloc tuned (`parallel.host.tune_malloc`).

  python benchmarks/forward.py [--batch 8 --seq 256]
"""
import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import matmul_flops_per_s, print_table, time_fn  # noqa: E402
from jaxrl_llm import models  # noqa: E402
from jaxrl_llm.parallel import host  # noqa: E402


def forward_flops(config: models.ModelConfig, batch: int, seq: int,
                  context: int | None = None) -> float:
  """Matmul FLOPs of one forward: 2·(non-embedding params + LM head)·tokens + attention scores.

  Each of the batch·seq tokens attends to `context` keys (default seq: the full, unmasked T×T; a
  decode step is seq=1 over the cache's slots)."""
  c = config
  per_layer = (c.hidden_size * c.head_dim * (c.num_heads * 2 + c.num_kv_heads * 2)
               + 3 * c.hidden_size * c.intermediate_size)
  dense = c.num_layers * per_layer + c.hidden_size * c.vocab_size
  keys = seq if context is None else context
  attention = c.num_layers * 2 * c.num_heads * c.head_dim * keys  # QK^T and PV
  return 2.0 * batch * seq * (dense + attention)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--seq", type=int, default=256)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  threads = os.cpu_count() or 1
  torch.set_num_threads(threads)

  model, _ = models.from_pretrained("smollm2-135m-instruct")
  from transformers import AutoModelForCausalLM
  path = models.embedded_model_path()
  hf = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()

  rng = np.random.default_rng(0)
  tokens_np = rng.integers(0, model.config.vocab_size, (args.batch, args.seq)).astype(np.int32)
  tokens = jnp.asarray(tokens_np)
  params, config = model.params(), model.config
  fwd = jax.jit(lambda p, t: models.forward(p, config, t).logits)
  ours_s = time_fn(lambda: fwd(params, tokens).block_until_ready(), repeats=args.repeats)

  ids = torch.tensor(tokens_np, dtype=torch.long)

  def hf_run():
    with torch.no_grad():
      hf(ids, use_cache=False).logits.float()

  hf_s = time_fn(hf_run, repeats=args.repeats)
  ceiling = matmul_flops_per_s()
  flops = forward_flops(config, args.batch, args.seq)
  n = args.batch * args.seq
  rows = [
      ["jaxrl_llm (jit, f32)", f"{ours_s * 1e3:.0f}", f"{n / ours_s:,.0f}",
       f"{flops / ours_s / 1e9:.1f}", f"{flops / ours_s / ceiling:.0%}"],
      ["HF transformers (torch, f32)", f"{hf_s * 1e3:.0f}", f"{n / hf_s:,.0f}",
       f"{flops / hf_s / 1e9:.1f}", f"{flops / hf_s / ceiling:.0%}"],
  ]
  print_table(f"SmolLM2-135M forward, batch {args.batch} x {args.seq} tokens, {threads} threads, "
              f"jax {jax.__version__}, torch {torch.__version__}",
              ["implementation", "ms / forward", "tokens/s", "GFLOP/s", "of matmul ceiling"], rows)
  print(f"\nmatmul ceiling (jitted 2048^3 f32): {ceiling / 1e9:.1f} GFLOP/s")
  print(f"ratio jaxrl_llm / HF tokens/s: {hf_s / ours_s:.2f}x")


if __name__ == "__main__":
  host.tune_malloc()   # JAXRL_LLM_TUNE_MALLOC=1: re-execute with malloc tuned (parallel/host.py)
  main()
