"""Logits parity with Hugging Face transformers' PyTorch models on the same (random tiny) weights."""
import json

import numpy as np
import pytest

from jaxrl_llm import models
from tests.models import hf_tiny

TOL = 1e-4


def _batch(vocab, rng, lengths, total):
  """Left-padded batch: row i has `lengths[i]` real tokens, pads (id 0, mask 0) on the left."""
  tokens = np.zeros((len(lengths), total), np.int32)
  mask = np.zeros((len(lengths), total), np.int32)
  for i, n in enumerate(lengths):
    tokens[i, total - n:] = rng.integers(3, vocab, n)
    mask[i, total - n:] = 1
  return tokens, mask


@pytest.fixture(scope="module", params=sorted(hf_tiny.FAMILIES))
def family(request, tmp_path_factory):
  hf = hf_tiny.make_hf_model(request.param)
  folder = hf_tiny.save_hf(hf, tmp_path_factory.mktemp(request.param))
  ours, tok = models.from_pretrained(folder)
  return request.param, hf, ours, folder



def test_logits_match_hf_unpadded(family):
  name, hf, ours, _ = family
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, hf.config.vocab_size, (2, 24)).astype(np.int32)
  ref = hf_tiny.hf_logits(hf, tokens)
  got = np.asarray(ours(tokens))
  assert np.abs(ref).max() > 1.0, "weights too small for a meaningful comparison"
  np.testing.assert_allclose(got, ref, atol=TOL, rtol=0, err_msg=name)


def test_logits_match_hf_left_padded(family):
  name, hf, ours, _ = family
  rng = np.random.default_rng(1)
  tokens, mask = _batch(hf.config.vocab_size, rng, [24, 17, 5, 1], 24)
  ref = hf_tiny.hf_logits(hf, tokens, mask)
  got = np.asarray(ours(tokens, attention_mask=mask))
  real = mask.astype(bool)
  np.testing.assert_allclose(got[real], ref[real], atol=TOL, rtol=0, err_msg=name)
  # A padded row equals the same row run alone without padding.
  alone = np.asarray(ours(tokens[1:2, 24 - 17:]))
  np.testing.assert_allclose(got[1, 24 - 17:], alone[0], atol=TOL, rtol=0)


def test_config_read_from_hf(family):
  name, hf, ours, _ = family
  c = ours.config
  assert c.num_layers == hf.config.num_hidden_layers
  assert c.num_kv_heads == hf.config.num_key_value_heads
  assert c.qk_norm == (name == "qwen3")
  assert c.qkv_bias == (name in ("qwen2", "llama_untied_bias"))
  assert c.tie_word_embeddings == hf.config.tie_word_embeddings
  if name == "llama3_rope_scaling":
    assert c.rope_scaling.rope_type == "llama3" and c.rope_scaling.factor == 8.0


def test_both_rope_spellings_give_same_logits(tmp_path):
  """transformers 5 writes `rope_parameters`; older configs have `rope_theta` + `rope_scaling`."""
  hf = hf_tiny.make_hf_model("llama3_rope_scaling")
  folder = hf_tiny.save_hf(hf, tmp_path / "new")
  cfg = json.loads((folder / "config.json").read_text())
  assert "rope_parameters" in cfg or "rope_scaling" in cfg
  new, _ = models.from_pretrained(folder)

  def to_old(c):
    params = c.pop("rope_parameters", None) or {}
    c["rope_theta"] = params.pop("rope_theta", c.get("rope_theta"))
    params["type"] = params.pop("rope_type")          # the oldest spelling of the key
    c["rope_scaling"] = params
    return c

  hf_tiny.rewrite_config(folder, to_old)
  old, _ = models.from_pretrained(folder)
  assert old.config == new.config
  tokens = np.arange(40, dtype=np.int32)[None] % 97
  np.testing.assert_array_equal(np.asarray(old(tokens)), np.asarray(new(tokens)))
  np.testing.assert_allclose(np.asarray(new(tokens)), hf_tiny.hf_logits(hf, tokens), atol=TOL)


def _decode_rest(params, config, tokens, mask, start, first_logits, cache):
  """Feeds tokens[:, start:] one at a time through `cache`: (logits of every position, cache)."""
  import jax.numpy as jnp
  steps = [np.asarray(first_logits)]
  for t in range(start, tokens.shape[1]):
    out = models.forward(params, config, jnp.asarray(tokens[:, t:t + 1]),
                         attention_mask=jnp.asarray(mask[:, t:t + 1]), cache=cache)
    cache = out.cache
    steps.append(np.asarray(out.logits))
  return np.concatenate(steps, axis=1), cache


def test_kv_cache_prefill_then_decode_matches_full_forward(family):
  """Prefill a left-padded prompt into a cache, decode token by token: same logits as one pass."""
  import jax.numpy as jnp
  _, hf, ours, _ = family
  rng = np.random.default_rng(2)
  tokens, mask = _batch(hf.config.vocab_size, rng, [12, 7, 3], 16)
  prompt_len = 10
  full = np.asarray(ours(tokens, attention_mask=mask))
  params, config = ours.params(), ours.config
  cache = models.KVCache.create(config, tokens.shape[0], 20)
  out = models.forward(params, config, jnp.asarray(tokens[:, :prompt_len]),
                       attention_mask=jnp.asarray(mask[:, :prompt_len]), cache=cache)
  stepped, cache = _decode_rest(params, config, tokens, mask, prompt_len, out.logits, out.cache)
  real = mask.astype(bool)
  np.testing.assert_allclose(stepped[real], full[real], atol=TOL, rtol=0)
  assert int(cache.index) == tokens.shape[1]


