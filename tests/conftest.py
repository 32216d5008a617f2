"""Test-wide JAX settings: 8 simulated CPU devices (sharding tests), strict rank promotion, float64 available.

XLA_FLAGS must be set before jax initialises its backends, so this runs at import of the test session.
Tests that want one device use `jax.devices()[:1]` explicitly; plain `jax.jit` runs on device 0.
"""
import os

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_enable_x64", False)


import pytest  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def smollm2():
  """(model, tokenizer) of the embedded SmolLM2-135M-Instruct, loaded by jaxrl_llm."""
  from jaxrl_llm import models
  return models.from_pretrained("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def smollm2_hf():
  """Hugging Face's own PyTorch model from the same GGUF (transformers dequantises it itself)."""
  from transformers import AutoModelForCausalLM

  from jaxrl_llm import models
  path = models.embedded_model_path()
  return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()
