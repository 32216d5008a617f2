"""Seconds per RL iteration of jaxrl_llm vs TRL's `GRPOTrainer` on SmolLM2-135M, CPU, one process.

One iteration = P prompts x G completions sampled with the current weights, scored, then one
optimizer step on all P·G rows (gradient accumulation over `--micro_batches` on both sides).
Both sides: the same weights (the embedded GGUF, dequantised to float32; TRL gets them through
`models.save_pretrained`), the same chat-templated prompts in the same order (reasoning-gym
chain_sum), the same reward function (`reasoning_gym_reward`, scored inline), T = 1 sampling,
lr 1e-6, grad clip 1.0, no KL term (kl_coef = beta = 0: no reference forward on either side),
GRPO's per-sequence token mean, float32, and 4 micro-batches with each library's default
activation recomputation: ours is `train.remat="dots"` (the backward keeps the weight matmuls'
outputs and recomputes norms, attention and activations: no extra matmul FLOPs; 1.66 GB of step
temporaries here against 1.32 for "full" and 2.87 for "none"), TRL's is gradient checkpointing
(recomputes each layer). `--remat full` makes ours recompute whole layers too (like for like in FLOPs);
`--remat none` turns both off. 32 rows x ~200 positions without remat and micro-batches peak near
18 GB, more than a shared 23 GB machine leaves. By default every
completion has exactly `--new` tokens (stopping disabled: our `stop_token_ids=()`, HF's
`min_new_tokens`), so both do the same work; `--stop_at_eos` lets them stop. Our sampler pads
prompts to a length bucket (`--buckets`), TRL to the longest prompt of the batch. Our trainer
runs each group's common prompt once (`train.share_prompts`; `--whole_rows` turns it off), TRL
every row's.

jaxrl_llm runs its real RL loop (`training.loop.train_and_evaluate`) and reports its per-iteration
`time/sample`, `time/score`, `time/train` (the rollout phase and the optimizer step). TRL's
iteration is timed by a callback from `on_step_begin` to `on_step_end`, its generation by a timer
around `model.generate`, its rollout (generation + decoding + rewards + advantages) by a timer
around `_generate_and_score_completions`: scoring is the rollout less generation, training the
step less the rollout. Our scoring is decoding + rewards; our total is the iteration's wall time
(the loop's tokens/s). The first `--warmup` iterations (compilation on our side) are excluded on
both sides and shown apart. The machine is shared: the load average is printed with the table.

With `JAXRL_LLM_TUNE_MALLOC=1` the benchmark re-executes itself at start with glibc malloc tuned
(`parallel.host.tune_malloc`: freed memory stays mapped, huge pages). TRL runs in the same process,
so its torch tensors get it too: on this VM its iteration went ~48-50 -> ~38 s with it, ours
~10.8 -> ~10.0 s (4.4x -> 3.8x; since the trainer runs shared prompts once, its step has 1.66 GB
of temporaries and little to gain). Off by default, as in the launchers.

The train step's achieved FLOP/s counts the model matmul FLOPs it runs analytically (3x a
forward, as `benchmarks/forward.py` counts one; the forward that remat recomputes is not counted):
the P prompts' bucket columns once each (the loop's batches have `shared_prompts`: a group's rows
run their common prompt once, `models.forward_shared_prompts`) and the P·G rows' T completion
columns over prompt + T keys, with the LM head on those T positions only (with `--whole_rows`,
every row's bucket + T columns);
XLA's `cost_analysis` counts a scanned loop body once, so it cannot be used here. The ceiling is
a large jitted matmul measured in the same process, before and after our run (the larger).

  python benchmarks/rl_iteration.py [--prompts 4 --group 8 --new 64 --iterations 2 --warmup 1]
  python benchmarks/rl_iteration.py --new 128
"""
import argparse
import os
import pathlib
import resource
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import matmul_flops_per_s, print_table  # noqa: E402
from benchmarks.forward import forward_flops  # noqa: E402
from jaxrl_llm import data, models, rewards, sampling, training  # noqa: E402
from jaxrl_llm.objectives import presets  # noqa: E402
from jaxrl_llm.parallel import host  # noqa: E402
from jaxrl_llm.training import loop  # noqa: E402

