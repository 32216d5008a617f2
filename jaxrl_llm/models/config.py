"""Frozen model configuration for the decoder-only family, from HF `config.json` or GGUF metadata.

One dataclass describes Llama (SmolLM2, Llama 3), Qwen2/2.5 and Qwen3: they differ only in
- qkv bias (Qwen2: q/k/v projections carry a bias, the output projection does not),
- q/k RMSNorm over the head dimension before RoPE (Qwen3),
- the RoPE frequency rule (default, linear or llama3 scaling),
- a tied or untied LM head.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Mapping

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "qwen3")
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3")


@dataclasses.dataclass(frozen=True)
class RopeScaling:
  """RoPE frequency scaling. `rope_type` is one of SUPPORTED_ROPE_TYPES.

  linear: inv_freq / factor.  llama3: the piecewise rule of Llama 3.1 (low/high frequency factors
  around `original_max_position_embeddings`).
  """
  rope_type: str = "default"
  factor: float = 1.0
  low_freq_factor: float = 1.0
  high_freq_factor: float = 4.0
  original_max_position_embeddings: int = 8192


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Hyperparameters of one decoder-only transformer. Hashable, so it can be a static jit argument.

  Shape letters used across models/: B batch, T time, S cache slots, D `hidden_size`, N `num_heads`,
  K `num_kv_heads`, H `head_dim`, F `intermediate_size`, V `vocab_size`, L `num_layers`.
  """
  model_type: str
  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  rms_norm_eps: float = 1e-6
  rope_theta: float = 10000.0
  rope_scaling: RopeScaling = RopeScaling()
  max_position_embeddings: int = 2048
  tie_word_embeddings: bool = False
  qkv_bias: bool = False
  o_bias: bool = False
  mlp_bias: bool = False
  qk_norm: bool = False
  bos_token_id: int | None = None
  eos_token_id: int | tuple[int, ...] | None = None
  pad_token_id: int | None = None

  def __post_init__(self):
    if self.model_type not in SUPPORTED_MODEL_TYPES:
      raise ValueError(_unsupported_type_message(self.model_type))
    if self.num_heads % self.num_kv_heads:
      raise ValueError(
          f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}: "
          "grouped-query attention needs whole groups; fix the config.")
    if self.rope_scaling.rope_type not in SUPPORTED_ROPE_TYPES:
      raise ValueError(
          f"RoPE scaling type {self.rope_scaling.rope_type!r} is not supported; supported: "
          f"{SUPPORTED_ROPE_TYPES}. Remove `rope_scaling` from config.json or use a supported model.")

  @property
  def eos_token_ids(self) -> tuple[int, ...]:
    if self.eos_token_id is None:
      return ()
    if isinstance(self.eos_token_id, int):
      return (self.eos_token_id,)
    return tuple(self.eos_token_id)

  def num_params(self) -> int:
    d, f, n, k, h, l = (self.hidden_size, self.intermediate_size, self.num_heads,
                        self.num_kv_heads, self.head_dim, self.num_layers)
    per_layer = d * n * h + 2 * d * k * h + n * h * d + 3 * d * f + 2 * d
    per_layer += (n * h + 2 * k * h) * self.qkv_bias + d * self.o_bias + (2 * f + d) * self.mlp_bias
    per_layer += 2 * h * self.qk_norm
    head = 0 if self.tie_word_embeddings else d * self.vocab_size
    return self.vocab_size * d + l * per_layer + d + head

  # ---------------------------------------------------------------- Hugging Face config.json

  @classmethod
  def from_hf_dict(cls, hf: Mapping[str, Any]) -> "ModelConfig":
    """Builds the config from a Hugging Face `config.json` dictionary (transformers 4 or 5 spelling)."""
    model_type = hf.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
      raise ValueError(_unsupported_type_message(model_type))
    if hf.get("use_sliding_window"):
      raise ValueError(
          f"{model_type} config has use_sliding_window=true; sliding-window attention is not "
          "implemented. Set use_sliding_window=false (the released Qwen checkpoints do).")
    hidden = int(hf["hidden_size"])
    heads = int(hf["num_attention_heads"])
    head_dim = hf.get("head_dim") or hidden // heads
    theta, scaling = _rope_from_hf(hf)
    attention_bias = bool(hf.get("attention_bias", False))
    if model_type == "qwen2":
      qkv_bias, o_bias = True, False
    else:
      qkv_bias = o_bias = attention_bias
    return cls(
        model_type=model_type,
        vocab_size=int(hf["vocab_size"]),
        hidden_size=hidden,
        intermediate_size=int(hf["intermediate_size"]),
        num_layers=int(hf["num_hidden_layers"]),
        num_heads=heads,
        num_kv_heads=int(hf.get("num_key_value_heads") or heads),
        head_dim=int(head_dim),
        rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        rope_theta=theta,
        rope_scaling=scaling,
        max_position_embeddings=int(hf.get("max_position_embeddings", 2048)),
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
        qkv_bias=qkv_bias,
        o_bias=o_bias,
        mlp_bias=bool(hf.get("mlp_bias", False)),
        qk_norm=model_type == "qwen3",
        bos_token_id=hf.get("bos_token_id"),
        eos_token_id=_as_ids(hf.get("eos_token_id")),
        pad_token_id=hf.get("pad_token_id"),
    )

  def to_hf_dict(self) -> dict[str, Any]:
    """The `config.json` dictionary transformers reads back (transformers-4 RoPE spelling, which 5 reads too)."""
    arch = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}
    out: dict[str, Any] = {
        "architectures": [arch[self.model_type]],
        "model_type": self.model_type,
        "vocab_size": self.vocab_size,
        "hidden_size": self.hidden_size,
        "intermediate_size": self.intermediate_size,
        "num_hidden_layers": self.num_layers,
        "num_attention_heads": self.num_heads,
        "num_key_value_heads": self.num_kv_heads,
        "head_dim": self.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": self.rms_norm_eps,
        "rope_theta": self.rope_theta,
        "max_position_embeddings": self.max_position_embeddings,
        "tie_word_embeddings": self.tie_word_embeddings,
        "bos_token_id": self.bos_token_id,
        "eos_token_id": (list(self.eos_token_id) if isinstance(self.eos_token_id, tuple)
                         else self.eos_token_id),
        "pad_token_id": self.pad_token_id,
    }
    if self.model_type != "qwen2":
      out["attention_bias"] = self.qkv_bias
    if self.model_type == "llama":
      out["mlp_bias"] = self.mlp_bias
    if self.model_type in ("qwen2", "qwen3"):
      out["use_sliding_window"] = False
    rs = self.rope_scaling
    if rs.rope_type == "linear":
      out["rope_scaling"] = {"rope_type": "linear", "factor": rs.factor}
    elif rs.rope_type == "llama3":
      out["rope_scaling"] = {
          "rope_type": "llama3", "factor": rs.factor, "low_freq_factor": rs.low_freq_factor,
          "high_freq_factor": rs.high_freq_factor,
          "original_max_position_embeddings": rs.original_max_position_embeddings}
    return out


