"""The scan-based sampler: HF-exact greedy, correct sampling distributions, logp, keys, meshes."""
import dataclasses
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from jax.sharding import Mesh

from jaxrl_llm import models, sampling
from jaxrl_llm.sampling import sampler as sampler_lib

TINY = models.ModelConfig(model_type="llama", vocab_size=12, hidden_size=16, intermediate_size=24,
                          num_layers=2, num_heads=2, num_kv_heads=1, head_dim=8,
                          max_position_embeddings=64, eos_token_id=11, pad_token_id=0)


@pytest.fixture(scope="module")
def tiny():
  params = models.init_params(TINY, jax.random.key(1), std=0.6)
  return models.Transformer(TINY, params)


def _chat(tokenizer, text):
  ids = tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                      add_generation_prompt=True, tokenize=True)
  return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


# ----------------------------------------------------------------------------------- HF greedy


GREEDY_PROMPTS = [
    "What is 2+2?", "Name the capital of France.", "Write a haiku about the sea.",
    "Explain photosynthesis in one sentence.", "List three prime numbers.",
    "Translate 'good morning' into Spanish.", "What is the derivative of x^2?", "Hi",
    "Give me a short motivational quote about learning mathematics every day.",
]


def test_greedy_equals_hf_generate_token_for_token(smollm2, smollm2_hf):
  model, tokenizer = smollm2
  prompts = [_chat(tokenizer, p) for p in GREEDY_PROMPTS]
  assert len({len(p) for p in prompts}) >= 6, "prompts of different lengths"
  cfg = sampling.SamplingConfig(max_new_tokens=32, temperature=0.0)
  out = sampling.sample(model, prompts, jax.random.key(0), cfg)
  longest = max(map(len, prompts))
  pad = tokenizer.pad_token_id
  ids = torch.tensor([[pad] * (longest - len(p)) + p for p in prompts])
  attn = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts])
  with torch.no_grad():
    ref = smollm2_hf.generate(ids, attention_mask=attn, max_new_tokens=32, do_sample=False)
  ref = ref[:, longest:].numpy()
  tokens, mask = np.asarray(out.tokens), np.asarray(out.mask)
  for i in range(len(prompts)):
    n = int(mask[i].sum())
    assert n == int(out.lengths[i])
    np.testing.assert_array_equal(tokens[i, :n], ref[i, :n], err_msg=GREEDY_PROMPTS[i])
    if n < 32:     # stopped: the stop token is the last kept token, and HF stopped there too
      assert tokens[i, n - 1] in model.config.eos_token_ids and not bool(out.truncated[i])
    else:
      assert bool(out.truncated[i]) == (tokens[i, 31] not in model.config.eos_token_ids)


# ----------------------------------------------------------------------------------- distributions


def _expected(logits, cfg):
  """Float64 NumPy: softmax(logits / T) after top-k / top-p / min-p truncation and renormalisation."""
  z = logits.astype(np.float64) / cfg.temperature
  p = np.exp(z - z.max())
  p /= p.sum()
  keep = np.ones_like(p, bool)
  if cfg.top_k:
    keep &= p >= np.sort(p)[::-1][cfg.top_k - 1]
  if cfg.top_p < 1:
    order = np.argsort(-p)
    before = np.cumsum(p[order]) - p[order]
    kept = np.zeros_like(keep)
    kept[order[before < cfg.top_p]] = True
    keep &= kept
  if cfg.min_p:
    keep &= p >= cfg.min_p * p.max()
  q = np.where(keep, p, 0.0)
  return q / q.sum(), p


@pytest.mark.parametrize("kw", [dict(temperature=0.7), dict(temperature=1.0, top_k=3),
                                dict(temperature=1.3, top_p=0.7), dict(temperature=1.0, min_p=0.3),
                                dict(temperature=0.9, top_k=6, top_p=0.8)])