SOURCE = "reasoning_gym:chain_sum?size=64&seed=0&answer_format=answer_tag"
MAX_PROMPT_TOKENS = 256
EXTRACT = ("answer_tag", "last_number")
CONFIGS = pathlib.Path(__file__).resolve().parent.parent / "configs"
TARGET_SPEEDUP = 3.0        # the targets
TARGET_MATMUL_FRACTION = 0.5


def base_config():
  """`configs/base.py`'s config (loaded from its file, as configs/tiny.py does)."""
  return training.load_config(CONFIGS / "base.py")


def first_prompts(tokenizer, count: int) -> list[data.EncodedPrompt]:
  """The first `count` prompts of SOURCE, in the order the RL loop draws them."""
  source = data.TokenizedSource(data.make_source(SOURCE), tokenizer, MAX_PROMPT_TOKENS)
  return [next(source) for _ in range(count)]


def ours_config(args, num_iterations: int):
  """base.py set to the benchmark: no eval, no KL, inline scoring, no logs or checkpoints, one
  optimizer step per iteration; everything TRL is matched on is set here, not inherited."""
  c = base_config()
  c.data.source = SOURCE
  c.data.eval_size = 0
  c.data.max_prompt_tokens = MAX_PROMPT_TOKENS
  c.eval.every_steps = 0
  c.objective = presets.default_config("grpo")
  c.objective.kl_coef = 0.0
  c.optim.learning_rate = 1e-6
  c.optim.warmup_steps = 0
  c.optim.max_grad_norm = 1.0
  c.sampling.temperature, c.sampling.top_k, c.sampling.top_p, c.sampling.min_p = 1.0, 0, 1.0, 0.0
  c.sampling.n = args.group
  c.sampling.max_new_tokens = args.new
  c.sampling.stop_token_ids = None if args.stop_at_eos else ()
  c.sampling.prompt_buckets = args.buckets
  c.reward.num_workers = 0
  c.reward.extract = EXTRACT
  c.train.num_steps = num_iterations
  c.train.prompts_per_step = args.prompts
  c.train.num_updates = 1
  c.train.num_minibatches = 1
  c.train.num_micro_batches = args.micro_batches
  c.train.remat = args.remat
  c.train.share_prompts = not args.whole_rows
  c.train.recompute_old_logp = False
  c.train.max_sampling_rounds = 1
  c.train.ref_refresh_steps = 0
  c.ckpt.every_steps = 10**9          # the loop still saves once at the end (a temp workdir)
  c.log.progress = False
  c.log.tensorboard = False
  return c


def run_ours(model, tokenizer, reward, args, num_iterations: int) -> list[dict[str, float]]:
  """Per-iteration {generation, scoring, training, total} seconds of jaxrl_llm's RL loop."""
  config = ours_config(args, num_iterations)
  rows = args.prompts * args.group
  with tempfile.TemporaryDirectory(prefix="rl_bench_ours_") as workdir:
    history, _ = loop.train_and_evaluate(config, workdir, model=model, tokenizer=tokenizer,
                                         reward=reward)
  return [{"generation": r["time/sample"], "scoring": r["time/score"],
           "training": r["time/train"],
           # tokens_per_s is completion tokens / (sample + score + rollout + train wall time)
           "total": r["completion/mean_length"] * rows / r["tokens_per_s"],
           "length": r["completion/mean_length"]} for r in history]


def _timed(fn, times: list[float]):
  """fn, appending each call's wall time to `times`."""
  def wrapper(*a, **kw):
    t0 = time.perf_counter()
    try:
      return fn(*a, **kw)
    finally:
      times.append(time.perf_counter() - t0)
  return wrapper


