"""Reproduces a seed paper's table: every arm x seed trained alike, then table.md and PNG curves.

  python launch/reproduce.py --table=llds --scale=cpu              # runs/reproduce/llds/table.md
  python launch/reproduce.py --table=unlikely --scale=cpu --seeds=0,1,2
  python launch/reproduce.py --table=fipo --scale=paper --print_config   # the accelerator config
  python launch/reproduce.py --table=llds --override=train.num_steps=1 --workdir=/tmp/smoke

`--scale=cpu` is SmolLM2-135M-Instruct on a reasoning-gym task, sized for about an hour per table
on 2 CPU cores; `--scale=paper` is the paper's model (a hub id; a local folder with
`--override=model.source=/path`), data and hyperparameters, for accelerators. A killed
reproduction continues where it stopped when started again with the same flags.
"""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402

from jaxrl_llm.eval import reproduce  # noqa: E402
from jaxrl_llm.parallel import host  # noqa: E402

_TABLE = flags.DEFINE_enum("table", None, sorted(reproduce.TABLES),
                           "The paper table to reproduce.")
_SCALE = flags.DEFINE_enum("scale", "cpu", list(reproduce.SCALES),
                           "cpu: SmolLM2-135M on reasoning-gym, ~1 h on 2 cores; paper: the "
                           "paper's model, data and hyperparameters (accelerators).")
_WORKDIR = flags.DEFINE_string("workdir", "runs/reproduce",
                               "Outputs go to <workdir>/<table>/ (table.md, *.png, results.json, "
                               "one folder per arm and seed).")
_SEEDS = flags.DEFINE_list("seeds", None, "Seeds (default: the scale's, e.g. 0,1).")
_OVERRIDE = flags.DEFINE_multi_string("override", [],
                                      "key=value config override for every arm, e.g. "
                                      "train.num_steps=1 (repeatable).")
_PRINT_CONFIG = flags.DEFINE_bool("print_config", False,
                                  "Print every arm's config and exit without running.")
_CACHE = flags.DEFINE_bool("compilation_cache", True,
                            "Keep compiled steps in <workdir>/.jax_cache, so that the second seed "
                            "of an arm (and a resumed reproduction) skips compiling.")
_KEEP_CKPT = flags.DEFINE_bool("keep_checkpoints", False,
                               "Keep each finished run's checkpoints (default: delete them).")


def _usage_exit(message: str) -> None:
  sys.stderr.write(f"FATAL {message}\n")
  sys.exit(1)


def _print_configs(spec, scale, extra, seeds) -> None:
  print(f"# {spec.title} ({spec.paper}, arXiv {spec.arxiv}), scale {_SCALE.value}: {scale.about}")
  if spec.notes:
    print(f"# notes: {spec.notes}")
  for arm in spec.arms_at(scale):
    config = reproduce.arm_config(spec, arm, scale, seeds[0], extra=extra)
    status = ("" if arm.implemented else
              f"  [method not implemented yet (issue 8): this is its host recipe, preset "
              f"{arm.host!r}]")
    print(f"\n## arm {arm.name!r}: configs/{arm.config}.py, preset {arm.preset!r}{status}")
    print(config)
  if _SCALE.value == "cpu" and not spec.missing():
    print(f"# estimated {reproduce.estimate_minutes(spec, scale, seeds):.0f} min on 2 CPU cores")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:   # the runs' progress bars, not orbax's INFO lines
    logging.set_verbosity(logging.WARNING)
  if _TABLE.value is None:
    _usage_exit(f"pass --table=<name>; registered tables: {', '.join(sorted(reproduce.TABLES))}")
  spec = reproduce.get_table(_TABLE.value)
  scale = spec.scale(_SCALE.value)
  try:
    extra = dict(reproduce.parse_override(o) for o in _OVERRIDE.value)
    seeds = tuple(int(s) for s in _SEEDS.value) if _SEEDS.value else scale.seeds
  except ValueError as e:
    _usage_exit(f"bad flag: {e}")
  if _PRINT_CONFIG.value:
    try:
      _print_configs(spec, scale, extra, seeds)
    except ValueError as e:
      _usage_exit(f"bad config: {e}")
    return
  try:   # every check that needs no model, before anything slow
    reproduce.prepare(spec, _SCALE.value, _WORKDIR.value, seeds=seeds, extra=extra)
  except (NotImplementedError, ValueError) as e:
    _usage_exit(str(e))
  if _CACHE.value and not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    import jax  # pylint: disable=g-import-not-at-top
    jax.config.update("jax_compilation_cache_dir", os.path.join(_WORKDIR.value, ".jax_cache"))
  if _SCALE.value == "cpu":
    print(f"[{spec.name}] estimated {reproduce.estimate_minutes(spec, scale, seeds):.0f} min on "
          "2 CPU cores", flush=True)
  from jaxrl_llm import models  # pylint: disable=g-import-not-at-top
  try:
    table_md = reproduce.run_table(spec, _SCALE.value, _WORKDIR.value, seeds=seeds,
                                   extra=extra, keep_checkpoints=_KEEP_CKPT.value,
                                   log=lambda m: print(m, flush=True))
  except models.ModelLoadError as e:
    _usage_exit(f"{e} For a local copy of the paper's model: --override=model.source=<folder>.")
  print(f"wrote {table_md}")


if __name__ == "__main__":
  host.tune_malloc()   # JAXRL_LLM_TUNE_MALLOC=1: re-execute with malloc tuned (parallel/host.py)
  app.run(main)
