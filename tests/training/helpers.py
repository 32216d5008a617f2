"""Tiny models and random rollout batches for the training tests (no SmolLM2 needed).

Random batches look like the sampler's output: left-padded prompts shared within a group,
completions of random lengths (one row empty, to exercise the row counts of the aggregations),
pad ids after the stop, behaviour logprobs. Rewards are continuous so that no group is uniform.
"""
import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_llm import models, objectives as ob, parallel, sampling, training

# Every sharded dimension divides fsdp=4 and tensor=2: D=16, V=32, N=4, K=2, F=32.
TINY = models.ModelConfig(model_type="llama", vocab_size=32, hidden_size=16, intermediate_size=32,
                          num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8,
                          max_position_embeddings=64, eos_token_id=31, pad_token_id=0)


def tiny_params(seed: int = 0, config: models.ModelConfig = TINY):
  return models.init_params(config, jax.random.key(seed), std=0.3)


def random_completions(seed: int, num_prompts: int, group_size: int, *, prompt_width: int = 5,
                       width: int = 6, vocab: int = TINY.vocab_size, empty_row: bool = True
                       ) -> sampling.Completions:
  rng = np.random.default_rng(seed)
  b = num_prompts * group_size
  prompt_lens = np.repeat(rng.integers(1, prompt_width + 1, num_prompts), group_size)
  prompts = np.repeat(rng.integers(1, vocab - 1, (num_prompts, prompt_width)), group_size, axis=0)
  prompt_mask = (np.arange(prompt_width)[None, :] >= prompt_width - prompt_lens[:, None])
  prompts = np.where(prompt_mask, prompts, 0)
  lengths = rng.integers(1, width + 1, b)
  if empty_row:
    lengths[1] = 0
  mask = np.arange(width)[None, :] < lengths[:, None]
  tokens = np.where(mask, rng.integers(1, vocab - 1, (b, width)), 0)
  logp = np.where(mask, -rng.uniform(2.0, 5.0, (b, width)), 0.0)
  return sampling.Completions(
      tokens=jnp.asarray(tokens, jnp.int32), mask=jnp.asarray(mask, jnp.int32),
      logp=jnp.asarray(logp, jnp.float32), lengths=jnp.asarray(lengths, jnp.int32),
      truncated=jnp.asarray(lengths == width), prompt_tokens=jnp.asarray(prompts, jnp.int32),
      prompt_mask=jnp.asarray(prompt_mask, jnp.int32))


def random_batch(seed: int, num_prompts: int, group_size: int, **kwargs) -> training.RolloutBatch:
  comps = random_completions(seed, num_prompts, group_size, **kwargs)
  rewards = np.random.default_rng(seed + 1000).normal(size=num_prompts * group_size)
  return training.from_completions(comps, jnp.asarray(rewards, jnp.float32),
                                   group_size=group_size)


def objective_with(mode: str, *, kl_coef: float = 0.04, entropy_coef: float = 0.01):
  """PPO-clip + k3 KL + entropy bonus with aggregation `mode`: every forward output is used."""
  loss = [ob.ppo_clip(0.2, 0.2)]
  if kl_coef:
    loss.append(ob.kl_penalty(kl_coef, "k3"))
  if entropy_coef:
    loss.append(ob.entropy_bonus(entropy_coef))
  return ob.Objective(rollout=ob.chain(ob.group_advantage("group")),
                      loss=ob.chain(*loss, ob.aggregate(mode))).check()


def one_device_mesh():
  return parallel.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1])


_ROLLOUTS = {}


def rollout_fn(mesh, state, batch, objective, recompute_old_logp=True):
  """A jitted rollout for this mesh / objective / batch shape, compiled once per test session."""
  key = (mesh, objective, recompute_old_logp, state.ref_params is None, batch.batch_size)
  if key not in _ROLLOUTS:
    _ROLLOUTS[key] = training.jit_rollout(mesh, state, batch, model_config=TINY,
                                          objective=objective,
                                          recompute_old_logp=recompute_old_logp)
  return _ROLLOUTS[key]


def prepared(objective, batch, params, *, ref_params=None, mesh=None, optimizer=None,
             recompute_old_logp=True):
  """(state, shardings, rolled-out batch) on `mesh` (default: one device)."""
  mesh = mesh or one_device_mesh()
  optimizer = optimizer or training.optim.optimizer(learning_rate=1e-3, eps=1e-6)
  obj_state = training.init_objective_state(objective, batch)
  state, shardings = training.init_train_state(
      params, optimizer, jax.random.key(3), mesh, objective_state=obj_state,
      ref_params=ref_params)
  batch = training.shard_batch(batch, mesh)
  roll = rollout_fn(mesh, state, batch, objective, recompute_old_logp)
  state, batch, _ = roll(state, batch)
  return state, shardings, batch


CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def byte_tokenizer():
  """A real (fast, byte-level) tokenizer of 256 byte tokens + 3 specials, with a chat template.

  Loads in milliseconds where SmolLM2's, parsed from its GGUF, takes about 20 s.
  """
  import tokenizers
  import transformers
  from tokenizers import decoders, models as tok_models, pre_tokenizers

  alphabet = pre_tokenizers.ByteLevel.alphabet()
  vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
  tok = tokenizers.Tokenizer(tok_models.BPE(vocab=vocab, merges=[]))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>",
                                              pad_token="<pad>", bos_token="<bos>")
  fast.chat_template = CHAT_TEMPLATE
  return fast


def byte_mean_reward(completion: str, example) -> float:
  """A reward a random model earns in varying amounts: the mean byte value of its text / 255."""
  del example
  raw = completion.encode("utf-8", "replace")
  return sum(raw) / (255.0 * len(raw)) if raw else 0.0


def byte_parity_reward(completion: str, example) -> float:
  """1 when the completion's byte sum is even: a binary verifier a random model passes about half
  the time, so a group of n holds correct and incorrect samples with probability 1 − 2^(1−n)."""
  del example
  return float(sum(completion.encode("utf-8", "replace")) % 2 == 0)


def load_config(name: str, arg=None):
  """`configs/<name>.py`'s `get_config(arg)`, loaded by path as launch/train.py does."""
  import pathlib
  from jaxrl_llm.training import config_files
  return config_files.load_config(
      pathlib.Path(__file__).resolve().parents[2] / "configs" / f"{name}.py", arg)


def byte_mean_reward_hanging_after(completion: str, example, *, marker: str) -> float:
  """`byte_mean_reward`, except that it hangs once `marker` (a file) has content: lets a test
  stop a run in the middle of an iteration, the way a crash or a pre-emption would."""
  import os
  import time
  if os.path.exists(marker) and os.path.getsize(marker) > 0:
    time.sleep(3600)
  return byte_mean_reward(completion, example)


_TINY_MODEL: dict = {}


def tiny_random_model():
  """(model, byte tokenizer, tiny config): configs/tiny.py's random 2-layer model sized for the
  byte tokenizer, built once per test session (tests that need a model but not a trained one)."""
  if not _TINY_MODEL:
    from jaxrl_llm.training import loop
    c = load_config("tiny")
    tokenizer = byte_tokenizer()
    c.model.random_config.vocab_size = len(tokenizer)
    model, _ = loop.load_model(c.model, tokenizer)
    _TINY_MODEL.update(model=model, tokenizer=tokenizer, config=c)
  return _TINY_MODEL["model"], _TINY_MODEL["tokenizer"], _TINY_MODEL["config"]