def run_trl(hf_folder: str, prompts: list[data.EncodedPrompt], tokenizer, reward, args,
            num_iterations: int) -> list[dict[str, float]]:
  """Per-iteration {generation, scoring, training, total} seconds of TRL's GRPOTrainer."""
  import datasets  # pylint: disable=g-import-not-at-top (slow imports, TRL side only)
  import transformers
  import trl

  examples = [p.example for p in prompts]
  texts = [tokenizer.decode(p.tokens) for p in prompts]    # already chat-templated

  def accuracy(completions, index, **kwargs):
    del kwargs
    return [reward(c, examples[i]) for c, i in zip(completions, index)]

  class StepTimer(transformers.TrainerCallback):
    def __init__(self):
      self.times, self.t0 = [], None

    def on_step_begin(self, args, state, control, **kwargs):
      self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
      self.times.append(time.perf_counter() - self.t0)

  rows = args.prompts * args.group
  hf = transformers.AutoModelForCausalLM.from_pretrained(hf_folder, dtype=torch.float32)
  hf_tokenizer = transformers.AutoTokenizer.from_pretrained(hf_folder)
  dataset = datasets.Dataset.from_dict({"prompt": texts, "index": list(range(len(texts)))})
  generate_s, rollout_s, timer = [], [], StepTimer()
  hf.generate = _timed(hf.generate, generate_s)
  with tempfile.TemporaryDirectory(prefix="rl_bench_trl_") as out:
    config = trl.GRPOConfig(
        output_dir=out, use_cpu=True, bf16=False, fp16=False, report_to="none",
        save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0,
        max_steps=num_iterations, shuffle_dataset=False,
        per_device_train_batch_size=rows // args.micro_batches,
        gradient_accumulation_steps=args.micro_batches,
        num_generations=args.group, max_completion_length=args.new,
        generation_kwargs=None if args.stop_at_eos else {"min_new_tokens": args.new},
        temperature=1.0, top_k=0, top_p=1.0, beta=0.0, loss_type="grpo",
        learning_rate=1e-6, max_grad_norm=1.0, gradient_checkpointing=args.remat != "none")
    trainer = trl.GRPOTrainer(model=hf, reward_funcs=accuracy, args=config,
                              train_dataset=dataset, processing_class=hf_tokenizer,
                              callbacks=[timer])
    trainer.remove_callback(transformers.PrinterCallback)
    trainer._generate_and_score_completions = _timed(  # pylint: disable=protected-access
        trainer._generate_and_score_completions, rollout_s)  # pylint: disable=protected-access
    trainer.train()
  lengths = [r["completions/mean_length"] for r in trainer.state.log_history
             if "completions/mean_length" in r]
  if not len(generate_s) == len(rollout_s) == len(timer.times) == num_iterations:
    raise RuntimeError(f"expected {num_iterations} generations and steps, timed "
                       f"{len(generate_s)} generate calls, {len(rollout_s)} rollouts and "
                       f"{len(timer.times)} steps: the TRL version lays out its step differently.")
  return [{"generation": g, "scoring": r - g, "training": t - r, "total": t, "length": n}
          for g, r, t, n in zip(generate_s, rollout_s, timer.times, lengths)]


def train_step_flops(config: models.ModelConfig, prompts: int, group: int, prompt_width: int,
                     completion_len: int, shared_prompts: bool = True) -> float:
  """Matmul FLOPs of one train step as it runs: 3x the forward (backward = 2x).

  With shared prompts (`RolloutBatch.shared_prompts`, what the RL loop's batches are) the
  prompt columns run once per prompt (P·Lp tokens, no LM head) and the completion columns once
  per row (P·G·T tokens over Lp + T keys, with the LM head); without, every row runs all its
  Lp + T columns, the LM head on T of them."""
  rows, hd, vocab = prompts * group, config.hidden_size, config.vocab_size
  if shared_prompts:
    prompt_head = 2.0 * prompts * prompt_width * hd * vocab
    prompt = forward_flops(config, prompts, prompt_width) - prompt_head
    own = forward_flops(config, rows, completion_len, context=prompt_width + completion_len)
    return 3.0 * (prompt + own)
  width = prompt_width + completion_len
  head = 2.0 * rows * (width - completion_len) * hd * vocab
  return 3.0 * (forward_flops(config, rows, width) - head)


