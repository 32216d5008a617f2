"""Decoder-only transformers (Llama/SmolLM2, Qwen2/2.5, Qwen3) in Flax NNX, with HF import/export."""

from jaxrl_llm.models.config import ModelConfig, RopeScaling, SUPPORTED_MODEL_TYPES
from jaxrl_llm.models.loading import (
    EMBEDDED_MODELS, ModelLoadError, embedded_model_path, from_pretrained, save_pretrained)
from jaxrl_llm.models.logprobs import sequence_logp, token_logp
from jaxrl_llm.models.transformer import (
    LOGICAL_AXES, KVCache, ModelOutput, Transformer, check_tokens, default_positions, forward,
    REMAT_POLICIES, forward_shared_prompts, fuse_projections, remat_layer, remat_policy,
    unstack_layers,
    init_params, logits_from_hidden, output_head, param_shapes)

__all__ = [
    "EMBEDDED_MODELS", "KVCache", "LOGICAL_AXES", "ModelConfig", "ModelLoadError", "ModelOutput",
    "REMAT_POLICIES",
    "RopeScaling", "SUPPORTED_MODEL_TYPES", "Transformer", "check_tokens", "default_positions",
    "embedded_model_path", "forward", "forward_shared_prompts", "from_pretrained",
    "fuse_projections", "init_params",
    "logits_from_hidden",
    "output_head",
    "param_shapes", "remat_layer", "remat_policy", "save_pretrained", "sequence_logp",
    "token_logp", "unstack_layers",
]