def test_first_token_distribution(tiny, kw):
  cfg = sampling.SamplingConfig(max_new_tokens=1, n=6000, **kw)
  prompt = [3, 5, 7]
  out = sampling.sample(tiny, [prompt], jax.random.key(42), cfg)
  logits = np.asarray(tiny(np.asarray([prompt], np.int32)))[0, -1]
  expected, untruncated = _expected(logits, cfg)
  counts = np.bincount(np.asarray(out.tokens[:, 0]), minlength=TINY.vocab_size)
  empirical = counts / counts.sum()
  tv = 0.5 * np.abs(empirical - expected).sum()
  assert tv < 0.03, (tv, empirical.round(3), expected.round(3))
  assert counts[expected == 0].sum() == 0, "a truncated token was sampled"
  if not np.allclose(expected, untruncated):   # the test can tell truncation apart
    assert 0.5 * np.abs(expected - untruncated).sum() > 0.05


def test_logp_equals_trainer_recomputation(tiny):
  cfg = sampling.SamplingConfig(max_new_tokens=10, temperature=0.8, top_p=0.9, n=4)
  out = sampling.sample(tiny, [[1, 2, 3], [4, 5, 6, 7, 8]], jax.random.key(3), cfg)
  tokens, mask = out.sequences()
  logp, _ = models.sequence_logp(tiny.params(), TINY, tokens, mask, temperature=0.8)
  lp = out.prompt_tokens.shape[1]
  recomputed = np.asarray(logp[:, lp - 1:])
  m = np.asarray(out.mask).astype(bool)
  np.testing.assert_allclose(np.asarray(out.logp)[m], recomputed[m], atol=1e-5)
  assert np.all(np.asarray(out.logp)[~m] == 0)


def test_keys_and_groups(tiny):
  cfg = sampling.SamplingConfig(max_new_tokens=8, temperature=1.0, n=4)
  a = sampling.sample(tiny, [[1, 2], [3]], jax.random.key(0), cfg)
  b = sampling.sample(tiny, [[1, 2], [3]], jax.random.key(0), cfg)
  c = sampling.sample(tiny, [[1, 2], [3]], jax.random.key(1), cfg)
  np.testing.assert_array_equal(np.asarray(a.tokens), np.asarray(b.tokens))
  assert not np.array_equal(np.asarray(a.tokens), np.asarray(c.tokens))
  group = np.asarray(a.tokens[:4])
  assert len({tuple(r) for r in group}) > 1, "the n samples of a group must differ"
  # group-major layout: rows 0..3 share prompt 0
  np.testing.assert_array_equal(np.asarray(a.prompt_tokens[:4]),
                                np.repeat(np.asarray(a.prompt_tokens[:1]), 4, 0))


def test_prefill_once_per_group_equals_prefill_per_row(tiny):
  """`sample` prefills each prompt once and repeats its cache for the n rows of its group; that
  must give the per-row prefill's completions (generate's group_size=1 on the same repeated
  rows), logp within float32 rounding (matmuls over 3 rows vs 9 may round differently)."""
  cfg = sampling.SamplingConfig(max_new_tokens=9, temperature=1.0, top_k=6, n=3)
  prompts = [[1, 2, 3], [4, 5, 6, 7, 8], [9]]
  shared = sampling.sample(tiny, prompts, jax.random.key(4), cfg)
  tokens, mask = sampler_lib.pad_prompts(prompts, TINY, cfg)
  rows = jnp.asarray(np.repeat(tokens, 3, axis=0)), jnp.asarray(np.repeat(mask, 3, axis=0))
  per_row = sampler_lib.generate(tiny.params(), TINY, *rows, jax.random.key(4), cfg, group_size=1)
  np.testing.assert_array_equal(np.asarray(shared.tokens), np.asarray(per_row.tokens))
  np.testing.assert_array_equal(np.asarray(shared.mask), np.asarray(per_row.mask))
  np.testing.assert_allclose(np.asarray(shared.logp), np.asarray(per_row.logp), atol=1e-5)
  cache = models.KVCache.create(TINY, 2, 5)
  cache = cache.replace(k=cache.k.at[:, 1].set(1.0), valid=cache.valid.at[1, 2].set(True))
  for c in (cache, cache.unstack()):
    r = c.repeat(3)
    assert np.asarray(r.valid).sum() == 3 and np.asarray(r.valid[3:, 2]).all()
    k = np.stack(r.k) if isinstance(r.k, tuple) else np.asarray(r.k)
    assert k.shape[1] == 6 and (k[:, 3:] == 1).all() and (k[:, :3] == 0).all()
  with pytest.raises(ValueError, match="group_size=4 must be >= 1 and divide the 9 rows"):
    sampler_lib.generate(tiny.params(), TINY, *rows, jax.random.key(4), cfg, group_size=4)