def prompt_widths(prompts: list[data.EncodedPrompt], buckets: tuple[int, ...]) -> tuple[int, int]:
  """(our padded prompt width: the smallest bucket that fits, TRL's: the longest prompt)."""
  longest = max(len(p.tokens) for p in prompts)
  return next((b for b in buckets if b >= longest), longest), longest


def peak_rss_gb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def median(records: list[dict[str, float]], key: str) -> float:
  return float(np.median([r[key] for r in records]))


PHASES = ("generation", "scoring", "training", "total")


def print_iterations(title: str, results: list[tuple[str, list[dict[str, float]]]],
                     warmup: int) -> None:
  """One row per implementation (medians of the measured iterations), then TRL / ours."""
  table = []
  for name, records in results:
    measured = records[warmup:]
    table.append([name] + [f"{median(measured, k):.2f}" for k in PHASES]
                 + [f"{median(measured, 'length'):.0f}",
                    " / ".join(f"{r['total']:.1f}" for r in records[:warmup])])
  if len(results) == 2:
    ours, theirs = results[0][1][warmup:], results[1][1][warmup:]
    table.append(["ratio TRL / jaxrl_llm"]
                 + [f"{median(theirs, k) / median(ours, k):.2f}x" for k in PHASES] + ["", ""])
  print_table(title, ["implementation", "generation s", "scoring s", "training s",
                      "total s / iteration", "mean completion tokens", "warm-up iteration s"],
              table)


def print_train_flops(ours: list[dict[str, float]], prompts: list[data.EncodedPrompt],
                      config: models.ModelConfig, args, ceiling: float) -> float:
  """Per measured iteration: analytic train-step FLOPs over its measured time; returns the
  median fraction of the matmul ceiling."""
  rows, table, fractions = args.prompts * args.group, [], []
  for i in range(args.warmup, len(ours)):
    width, _ = prompt_widths(prompts[i * args.prompts:(i + 1) * args.prompts], args.buckets)
    shared = not args.whole_rows
    flops = train_step_flops(config, args.prompts, args.group, width, args.new, shared)
    rate = flops / ours[i]["training"]
    fractions.append(rate / ceiling)
    shape = (f"{args.prompts} x {width} + {rows} x {args.new}" if shared else
             f"{rows} x ({width} + {args.new})")
    table.append([i + 1, shape, f"{flops / 1e12:.2f}",
                  f"{ours[i]['training']:.2f}", f"{rate / 1e9:.1f}", f"{rate / ceiling:.0%}"])
  print_table(f"jaxrl_llm train phase (rollout + optimizer step) vs the matmul ceiling, jitted "
              f"2048^3 f32 in this process: {ceiling / 1e9:.1f} GFLOP/s",
              ["iteration", "tokens run (prompt, completion)", "TFLOP (analytic)", "s", "GFLOP/s",
               "of matmul ceiling"], table)
  return float(np.median(fractions))


def verdict(value: float, target: float) -> str:
  return "met" if value >= target else "not met"


