"""Functions behind the small command-line entry points in launch/ (which only parse flags)."""

import time

import jax

from jaxrl_llm import models, sampling


def generate(*, model: str, prompts: list[str], max_new_tokens: int = 64, temperature: float = 0.0,
             top_p: float = 1.0, top_k: int = 0, n: int = 1, seed: int = 0) -> list[list[str]]:
  """Loads `model`, samples `n` completions per chat prompt, prints and returns them."""
  t0 = time.perf_counter()
  lm, tokenizer = models.from_pretrained(model)
  if tokenizer is None:
    raise ValueError(f"{model} has no tokenizer; generate needs one to encode the prompts.")
  print(f"loaded {model} ({lm.config.num_params() / 1e6:.0f}M parameters) in "
        f"{time.perf_counter() - t0:.1f}s")
  ids = []
  for text in prompts:
    enc = tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                        add_generation_prompt=True, tokenize=True)
    ids.append(list(enc["input_ids"] if hasattr(enc, "keys") else enc))
  cfg = sampling.SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                                top_p=top_p, top_k=top_k, n=n)
  t0 = time.perf_counter()
  out = sampling.sample(lm, ids, jax.random.key(seed), cfg)
  tokens, lengths = jax.device_get((out.tokens, out.lengths))
  seconds = time.perf_counter() - t0
  texts = []
  for i, text in enumerate(prompts):
    group = []
    for j in range(n):
      row = i * n + j
      completion = tokenizer.decode(tokens[row, :lengths[row]], skip_special_tokens=True)
      group.append(completion)
      print(f"\n[prompt {i}] {text}\n[completion {j}] {completion}")
    texts.append(group)
  print(f"\n{int(lengths.sum())} tokens in {seconds:.1f}s (compilation included)")
  return texts


def evaluate(*, model: str, data: str, num_prompts: int, n: int, ks: list[int], temperature: float,
             max_new_tokens: int, reward: str, extract: list[str], batch_size: int, seed: int,
             output: str | None, base_model: str | None = None, gamma: float = 0.5):
  """Loads a model and a prompt source, evaluates, prints the table, writes JSON if asked.

  With `base_model` (the checkpoint `model` was RL-trained from), evaluates the test-time
  extrapolation (1 + gamma)·z_model − gamma·z_base instead (`sampling.extrapolation`).
  """
  from jaxrl_llm import data as data_lib
  from jaxrl_llm import eval as eval_lib
  from jaxrl_llm import rewards as rewards_lib

  rewards_by_name = {"reasoning_gym": rewards_lib.reasoning_gym_reward,
                     "math_verify": rewards_lib.math_verify_reward,
                     "exact_match": rewards_lib.exact_match_reward}
  if reward not in rewards_by_name:
    raise ValueError(f"Unknown reward {reward!r}; choose one of {sorted(rewards_by_name)}.")
  lm, tokenizer = models.from_pretrained(model)
  if tokenizer is None:
    raise ValueError(f"{model} has no tokenizer; evaluation needs one to build chat prompts.")
  base = None
  if base_model:
    base, _ = models.from_pretrained(base_model)
  source = data_lib.make_source(data)
  # maj@k votes on the answers the reward itself extracts (same modes), not on the default modes.
  result = eval_lib.evaluate(lm, tokenizer, source, rewards_by_name[reward](modes=extract),
                             answer_fn=rewards_lib.AnswerExtractor(modes=tuple(extract)),
                             num_prompts=num_prompts, n=n, ks=ks, temperature=temperature,
                             max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed,
                             base_model=base, gamma=gamma)
  name = f"{model} extrapolated from {base_model} (gamma={gamma})" if base else model
  print(f"\n{name} on {data} ({int(result.metrics['num_prompts'])} prompts, n={n}, "
        f"T={temperature})\n{result.table()}")
  if output:
    print(f"wrote {result.save(output)}")
  return result