def test_stop_tokens_mask_and_truncation(tiny):
  cfg = sampling.SamplingConfig(max_new_tokens=12, temperature=1.5, n=64, stop_token_ids=(4, 9))
  out = sampling.sample(tiny, [[1, 2, 3]], jax.random.key(5), cfg)
  tokens, mask = np.asarray(out.tokens), np.asarray(out.mask)
  for row, m, trunc, length in zip(tokens, mask, np.asarray(out.truncated), np.asarray(out.lengths)):
    stops = np.flatnonzero(np.isin(row[:length], (4, 9)))
    assert m[:length].all() and not m[length:].any()
    if trunc:
      assert length == 12 and stops.size == 0
    else:
      assert stops.tolist() == [length - 1]            # the stop token ends it and is kept
      assert (row[length:] == TINY.pad_token_id).all()
  assert np.asarray(out.truncated).any() and not np.asarray(out.truncated).all()


def test_no_retrace_for_same_bucket(tiny):
  cfg = sampling.SamplingConfig(max_new_tokens=5, temperature=1.0, n=2)
  sampling.sample(tiny, [[1, 2, 3], [4]], jax.random.key(0), cfg)
  before = sampler_lib._generate._cache_size()
  sampling.sample(tiny, [[5, 6], [7, 8, 9, 10]], jax.random.key(1), cfg)   # same bucket (16)
  assert sampler_lib._generate._cache_size() == before


def test_one_and_eight_devices_give_same_completions(tiny):
  assert jax.device_count() == 8
  cfg = sampling.SamplingConfig(max_new_tokens=6, temperature=1.0, n=4)
  prompts = [[1, 2, 3], [4, 5]]
  one = sampling.sample(tiny, prompts, jax.random.key(9), cfg)
  mesh = Mesh(np.array(jax.devices()).reshape(8), ("data",))
  params = jax.device_put(tiny.params(), jax.sharding.NamedSharding(mesh, jax.P()))
  eight = sampling.sample(tiny, prompts, jax.random.key(9), cfg, params=params, mesh=mesh)
  assert len(eight.tokens.sharding.device_set) == 8
  np.testing.assert_array_equal(np.asarray(one.tokens), np.asarray(eight.tokens))
  np.testing.assert_allclose(np.asarray(one.logp), np.asarray(eight.logp), atol=1e-5)


def test_extrapolation(tiny):
  cfg = sampling.SamplingConfig(max_new_tokens=6, temperature=0.0)
  alone = sampling.sample(tiny, [[1, 2, 3]], jax.random.key(0), cfg)
  with_self = sampling.sample(tiny, [[1, 2, 3]], jax.random.key(0), cfg, base_model=tiny, gamma=2.0)
  np.testing.assert_array_equal(np.asarray(alone.tokens), np.asarray(with_self.tokens))
  rl = jnp.asarray([[0.0, 1.0, 2.0]])
  base = jnp.asarray([[0.0, 0.0, 0.0]])
  np.testing.assert_allclose(np.asarray(sampling.processors.extrapolate(rl, base, 0.0)), rl)
  np.testing.assert_allclose(np.asarray(sampling.processors.extrapolate(rl, rl + 3.0, 0.7)),
                             np.asarray(rl) - 2.1)   # a constant shift: same distribution
  other = models.Transformer(TINY, models.init_params(TINY, jax.random.key(7), std=0.6))
  mixed = sampling.sample(tiny, [[1, 2, 3]], jax.random.key(0),
                          dataclasses.replace(cfg, max_new_tokens=1), base_model=other, gamma=1.0)
  z_rl = np.asarray(tiny(np.asarray([[1, 2, 3]], np.int32)))[0, -1]
  z_base = np.asarray(other(np.asarray([[1, 2, 3]], np.int32)))[0, -1]
  assert int(mixed.tokens[0, 0]) == int(np.argmax(2 * z_rl - z_base))


