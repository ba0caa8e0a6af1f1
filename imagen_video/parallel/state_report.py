"""What the train state costs per device on a mesh, and a check that it is sharded as meant.

`report` prints the per-parameter table of `sharding.describe` and then one
line per part of the state (params, EMA, optimizer) with its total and
per-device bytes, computed from the shardings the trainer actually uses.
`optimizer_mismatches` lists optimizer leaves that copy a parameter (Adam's
mu/nu) but are sharded differently from it, which would silently undo FSDP.
"""
from __future__ import annotations

import math

import jax
import numpy as np

from imagen_video.parallel import sharding


def _leaves(tree):
  return jax.tree_util.tree_flatten_with_path(tree)[0]


def bytes_per_device(abstract, shardings) -> tuple[int, int]:
  """(total bytes, bytes on the most loaded device) of a tree of arrays and its shardings."""
  total, device = 0, 0
  for (_, x), (_, s) in zip(_leaves(abstract), _leaves(shardings)):
    itemsize = np.dtype(x.dtype).itemsize
    total += math.prod(x.shape) * itemsize
    device += math.prod(s.shard_shape(x.shape)) * itemsize
  return total, device


def optimizer_mismatches(state_shardings) -> list[str]:
  """Optimizer leaves whose path ends with a parameter's path but whose spec differs."""
  params = {jax.tree_util.keystr(p): s.spec for p, s in _leaves(state_shardings["params"])}
  bad = []
  for path, s in _leaves(state_shardings["opt"]):
    key = jax.tree_util.keystr(path)
    match = next((spec for pkey, spec in params.items() if key.endswith(pkey)), None)
    if match is not None and s.spec != match:
      bad.append(f"{key}: {s.spec} (param {match})")
  return bad


def report(abstract_state, state_shardings, mesh, rules) -> str:
  lines = [sharding.describe(abstract_state["params"]["unet"], mesh, rules), ""]
  for part in ("params", "ema", "opt"):
    total, device = bytes_per_device(abstract_state[part], state_shardings[part])
    lines.append(f"{part:<7} {total / 2**20:10.2f} MiB total  {device / 2**20:10.2f} MiB per device "
                 f"({total / max(device, 1):.1f}x split)")
  total, device = bytes_per_device(abstract_state, state_shardings)
  lines.append(f"{'state':<7} {total / 2**20:10.2f} MiB total  {device / 2**20:10.2f} MiB per device "
               f"on mesh {dict(mesh.shape)}")
  bad = optimizer_mismatches(state_shardings)
  lines.append("optimizer state sharded like params" if not bad else
               f"WARNING: {len(bad)} optimizer leaves sharded unlike their params:\n  " + "\n  ".join(bad))
  return "\n".join(lines)
