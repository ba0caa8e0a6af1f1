"""The resolved config a workdir was trained with (config.json) and a copy of its tokenizer,
so a stage loads from its workdir alone: no dataset is built to find a tokenizer.

Paths are `etils.epath` paths: a local folder or a URI such as gs://bucket/run.
"""
from __future__ import annotations

import json

import ml_collections
from etils import epath

CONFIG = "config.json"
TOKENIZER = "tokenizer.model"
HISTORY = "config_history.jsonl"  # one line per resume that changed allowed fields


def path(workdir) -> epath.Path:
  return epath.Path(str(workdir))


def write(workdir, config) -> None:
  """config.json, and the tokenizer file copied beside it (process 0 calls this)."""
  root = path(workdir)
  root.mkdir(parents=True, exist_ok=True)
  tokenizer = config.text.get("tokenizer") if "text" in config else None
  if tokenizer and epath.Path(tokenizer).exists():
    data = epath.Path(tokenizer).read_bytes()
    if not (root / TOKENIZER).exists() or (root / TOKENIZER).read_bytes() != data:
      _atomic_write(root / TOKENIZER, data)
  _atomic_write(root / CONFIG, config.to_json_best_effort(indent=2).encode())


def append_history(workdir, record: dict) -> None:
  """Adds `record` (time, step, changed fields) to the workdir's config history."""
  target = path(workdir) / HISTORY
  old = target.read_text() if target.exists() else ""
  _atomic_write(target, (old + json.dumps(record) + "\n").encode())


def _atomic_write(target: epath.Path, data: bytes) -> None:
  if "://" in str(target):  # an object appears whole or not at all
    target.write_bytes(data)
    return
  tmp = target.parent / (target.name + ".tmp")
  tmp.write_bytes(data)
  tmp.replace(target)  # a reader never sees a half-written file


def read(workdir) -> ml_collections.ConfigDict | None:
  """The saved config with its tokenizer pointing at the workdir's copy; None without one."""
  root = path(workdir)
  if not (root / CONFIG).exists():
    return None
  try:
    saved = json.loads((root / CONFIG).read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{root / CONFIG}: not valid JSON ({e}); the workdir's config is damaged") from None
  config = ml_collections.ConfigDict(_tuples(saved))
  if "text" in config and (root / TOKENIZER).exists():
    config.text.tokenizer = str(root / TOKENIZER)
  return config


def _tuples(value):
  """JSON lists back to the tuples configs hold (shapes, mults, rules)."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value
