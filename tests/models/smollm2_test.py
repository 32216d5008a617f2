"""The real SmolLM2-135M-Instruct (embedded GGUF) against Hugging Face's PyTorch model of the same file.

transformers dequantises the GGUF and undoes llama.cpp's Q/K permutation with its own code, so this
checks our GGUF reader, the permutation and the model together against an independent path.
"""
import numpy as np
import pytest
import torch

from jaxrl_llm import models
from tests.models import hf_tiny

PROMPTS = [
    "What is 2+2?",
    "Name the capital of France.",
    "Write a haiku about the sea.",
    "Explain photosynthesis in one sentence.",
    "List three prime numbers.",
    "Translate 'good morning' into Spanish.",
    "What is the derivative of x^2?",
    "Hi",
]


def _chat_ids(tokenizer, text):
  ids = tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                      add_generation_prompt=True, tokenize=True)
  return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def _left_pad(seqs, pad_id):
  total = max(map(len, seqs))
  tokens = np.full((len(seqs), total), pad_id, np.int32)
  mask = np.zeros((len(seqs), total), np.int32)
  for i, s in enumerate(seqs):
    tokens[i, total - len(s):] = s
    mask[i, total - len(s):] = 1
  return tokens, mask


def test_config_from_gguf(smollm2):
  model, tokenizer = smollm2
  c = model.config
  assert (c.model_type, c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads) == (
      "llama", 30, 576, 9, 3)
  assert c.tie_word_embeddings and c.vocab_size == 49152 and c.rope_theta == 100000.0
  assert tokenizer.eos_token == "<|im_end|>" and tokenizer.chat_template


def test_logits_match_hf_on_padded_chat_batch(smollm2, smollm2_hf):
  model, tokenizer = smollm2
  seqs = [_chat_ids(tokenizer, p) for p in PROMPTS]
  tokens, mask = _left_pad(seqs, tokenizer.pad_token_id)
  ref = hf_tiny.hf_logits(smollm2_hf, tokens, mask)
  got = np.asarray(model(tokens, attention_mask=mask))
  real = mask.astype(bool)
  diff = np.abs(got[real] - ref[real])
  scale = np.abs(ref[real]).max()
  print(f"SmolLM2 max|Δlogit| = {diff.max():.3e} over logit range {scale:.1f} "
        f"(relative {diff.max() / scale:.2e})")
  # float32 over 30 layers: within 1e-4 relative to the logit range (≈ 4e-3 absolute here).
  assert diff.max() < 1e-4 * scale
  np.testing.assert_array_equal(got[real].argmax(-1), ref[real].argmax(-1))


def test_greedy_next_tokens_agree_with_hf(smollm2, smollm2_hf):
  """Eight greedy steps per prompt, ours by repeated full forwards, HF by generate()."""
  model, tokenizer = smollm2
  for prompt in PROMPTS[:4]:
    ids = _chat_ids(tokenizer, prompt)
    with torch.no_grad():
      hf_out = smollm2_hf.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False,
                                   attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    hf_new = hf_out[0, len(ids):].tolist()
    ours = list(ids)
    for _ in range(len(hf_new)):
      ours.append(int(np.asarray(model(np.asarray([ours], np.int32)))[0, -1].argmax()))
    assert ours[len(ids):] == hf_new, prompt


def test_save_pretrained_roundtrip_through_transformers(smollm2, tmp_path):
  from transformers import AutoModelForCausalLM, AutoTokenizer
  model, tokenizer = smollm2
  models.save_pretrained(model, tokenizer, tmp_path)
  hf = AutoModelForCausalLM.from_pretrained(str(tmp_path)).eval()
  hf_tok = AutoTokenizer.from_pretrained(str(tmp_path))
  ids = _chat_ids(hf_tok, "Hello there")
  assert ids == _chat_ids(tokenizer, "Hello there")
  tokens = np.asarray([ids], np.int32)
  ours = np.asarray(model(tokens))
  np.testing.assert_allclose(hf_tiny.hf_logits(hf, tokens), ours, atol=1e-4 * np.abs(ours).max())
  back, back_tok = models.from_pretrained(tmp_path)
  assert back.config == model.config
  np.testing.assert_array_equal(np.asarray(back(tokens)), ours)
  assert back_tok is not None and back_tok.chat_template == tokenizer.chat_template


@pytest.mark.slow
def test_bfloat16_option(smollm2):
  import jax.numpy as jnp
  model, tokenizer = smollm2
  bf16, _ = models.from_pretrained("smollm2-135m-instruct", dtype="bfloat16")
  assert bf16.dtype == jnp.bfloat16
  tokens = np.asarray([_chat_ids(tokenizer, PROMPTS[0])], np.int32)
  a = np.asarray(model(tokens))
  b = np.asarray(bf16(tokens))
  assert b.dtype == np.float32
  # bfloat16 keeps 8 bits of mantissa: agreement on the top token at most positions.
  assert (a.argmax(-1) == b.argmax(-1)).mean() > 0.8
