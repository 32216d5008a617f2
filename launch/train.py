"""Trains a policy with a group-relative objective (GRPO and its family) on verifiable rewards.

  python launch/train.py                    # embedded SmolLM2-135M-Instruct, GRPO, reasoning-gym
  python launch/train.py --config=configs/dapo.py:smollm2 --config.train.num_steps=100 \\
      --workdir=runs/dapo
  python launch/train.py --config=configs/grpo.py:qwen2.5-0.5b --config.objective.kl_coef=0.0

`--config=<file>[:<arg>]` picks a config (configs/base.py holds every default; the method configs
override only what differs; the arg picks the model), `--config.<section>.<key>=<value>` overrides
one value. The config is locked: a key that does not exist fails at start with the closest name.
A workdir that holds a checkpoint resumes from it. Multi-host: run the same command on every
host (README, "Multi-host").
"""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# ---------------------------------------------------------------------------------------- logging
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SECTIONS = ("seed, model (what to train), sampling (the sampler; n = group size), objective (a "
             "preset and its arguments), optim, mesh (data x fsdp x tensor), data (prompt source, "
             "held-out eval items), reward (verifier, timeout), train (steps, batch, updates), "
             "eval (periodic greedy accuracy), ckpt, log")
_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(_REPO, "configs", "base.py"),
    f"Config file[:arg]. Sections: {_SECTIONS}. Override with --config.<section>.<key>=<value>.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs/default",
                               "Output folder: metrics.jsonl, tb/, ckpt/, config.json. Resumes "
                               "from its latest checkpoint.")


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, with a config key that does not exist reported as a usage error (the
  ConfigDict's own message has the close-match suggestion) rather than a traceback."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    lines = [line for line in str(e).splitlines() if line.strip()]
    if any(line.startswith("Traceback") for line in lines):   # an error inside get_config
      lines = [lines[0], lines[-1]]
    _usage_exit(" ".join(lines))
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    message = str(e).strip("'").replace("\\'", "'").replace("\\n", " ")
    _usage_exit(f"bad --config override: unknown key {message}")


def _usage_exit(message: str) -> None:
  sys.stderr.write(f"FATAL {message}\nPass --helpshort or --helpfull to see help on flags.\n")
  sys.exit(1)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  # ------------------------------------------------------------------------------------- mesh
  from jaxrl_llm.parallel import distributed  # pylint: disable=g-import-not-at-top
  distributed.initialize()         # multi-host: before anything else touches the devices
  from jaxrl_llm.training import loop  # pylint: disable=g-import-not-at-top
  config, workdir = _CONFIG.value, _WORKDIR.value
  try:
    config.seed   # pylint: disable=pointless-statement (config files load lazily: fail here)
  except (OSError, ValueError) as e:
    _usage_exit(f"bad --config: {e}")
  # ----------------------------------------------------------------------- checks, then the run
  try:
    loop.check_config(config, workdir)
  except ValueError as e:
    _usage_exit(f"bad config: {e}")
  with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
    f.write(config.to_json_best_effort(indent=1))
  logging.info("config:\n%s", config)
  loop.train_and_evaluate(config, workdir)


if __name__ == "__main__":
  from jaxrl_llm.parallel import host  # pylint: disable=g-import-not-at-top
  host.tune_malloc()   # JAXRL_LLM_TUNE_MALLOC=1: re-execute with malloc tuned (parallel/host.py)
  app.run(main, flags_parser=_parse_flags)
