"""LaSeR: GRPO with a last-token self-reward (Yang et al., arXiv 2510.14943; spec B8).

The policy's log-probability of a chosen token z right after its solution, s = β_v(τ·log π(z) −
c_ref), is regressed on the verifier's reward (auxiliary MSE, α_SR = 0.1, balanced classes,
truncated rows masked) and, after a warm-up, mixed into the advantage (ω = 0.1). The trainer
computes `sr_logp` from the same forward pass (no token is appended).

  python launch/train.py --config=configs/laser.py:smollm2 --workdir=runs/laser

z for SmolLM2 is token 16, `<empty_output>`: a special token of the pretraining mix (Jupyter
notebooks) that the chat model never writes in an answer, the counterpart of the paper's unused
Qwen2.5 special token 151652 (`<|vision_start|>`). For another model set
`--config.objective.sr_token` to an unused special token of its vocabulary. c_ref = −23 is the
released runs' constant (spec B8); measure log π_ref(z | ...) on a few samples when changing model.
τ follows `sampling.temperature`. Defaults [code `run_qwen2_5_7b.sh`]: β_v = 0.1, α_SR = 0.1,
ω = 0.1, τ_f = 0.1, integration after 200 optimizer steps (LaSeR runs one minibatch per rollout,
as here, so steps = iterations: `--config.objective.warmup_steps` to see it in a short run),
token-mean loss, KL 0.
"""
import pathlib

import ml_collections

from jaxrl_llm.objectives import presets
from jaxrl_llm.training.config_files import load_config_module

SMOLLM2_SR_TOKEN = 16   # <empty_output>


def _base():
  return load_config_module(pathlib.Path(__file__).with_name("base.py"))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = _base().get_config(arg)
  c.objective = presets.default_config("laser")
  c.objective.sr_token = SMOLLM2_SR_TOKEN
  c.objective.sr_temperature = c.sampling.get_ref("temperature")
  c.train.num_minibatches = 1         # LaSeR: one minibatch per rollout batch
  return c
