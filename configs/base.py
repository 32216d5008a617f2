"""Defaults of every training run: one section per subsystem. Other configs shrink or override it.

  python launch/train.py --config=configs/base.py --config.objective.kl_coef=0.0

Sections: `model` (what to train), `sampling` (the sampler; `n` is the group size), `objective`
(a preset and its arguments, generated from the preset's signature), `optim` (generated from
`training.optim.optimizer`'s signature), `mesh` (`data` x `fsdp` x `tensor`, one may be -1), `data`
(a prompt source spec), `reward` (verifier and runner), `train` (the loop: steps, batch, updates per
rollout batch), `ckpt`, `log`. Defaults that belong to a function live in its signature only.
"""
import ml_collections

from jaxrl_llm.objectives import presets
from jaxrl_llm.training import optim

REWARDS = ("reasoning_gym", "math_verify", "exact_match")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The base config. `arg` is unused here (method configs pass it on, e.g. a model name)."""
  del arg
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.model = ml_collections.ConfigDict()
  c.model.source = "smollm2-135m-instruct"   # models.from_pretrained source
  c.model.dtype = "float32"
  # Random initialisation instead of `source` (tests): the architecture, with `source` still
  # giving the tokenizer (vocab_size must cover it).
  c.model.random_init = False
  c.model.random_config = ml_collections.ConfigDict(dict(
      model_type="llama", vocab_size=49152, hidden_size=32, intermediate_size=64, num_layers=2,
      num_heads=4, num_kv_heads=2, head_dim=8, max_position_embeddings=2048,
      tie_word_embeddings=True))

  c.sampling = ml_collections.ConfigDict(dict(
      max_new_tokens=128, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, n=8, decode_chunk=16))

  c.objective = presets.default_config("grpo")
  c.optim = optim.default_config()
  c.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=-1, tensor=1, num_devices=-1))

  c.data = ml_collections.ConfigDict(dict(
      source="reasoning_gym:chain_sum?size=1000&seed=0&answer_format=answer_tag",
      max_prompt_tokens=256))

  c.reward = ml_collections.ConfigDict(dict(
      name="reasoning_gym", extract=("answer_tag", "last_number"), timeout_s=10.0, num_workers=2))

  c.train = ml_collections.ConfigDict(dict(
      num_steps=20,              # RL iterations (rollout batches)
      prompts_per_step=8,        # P; the batch is P x sampling.n rows
      num_updates=1,             # mu: passes over each rollout batch
      num_minibatches=1,         # optimizer steps per pass, each on whole groups
      num_micro_batches=1,       # gradient accumulation inside one optimizer step
      recompute_old_logp=False,  # trainer recomputes the behaviour logp (logs the mismatch)
      max_sampling_rounds=1,     # > 1: DAPO's dynamic sampling (refill with informative groups)
      ref_refresh_steps=0,       # > 0: reference <- policy every that many iterations
      remat=False,
      chunk_size=128))           # positions per logprob chunk

  c.ckpt = ml_collections.ConfigDict(dict(every_steps=50, keep=3))
  c.log = ml_collections.ConfigDict(dict(progress=True, tensorboard=True))
  return c
