"""Loads a config by file path or by the name of a built-in config.

`load("configs/base_tiny.py:runlocal")` reads a file; `load("base_tiny.py")`
(no such file in the working directory) falls back to the checkout's configs/.
"""
from __future__ import annotations

import importlib
import importlib.util
import os


def builtin_path(name: str) -> str:
  # configs/ lives beside the package in the checkout (installs are editable).
  import imagen_video
  folder = os.path.join(os.path.dirname(os.path.dirname(imagen_video.__file__)), "configs")
  return os.path.join(folder, name)


def resolve(spec: str) -> tuple[str, str | None]:
  """'path[:arg]' -> (existing file path, arg)."""
  path, sep, arg = spec.partition(":")
  if not os.path.exists(path):
    candidate = builtin_path(os.path.basename(path))
    if not os.path.exists(candidate):
      raise FileNotFoundError(f"config file {path!r} not found (nor built-in {candidate!r})")
    path = candidate
  return path, (arg if sep else None)


def load_module(path: str):
  """The config file `path` as a module (configs reuse each other's helpers)."""
  path, _ = resolve(path)
  module_spec = importlib.util.spec_from_file_location(f"_config_{abs(hash(path))}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


def load(spec: str):
  path, arg = resolve(spec)
  module = load_module(path)
  return module.get_config(arg) if arg is not None else module.get_config()


def load_with_overrides(spec: str, overrides: dict[str, str] | None = None):
  """The config `FILE[:ARGS]` with `key=value` overrides applied exactly as the commands'
  `--config.key=value` flags apply them (same parsing); ValueError naming a bad field."""
  from absl import flags
  from ml_collections import config_flags
  fv = flags.FlagValues()
  argv = ["load_config", f"--config={spec}", *(f"--config.{k}={v}" for k, v in (overrides or {}).items())]
  config_flags.DEFINE_config_file("config", None, "", flag_values=fv, sys_argv=argv)
  try:
    fv(argv)
  except (flags.Error, KeyError, AttributeError) as e:
    raise ValueError(f"config {spec} with {overrides}: {e}") from None
  return fv.config
