"""Arm configs: a config file of `configs/`, then the scale's overrides, then the arm's.

  config = arm_config(spec, arm, spec.cpu, seed=0)

Order: `configs/<arm.config>.py:get_config(scale.model)` -> `scale.overrides` (every arm) ->
`arm.overrides` -> `scale.arm_overrides[arm.name]` -> `extra` (the caller's, e.g. a smoke run's
`train.num_steps=1`) -> `seed`. Every dotted key must exist (a typo fails with the closest key):
the arms of a table then differ only where the spec says so.
"""
import difflib
import pathlib
from collections.abc import Mapping
from typing import Any

import ml_collections

from jaxrl_llm.eval.reproduce.spec import Arm, Scale, TableSpec
from jaxrl_llm.objectives import presets

CONFIGS_DIR = pathlib.Path(__file__).resolve().parents[3] / "configs"


def load_config_file(name: str, arg: str | None = None,
                     configs_dir: str | pathlib.Path | None = None) -> ml_collections.ConfigDict:
  """`get_config(arg)` of `<configs_dir>/<name>.py` (default: the repository's configs/)."""
  folder = pathlib.Path(configs_dir or CONFIGS_DIR)
  path = folder / f"{name}.py"
  if not path.is_file():
    names = sorted(p.stem for p in folder.glob("*.py")) if folder.is_dir() else []
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"config file {path} not found.{hint} Config files in {folder}: "
                     f"{', '.join(names) or 'none'} (pass configs_dir= for another folder).")
  from jaxrl_llm.training import config_files  # pylint: disable=g-import-not-at-top (eval -> training is circular at import)
  return config_files.load_config(path, arg)


def set_dotted(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
  """`config.<key> = value` for a dotted key that must exist already."""
  parts = key.split(".")
  node = config
  for depth, part in enumerate(parts):
    keys = list(node.keys())
    if part not in keys:
      where = ".".join(parts[:depth]) or "the config"
      close = difflib.get_close_matches(part, keys, n=1)
      hint = f"; did you mean {'.'.join(parts[:depth] + [close[0]])!r}?" if close else ""
      raise ValueError(f"unknown config key {key!r}: {where} has no {part!r}{hint}")
    if depth < len(parts) - 1:
      node = node[part]
  if isinstance(value, list):
    value = tuple(value)
  node[parts[-1]] = value


def apply_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]) -> None:
  for key, value in overrides.items():
    set_dotted(config, key, value)


def arm_config(spec: TableSpec, arm: Arm, scale: Scale, seed: int, *,
               extra: Mapping[str, Any] | None = None,
               configs_dir: str | pathlib.Path | None = None) -> ml_collections.ConfigDict:
  """The config one run (arm x seed) of `spec` trains with at `scale`.

  An arm whose method is not implemented (`arm.implemented` False) gets its host's config: the
  paper recipe without the method, which builds and passes `loop.check_config` but is not the
  method (running refuses: `TableSpec.check_runnable`).
  """
  config = load_config_file(arm.config, scale.model, configs_dir)
  expected = arm.preset if arm.implemented else arm.host
  if expected is None:
    raise ValueError(f"table {spec.name!r}, arm {arm.name!r}: preset {arm.preset!r} is not "
                     "registered and the arm names no host preset.")
  if config.objective.name != expected:
    config.objective = presets.default_config(expected)
  apply_overrides(config, scale.overrides)
  if arm.implemented:
    apply_overrides(config, arm.overrides)
  apply_overrides(config, scale.arm_overrides.get(arm.name, {}))
  apply_overrides(config, extra or {})
  config.seed = int(seed)
  return config


def table_configs(spec: TableSpec, scale: Scale, seed: int | None = None, **kwargs: Any
                  ) -> dict[str, ml_collections.ConfigDict]:
  """{arm name: config} of every arm `scale` runs (seed: the scale's first by default)."""
  seed = scale.seeds[0] if seed is None else seed
  return {arm.name: arm_config(spec, arm, scale, seed, **kwargs) for arm in spec.arms_at(scale)}


def parse_override(text: str) -> tuple[str, Any]:
  """`"train.num_steps=1"` -> `("train.num_steps", 1)` (values are Python literals or strings)."""
  import ast  # pylint: disable=g-import-not-at-top
  key, eq, value = text.partition("=")
  if not eq or not key.strip():
    raise ValueError(f"override {text!r} is not key=value (e.g. train.num_steps=1).")
  try:
    parsed = ast.literal_eval(value)
  except (ValueError, SyntaxError):
    parsed = value
  return key.strip(), parsed