def test_extrapolation_helper_is_sample_with_a_base_model(tiny):
  """`extrapolation(rl, base, gamma)` samples exactly as `sample(rl, ..., base_model=base,
  gamma=gamma)`, greedy and at T = 1; gamma = 0 is plain sampling from the RL model."""
  other = models.Transformer(TINY, models.init_params(TINY, jax.random.key(7), std=0.6))
  prompts, key = [[1, 2, 3], [4, 5, 6, 7]], jax.random.key(3)
  greedy = sampling.SamplingConfig(max_new_tokens=8, temperature=0.0)
  plain = sampling.sample(tiny, prompts, key, greedy)
  helper = sampling.extrapolation(tiny, other, gamma=1.5)
  for cfg in (greedy, sampling.SamplingConfig(max_new_tokens=8, temperature=1.0, n=3)):
    out = helper(prompts, key, cfg)
    direct = sampling.sample(tiny, prompts, key, cfg, base_model=other, gamma=1.5)
    np.testing.assert_array_equal(np.asarray(out.tokens), np.asarray(direct.tokens))
    np.testing.assert_array_equal(np.asarray(out.logp), np.asarray(direct.logp))
  # The base model really enters: greedy tokens change with gamma = 1.5, and not with gamma = 0.
  assert not np.array_equal(np.asarray(helper(prompts, key, greedy).tokens),
                            np.asarray(plain.tokens))
  zero = sampling.extrapolation(tiny, other, gamma=0.0)(prompts, key, greedy)
  np.testing.assert_array_equal(np.asarray(zero.tokens), np.asarray(plain.tokens))
  np.testing.assert_array_equal(np.asarray(zero.logp), np.asarray(plain.logp))
  # `params` stands in for the RL model's parameters: the base's own params give the base's logits.
  own = helper(prompts, key, greedy, params=other.params())
  base_alone = sampling.sample(other, prompts, key, greedy)
  np.testing.assert_array_equal(np.asarray(own.tokens), np.asarray(base_alone.tokens))
  assert inspect.signature(sampling.extrapolation).parameters["gamma"].default == 0.5


def test_extrapolation_helper_rejects_bad_inputs(tiny):
  wider = dataclasses.replace(TINY, vocab_size=16)
  with pytest.raises(ValueError, match="same vocabulary.*12 tokens, base_model 16"):
    sampling.extrapolation(tiny, models.Transformer(wider, models.init_params(
        wider, jax.random.key(0))), gamma=0.5)
  with pytest.raises(ValueError, match="gamma must be a finite number"):
    sampling.extrapolation(tiny, tiny, gamma=float("nan"))


# ----------------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("kw,match", [
    (dict(n=0), "n .* must be >= 1"),
    (dict(temperature=-0.5), "temperature must be >= 0"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
    (dict(max_new_tokens=0), "max_new_tokens must be >= 1"),
])
def test_bad_config(kw, match):
  with pytest.raises(ValueError, match=match):
    sampling.SamplingConfig(**kw)


def test_bad_prompts(tiny):
  cfg = sampling.SamplingConfig(max_new_tokens=4)
  with pytest.raises(ValueError, match="prompt 1 is empty"):
    sampling.sample(tiny, [[1], []], jax.random.key(0), cfg)
  with pytest.raises(ValueError, match="prompts is empty"):
    sampling.sample(tiny, [], jax.random.key(0), cfg)
  with pytest.raises(ValueError, match=r"token id 12, outside the vocabulary \[0, 12\)"):
    sampling.sample(tiny, [[1, 12]], jax.random.key(0), cfg)
  with pytest.raises(ValueError, match="exceeds the model's context of 64 tokens"):
    sampling.sample(tiny, [list(range(1, 11)) * 7], jax.random.key(0), cfg)
  with pytest.raises(ValueError, match="is a string"):
    sampling.sample(tiny, ["hello"], jax.random.key(0), cfg)