def report(args, results, prompts, config: models.ModelConfig, ceiling: float,
           memory: list[str]) -> None:
  """Prints the iteration table, prompt widths and memory, the FLOP table and the targets."""
  stop = "stop at EOS" if args.stop_at_eos else "fixed length"
  remat = f", remat {args.remat}"
  print_iterations(
      f"SmolLM2-135M GRPO iteration: {args.prompts} prompts x {args.group} completions x "
      f"{args.new} tokens ({stop}), 1 optimizer step ({args.micro_batches} micro-batch(es)"
      f"{remat}), median of {args.iterations} after {args.warmup} warm-up; {os.cpu_count()} "
      f"cores, torch threads {args.torch_threads}, jax {jax.__version__}, torch "
      f"{torch.__version__}", results, args.warmup)
  widths = [prompt_widths(prompts[i * args.prompts:(i + 1) * args.prompts], args.buckets)
            for i in range(args.warmup, args.warmup + args.iterations)]
  print(f"\nprompt width of each measured iteration (+ {args.new} completion tokens): jaxrl_llm "
        f"{', '.join(str(w[0]) for w in widths)} (bucket), TRL "
        f"{', '.join(str(w[1]) for w in widths)} (longest prompt); peak RSS: {', '.join(memory)}")
  fraction = print_train_flops(results[0][1], prompts, config, args, ceiling)
  print("\nTargets:")
  if len(results) == 2:
    speedup = (median(results[1][1][args.warmup:], "total")
               / median(results[0][1][args.warmup:], "total"))
    print(f"  >= {TARGET_SPEEDUP:.0f}x faster per iteration than TRL: {speedup:.2f}x -> "
          f"{verdict(speedup, TARGET_SPEEDUP)}")
  print(f"  train step >= {TARGET_MATMUL_FRACTION:.0%} of the measured matmul rate: "
        f"{fraction:.0%} -> {verdict(fraction, TARGET_MATMUL_FRACTION)}")


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--prompts", type=int, default=4, help="P prompts per iteration")
  parser.add_argument("--group", type=int, default=8, help="G completions per prompt")
  parser.add_argument("--new", type=int, default=64, help="completion length (e.g. 128)")
  parser.add_argument("--iterations", type=int, default=2, help="measured iterations")
  parser.add_argument("--warmup", type=int, default=1, help="excluded first iterations")
  parser.add_argument("--micro_batches", type=int, default=4,
                      help="gradient accumulation steps in the one optimizer step")
  parser.add_argument("--whole_rows", action="store_true",
                      help="our train.share_prompts=False: every row runs its whole sequence, as "
                      "TRL's do (an ablation of running each group's prompt once)")
  parser.add_argument("--remat", choices=("none", "full", "dots"), default="dots",
                      help="our train.remat policy; TRL uses gradient checkpointing unless none")
  parser.add_argument("--stop_at_eos", action="store_true",
                      help="let completions stop at EOS (default: exactly --new tokens)")
  parser.add_argument("--buckets", default=",".join(map(str, sampling.DEFAULT_BUCKETS)),
                      help="our sampler's prompt-length buckets (TRL pads to the longest prompt)")
  parser.add_argument("--torch_threads", type=int, default=os.cpu_count() or 1)
  parser.add_argument("--skip_trl", action="store_true")
  args = parser.parse_args()
  args.buckets = tuple(int(b) for b in args.buckets.split(","))
  torch.set_num_threads(args.torch_threads)
  num_iterations = args.warmup + args.iterations
  t_start, load_start = time.perf_counter(), os.getloadavg()[0]
  ceilings = [matmul_flops_per_s()]

  model, tokenizer = models.from_pretrained("smollm2-135m-instruct")
  prompts = first_prompts(tokenizer, args.prompts * num_iterations)
  reward = rewards.reasoning_gym_reward(modes=EXTRACT)
  results = [("jaxrl_llm (jit, f32)", run_ours(model, tokenizer, reward, args, num_iterations))]
  memory = [f"jaxrl_llm {peak_rss_gb():.1f} GB"]
  ceilings.append(matmul_flops_per_s())
  ceiling = max(ceilings)       # other processes on the cores can only lower a measurement
  if not args.skip_trl:
    import trl  # pylint: disable=g-import-not-at-top (slow import)
    with tempfile.TemporaryDirectory(prefix="rl_bench_hf_") as hf_folder:
      models.save_pretrained(model, tokenizer, hf_folder)
      records = run_trl(hf_folder, prompts, tokenizer, reward, args, num_iterations)
    results.append((f"TRL {trl.__version__} GRPOTrainer (torch, f32)", records))
    memory.append(f"after TRL {peak_rss_gb():.1f} GB")

  report(args, results, prompts, model.config, ceiling, memory)
  print(f"\nwall time {time.perf_counter() - t_start:.0f} s; 1-minute load average "
        f"{load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end on "
        f"{os.cpu_count()} cores (other processes on them slow both sides, torch's OpenMP "
        "threads the most)")


if __name__ == "__main__":
  host.tune_malloc()   # JAXRL_LLM_TUNE_MALLOC=1: re-execute with malloc tuned (parallel/host.py)
  main()
