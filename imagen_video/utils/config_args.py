"""`get_config(arg)` argument parsing, big_vision style: "runlocal,stage=base,res=32"."""
from __future__ import annotations

import ast


def parse_arg(arg: str | None, **defaults):
  """Parses "a=1,b=x,flag" into a ConfigDict over `defaults`.

  Values are cast to the type of their default; a bare name sets a bool True.
  Unknown names are rejected with the list of known ones.
  """
  import ml_collections
  out = dict(defaults)
  for item in filter(None, (s.strip() for s in (arg or "").split(","))):
    key, _, value = item.partition("=")
    if key not in defaults:
      raise ValueError(f"config argument {key!r} is unknown; known: {sorted(defaults)}")
    if not _:
      out[key] = True
      continue
    kind = type(defaults[key])
    try:
      if kind is bool:
        if value.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
          raise ValueError(value)
        out[key] = value.lower() in ("1", "true", "yes", "on")
      elif kind in (int, float, str):
        out[key] = kind(value)
      else:
        out[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      raise ValueError(f"config argument {key}={value!r}: expected {_describe(kind)} "
                       f"(default {defaults[key]!r})") from None
  return ml_collections.ConfigDict(out)


def _describe(kind) -> str:
  return {bool: "true or false", int: "an integer", float: "a number", str: "text"}.get(
      kind, f"a Python literal like its default ({kind.__name__})")
