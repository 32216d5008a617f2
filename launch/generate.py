"""Samples completions from a model with its chat template.

  python launch/generate.py                                   # embedded SmolLM2, greedy
  python launch/generate.py --prompt="Name three primes." --temperature=0.8 --n=4
  python launch/generate.py --model=/path/to/hf_folder_or.gguf --max_new_tokens=128
"""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from jaxrl_llm import cli  # noqa: E402
from jaxrl_llm.parallel import host  # noqa: E402

_MODEL = flags.DEFINE_string("model", "smollm2-135m-instruct",
                             "HF folder, .gguf file, embedded name or hub id.")
_PROMPT = flags.DEFINE_multi_string("prompt", ["What is 12 * 7? Answer briefly."],
                                    "User message(s); repeat the flag for a batch.")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 64, "Completion length limit.")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.0, "0 = greedy.")
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Nucleus mass.")
_TOP_K = flags.DEFINE_integer("top_k", 0, "Top-k (0 = off).")
_N = flags.DEFINE_integer("n", 1, "Completions per prompt.")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed.")


def main(argv):
  del argv
  cli.generate(model=_MODEL.value, prompts=_PROMPT.value, max_new_tokens=_MAX_NEW.value,
               temperature=_TEMPERATURE.value, top_p=_TOP_P.value, top_k=_TOP_K.value, n=_N.value,
               seed=_SEED.value)


if __name__ == "__main__":
  host.tune_malloc()   # JAXRL_LLM_TUNE_MALLOC=1: re-execute with malloc tuned (parallel/host.py)
  app.run(main)
