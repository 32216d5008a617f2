"""Loading `configs/*.py` files by path, the way `ml_collections.config_flags` does.

  base = load_config_module("configs/base.py")      # a config file as a module (its helpers too)
  c = load_config("configs/dapo.py", "smollm2")      # its get_config(arg)

Config files are not a package (config_flags reads them by path), so a method config reaches
`base.py` through `load_config_module(pathlib.Path(__file__).with_name("base.py"))`.
"""
import importlib.util
import pathlib
import types

import ml_collections


def load_config_module(path: str | pathlib.Path) -> types.ModuleType:
  """Executes the config file at `path` and returns it as a module."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"config file {path} not found.")
  spec = importlib.util.spec_from_file_location(f"jaxrl_llm_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_config(path: str | pathlib.Path, arg: str | None = None) -> ml_collections.ConfigDict:
  """`get_config(arg)` of the config file at `path`."""
  return load_config_module(path).get_config(arg)
