"""`base` shrunk for tests and smoke runs: a random 2-layer model, 2 steps, 4 prompts x 2 samples.

  python launch/train.py --config=configs/tiny.py --workdir=/tmp/tiny
"""
import pathlib

import ml_collections

from jaxrl_llm.training.config_files import load_config_module


def _base():
  return load_config_module(pathlib.Path(__file__).with_name("base.py"))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = _base().get_config(arg)
  c.model.random_init = True
  c.sampling.max_new_tokens = 8
  c.sampling.n = 2
  c.sampling.decode_chunk = 8
  c.objective.kl_coef = 0.0
  c.optim.learning_rate = 1e-3
  c.data.source = "reasoning_gym:chain_sum?size=50&seed=0&answer_format=answer_tag"
  c.data.max_prompt_tokens = 256
  c.data.eval_size = 8
  c.eval.every_steps = 0              # tests that evaluate turn it on
  c.eval.num_prompts = 4
  c.eval.batch_size = 4
  c.mesh.num_devices = 1              # 4 prompts x 2 samples: one device
  c.reward.num_workers = 0            # inline scoring: no worker processes in tests
  c.train.num_steps = 2
  c.train.prompts_per_step = 4
  c.train.num_updates = 2
  c.train.num_minibatches = 2
  c.train.num_micro_batches = 1
  c.train.remat = "none"
  c.train.chunk_size = 8
  c.log.progress = False
  c.ckpt.export_hf = False
  return c