def _as_ids(x):
  if isinstance(x, (list, tuple)):
    return tuple(int(i) for i in x)
  return x


def _unsupported_type_message(model_type) -> str:
  close = difflib.get_close_matches(str(model_type), SUPPORTED_MODEL_TYPES, n=1)
  hint = f" Did you mean {close[0]!r}?" if close else ""
  return (f"Unsupported model_type {model_type!r}: jaxrl_llm implements the decoder-only family "
          f"{SUPPORTED_MODEL_TYPES} (Llama/SmolLM2, Qwen2/2.5, Qwen3).{hint} Pick a checkpoint of "
          "one of these architectures.")


def _rope_from_hf(hf: Mapping[str, Any]) -> tuple[float, RopeScaling]:
  """Reads RoPE settings in either spelling.

  transformers 4: top-level `rope_theta` and an optional `rope_scaling` dict (`type` or `rope_type`).
  transformers 5: one `rope_parameters` dict holding `rope_theta`, `rope_type` and the scaling keys.
  """
  params = dict(hf.get("rope_parameters") or {})
  scaling = dict(hf.get("rope_scaling") or {})
  merged = {**scaling, **params}
  theta = float(merged.get("rope_theta", hf.get("rope_theta", 10000.0)))
  rope_type = merged.get("rope_type", merged.get("type", "default")) or "default"
  if rope_type not in SUPPORTED_ROPE_TYPES:
    raise ValueError(
        f"RoPE scaling type {rope_type!r} is not supported; supported: {SUPPORTED_ROPE_TYPES}.")
  kw = {}
  for key in ("factor", "low_freq_factor", "high_freq_factor"):
    if key in merged:
      kw[key] = float(merged[key])
  if "original_max_position_embeddings" in merged:
    kw["original_max_position_embeddings"] = int(merged["original_max_position_embeddings"])
  return theta, RopeScaling(rope_type=rope_type, **kw)
