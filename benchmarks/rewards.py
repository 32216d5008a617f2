"""Reward throughput: completions scored per second, serial loop vs `RewardRunner`, on CPU.

Two workloads of 1,000 synthetic completions each (half right, half wrong, in `<think>/<answer>` or
`\\boxed{}` form, with a few hundred characters of reasoning text):
  * math-verify: `math_verify_reward` + `format_reward` on fraction/LaTeX/integer references;
  * reasoning-gym: `reasoning_gym_reward` on items of four real tasks.
"serial" calls the reward function in a plain loop in this process; "runner" is `RewardRunner` with
one worker process per core (timeout 10 s per sample), timed after its workers are up. Each is the
median of `--repeats` runs, interleaved so that load from other processes hits both alike. The
reference is the serial loop: the ratio is runner / serial.

  python benchmarks/rewards.py [--n 1000 --workers N]
"""
import argparse
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxrl_llm import data, rewards  # noqa: E402

_FILLER = ("Let me work through this carefully. First I restate the problem, then I set up the "
           "quantities and simplify step by step, checking each intermediate result. ")

# (reference, equal spellings, wrong answers that look close)
_MATH_ITEMS = [
    (r"\frac{3}{4}", ["0.75", r"\dfrac{3}{4}", "3/4"], ["0.7", r"\frac{4}{3}"]),
    ("12", ["12", "12.0", r"12\text{ apples}"], ["13", "-12"]),
    (r"5\sqrt{2}", [r"\sqrt{50}", r"5\sqrt{2}"], [r"5\sqrt{3}", "5"]),
    ("(-2, 2)", ["(-2,2)"], ["[-2, 2]", "(-2, 3)"]),
    (r"2\pi", [r"2\pi", "6.283185"], [r"\pi", "6.28"]),
    ("1325", ["1,325", "1325"], ["1324", "1,235"]),
]


def _wrap(answer: str, rng: random.Random, boxed_frac: float = 0.5) -> str:
  thinking = _FILLER * rng.randint(1, 3)
  if rng.random() >= boxed_frac:
    return f"<think>{thinking}</think>\n<answer>{answer}</answer>"
  return f"{thinking}So the final answer is $\\boxed{{{answer}}}$."


def math_workload(n: int, seed: int = 0):
  rng = random.Random(seed)
  completions, examples = [], []
  for i in range(n):
    reference, right, wrong = _MATH_ITEMS[i % len(_MATH_ITEMS)]
    answer = rng.choice(right if i % 2 else wrong)
    completions.append(_wrap(answer, rng))
    examples.append(data.Example([{"role": "user", "content": "?"}], reference, {}))
  reward = rewards.weighted_sum({"accuracy": rewards.math_verify_reward(),
                                 "format": (rewards.format_reward(), 0.1)})
  return reward, completions, examples


def reasoning_gym_workload(n: int, seed: int = 0):
  rng = random.Random(seed)
  tasks = ["chain_sum", "gcd", "caesar_cipher", "word_sorting"]
  sources = [data.make_source(f"reasoning_gym:{t}?size={n}&seed={seed}") for t in tasks]
  completions, examples = [], []
  for i in range(n):
    example = next(sources[i % len(sources)])
    answer = example.answer if i % 2 else example.answer[::-1] + "0"
    completions.append(_wrap(answer, rng, boxed_frac=0.0))  # reasoning-gym asks for <answer> tags.
    examples.append(example)
  return rewards.weighted_sum({"accuracy": rewards.reasoning_gym_reward()}), completions, examples


def _serial_once(reward, completions, examples) -> tuple[float, float]:
  start = time.perf_counter()
  total = sum(reward(c, e) for c, e in zip(completions, examples))
  return time.perf_counter() - start, total / len(completions)


def measure(reward, completions, examples, workers: int, repeats: int):
  """Median rates (completions/s) of the serial loop and the runner, measured interleaved."""
  _serial_once(reward, completions[:50], examples[:50])  # Warm-up: imports, caches, scorers.
  serial_times, runner_times, failures = [], [], 0
  with rewards.RewardRunner(reward, num_workers=workers, timeout_s=10.0) as runner:
    runner.score(completions[:50], examples[:50])  # Workers up and warm.
    for _ in range(repeats):
      elapsed, serial_mean = _serial_once(reward, completions, examples)
      serial_times.append(elapsed)
      start = time.perf_counter()
      result = runner.score(completions, examples)
      runner_times.append(time.perf_counter() - start)
      failures += int(result.failed.sum())
      if abs(float(result.rewards.mean()) - serial_mean) > 1e-6:
        raise AssertionError(f"runner mean reward {result.rewards.mean()} != serial {serial_mean}")
  n = len(completions)
  serial_rate = n / statistics.median(serial_times)
  runner_rate = n / statistics.median(runner_times)
  return serial_rate, runner_rate, failures, serial_mean


def main():
  from benchmarks.common import print_table
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--n", type=int, default=1000)
  parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  rows = []
  for name, build in (("math-verify + format", math_workload),
                      ("reasoning-gym", reasoning_gym_workload)):
    reward, completions, examples = build(args.n)
    serial, pooled, failures, serial_mean = measure(reward, completions, examples, args.workers,
                                                    args.repeats)
    rows.append([name, args.n, f"{serial:,.0f}", f"{pooled:,.0f}", f"{pooled / serial:.2f}x",
                 args.workers, failures, f"{serial_mean:.3f}"])
  load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
  print_table(f"Completions scored per second (CPU, {os.cpu_count()} cores, load average {load})",
              ["reward", "completions", "serial/s", "runner/s", "runner/serial", "workers",
               "failures", "mean reward"], rows)


if __name__ == "__main__":
  main()
