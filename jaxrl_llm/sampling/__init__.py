"""Scan-based sampler over a KV cache, and composable logit processors."""

from jaxrl_llm.sampling import processors
from jaxrl_llm.sampling.sampler import (
    DEFAULT_BUCKETS, Completions, SamplingConfig, extrapolation, generate, pad_prompts, sample)

__all__ = ["Completions", "DEFAULT_BUCKETS", "SamplingConfig", "extrapolation", "generate",
           "pad_prompts", "processors", "sample"]