def test_decode_with_fused_per_layer_weights_matches_hf(family):
  """The sampler's decode form (q/k/v and gate/up fused, one buffer per layer, per-layer cache)
  gives HF's logits at every real position; a full pass with fused weights equals the unfused."""
  import jax.numpy as jnp
  _, hf, ours, _ = family
  rng = np.random.default_rng(3)
  tokens, mask = _batch(hf.config.vocab_size, rng, [12, 7, 3], 16)
  reference = hf_tiny.hf_logits(hf, tokens, mask)
  params, config = ours.params(), ours.config
  fused = models.fuse_projections(params)
  fast = models.unstack_layers(fused)
  assert isinstance(fast["layers"], tuple) and len(fast["layers"]) == config.num_layers
  assert "wqkv" in fast["layers"][0] and "wq" not in fast["layers"][0]
  full_fused = models.forward(fused, config, jnp.asarray(tokens), attention_mask=jnp.asarray(mask))
  full = models.forward(params, config, jnp.asarray(tokens), attention_mask=jnp.asarray(mask))
  np.testing.assert_allclose(np.asarray(full_fused.logits), np.asarray(full.logits), atol=1e-5)
  with pytest.raises(ValueError, match="are for decoding over a cache"):
    models.forward(fast, config, jnp.asarray(tokens), attention_mask=jnp.asarray(mask))

  prompt_len = 10
  out = models.forward(params, config, jnp.asarray(tokens[:, :prompt_len]),
                       attention_mask=jnp.asarray(mask[:, :prompt_len]), init_cache_len=20)
  cache = out.cache.unstack()
  assert isinstance(cache.k, tuple) and cache.max_len == 20
  with pytest.raises(ValueError, match="per-layer cache"):
    models.forward(fast, config, jnp.asarray(tokens[:, :1]), cache=out.cache)
  with pytest.raises(ValueError, match="per-layer parameters"):
    models.forward(params, config, jnp.asarray(tokens[:, :1]), cache=cache)
  stepped, cache = _decode_rest(fast, config, tokens, mask, prompt_len, out.logits, cache)
  real = mask.astype(bool)
  np.testing.assert_allclose(stepped[real], reference[real], atol=TOL, rtol=0)
  assert int(cache.index) == tokens.shape[1]


def test_hidden_states_returned_on_request(family):
  _, hf, ours, _ = family
  tokens = np.arange(10, dtype=np.int32)[None] % hf.config.vocab_size
  logits, hidden = ours(tokens, return_hidden=True)
  assert hidden.shape == (1, 10, ours.config.hidden_size)
  head = np.asarray(models.output_head(ours.params(), ours.config))
  np.testing.assert_allclose(np.asarray(hidden) @ head, np.asarray(logits), atol=1e-4)


def test_sharded_safetensors_with_index(tmp_path):
  """A checkpoint split into several safetensors files with model.safetensors.index.json."""
  hf = hf_tiny.make_hf_model("qwen2", seed=3)
  hf.save_pretrained(str(tmp_path), safe_serialization=True, max_shard_size="20KB")
  shards = sorted(p.name for p in tmp_path.glob("*.safetensors"))
  assert len(shards) > 1 and (tmp_path / "model.safetensors.index.json").is_file()
  ours, _ = models.from_pretrained(tmp_path)
  tokens = np.arange(3, 30, dtype=np.int32)[None]
  np.testing.assert_allclose(np.asarray(ours(tokens)), hf_tiny.hf_logits(hf, tokens), atol=TOL)
  (tmp_path / shards[-1]).unlink()
  with pytest.raises(models.ModelLoadError, match="missing: the download is incomplete"):
    models.from_pretrained(tmp_path)


def test_gradients_match_hf_backward(family):
  """The training pass's gradients (fused q/k/v and gate/up at B·T >= FUSE_MIN_ROWS, the dense
  layers' own VJP with a materialised transpose, remat "dots") equal torch autograd's: the
  embedding gradient carries every layer's input gradient, down/o/q projections their weight
  gradients."""
  import jax
  import jax.numpy as jnp
  import torch
  name, hf, ours, _ = family
  rng = np.random.default_rng(3)
  tokens, mask = _batch(hf.config.vocab_size, rng, [72, 60, 72, 41], 72)   # 288 rows >= 256
  weights = rng.standard_normal((4, 72, hf.config.vocab_size)).astype(np.float32) * mask[..., None]

  def loss(params):
    logits = models.forward(params, ours.config, jnp.asarray(tokens),
                            attention_mask=jnp.asarray(mask), remat="dots").logits
    return jnp.sum(logits * weights)

  grads = jax.grad(loss)(ours.params())
  hf.zero_grad()
  m = torch.tensor(mask, dtype=torch.long)
  out = hf(torch.tensor(tokens, dtype=torch.long), attention_mask=m,
           position_ids=(m.cumsum(-1) - 1).clamp(min=0)).logits
  (out * torch.tensor(weights)).sum().backward()
  layer = hf.model.layers[1]
  pairs = [
      (grads["embed"], hf.model.embed_tokens.weight.grad.numpy()),
      (grads["layers"]["w_down"][1], layer.mlp.down_proj.weight.grad.numpy().T),
      (grads["layers"]["wo"][1].reshape(-1, ours.config.hidden_size),
       layer.self_attn.o_proj.weight.grad.numpy().T),
      (grads["layers"]["wq"][1].reshape(ours.config.hidden_size, -1),
       layer.self_attn.q_proj.weight.grad.numpy().T),
  ]
  for got, ref in pairs:
    scale = np.abs(ref).max()
    assert scale > 1.0, "gradients too small for a meaningful comparison"
    np.testing.assert_allclose(np.asarray(got), ref, atol=2e-5 * scale, rtol=0, err_msg=name)
