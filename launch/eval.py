"""Evaluates a model on a prompt source: greedy accuracy, pass@k, maj@k, length, truncation.

  python launch/eval.py                                        # embedded SmolLM2 on chain_sum
  python launch/eval.py --data="hf:/data/gsm8k.jsonl?preset=gsm8k" --reward=math_verify \
      --model=/path/to/checkpoint --n=16 --k=1 --k=4 --k=16 --output=runs/eval.json
  python launch/eval.py --model=runs/dapo_lowprob/hf --base_model=smollm2-135m-instruct --gamma=0.5

`--base_model` evaluates the test-time extrapolation of `--model` away from the model it was
trained from, logits (1 + gamma)·z_model − gamma·z_base ("On the Direction of RLVR Updates").
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
_DATA = flags.DEFINE_string("data", "reasoning_gym:chain_sum?size=200&seed=1&answer_format=answer_tag",
                            "Prompt source spec (see jaxrl_llm.data.make_source).")
_REWARD = flags.DEFINE_enum("reward", "reasoning_gym", ["reasoning_gym", "math_verify", "exact_match"],
                            "Verifier.")
_EXTRACT = flags.DEFINE_list("extract", ["answer_tag", "last_number"],
                             "Answer extraction modes, tried in order (jaxrl_llm.rewards).")
_NUM_PROMPTS = flags.DEFINE_integer("num_prompts", 32, "Prompts to evaluate.")
_N = flags.DEFINE_integer("n", 8, "Samples per prompt for pass@k / maj@k.")
_K = flags.DEFINE_multi_integer("k", [1, 4, 8], "k values (each <= n).")
_TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Sampling temperature of the n samples.")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 128, "Completion length limit.")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Prompts per sampling call.")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed.")
_OUTPUT = flags.DEFINE_string("output", None, "Write metrics and completions as JSON here.")
_BASE_MODEL = flags.DEFINE_string("base_model", None,
                                  "The model --model was RL-trained from: sample the test-time "
                                  "extrapolation (1 + gamma)·z_model - gamma·z_base.")
_GAMMA = flags.DEFINE_float("gamma", 0.5, "Extrapolation strength with --base_model (0: --model).")


def main(argv):
  del argv
  cli.evaluate(model=_MODEL.value, data=_DATA.value, num_prompts=_NUM_PROMPTS.value, n=_N.value,
               ks=_K.value, temperature=_TEMPERATURE.value, max_new_tokens=_MAX_NEW.value,
               reward=_REWARD.value, extract=_EXTRACT.value, batch_size=_BATCH.value, seed=_SEED.value,
               output=_OUTPUT.value, base_model=_BASE_MODEL.value, gamma=_GAMMA.value)


if __name__ == "__main__":
  host.tune_malloc()   # JAXRL_LLM_TUNE_MALLOC=1: re-execute with malloc tuned (parallel/host.py)
  app.run(main)
