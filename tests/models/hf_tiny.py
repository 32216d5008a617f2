"""Tiny random Hugging Face checkpoints of each supported family, for parity tests."""
import json
import pathlib

import numpy as np
import torch
import transformers

FAMILIES = {
    "llama": dict(cls="LlamaConfig"),
    "llama3_rope_scaling": dict(
        cls="LlamaConfig",
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8}),
    "qwen2": dict(cls="Qwen2Config"),
    "qwen3": dict(cls="Qwen3Config"),
    "llama_untied_bias": dict(cls="LlamaConfig", attention_bias=True, mlp_bias=True,
                              tie_word_embeddings=False),
}


def make_hf_model(family: str, seed: int = 0):
  """A random HF causal LM whose logits span a few units (weights scaled up from HF's 0.02 init)."""
  spec = dict(FAMILIES[family])
  cls = getattr(transformers, spec.pop("cls"))
  kw = dict(vocab_size=97, hidden_size=48, intermediate_size=80, num_hidden_layers=3,
            num_attention_heads=6, num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
            rms_norm_eps=1e-5, tie_word_embeddings=True, rope_theta=500.0,
            bos_token_id=1, eos_token_id=2, pad_token_id=0)
  kw.update(spec)
  rope_scaling = kw.pop("rope_scaling", None)
  config = cls(**kw)
  if rope_scaling is not None:   # both transformers 4 and 5 spellings end up in rope_parameters
    config.rope_parameters = {"rope_theta": kw["rope_theta"], **rope_scaling}
  torch.manual_seed(seed)
  model = transformers.AutoModelForCausalLM.from_config(config).eval()
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "norm" in name:
        p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen))
      else:
        p.copy_(0.25 * torch.randn(p.shape, generator=gen))
  return model


def save_hf(model, folder: pathlib.Path) -> pathlib.Path:
  model.save_pretrained(str(folder), safe_serialization=True)
  return folder


def hf_logits(model, tokens: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
  """HF logits; with a left-padding mask, positions are cumsum(mask) - 1 as `generate` uses."""
  ids = torch.tensor(tokens, dtype=torch.long)
  kwargs = {}
  if mask is not None:
    m = torch.tensor(mask, dtype=torch.long)
    pos = (m.cumsum(-1) - 1).clamp(min=0)
    kwargs = dict(attention_mask=m, position_ids=pos)
  with torch.no_grad():
    return model(ids, **kwargs).logits.float().numpy()


def rewrite_config(folder: pathlib.Path, fn) -> None:
  path = folder / "config.json"
  cfg = json.loads(path.read_text())
  path.write_text(json.dumps(fn(cfg)))
