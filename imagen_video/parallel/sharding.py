"""Logical axis names -> mesh shardings (MaxText-style rules from the config).

Modules name the logical axes of each parameter with the Variable metadata
`logical_axes=(...)` (e.g. ("embed", "mlp")); activations are constrained with
`constrain(x, names)`. The config maps names to mesh axes:

    rules = (("batch", ("data", "fsdp")), ("embed", "fsdp"), ("mlp", "tensor"), ...)

A name without a rule, or whose mesh axes are absent or of size 1, stays
replicated. A mesh axis is used at most once per array (first name wins), and
a dimension is sharded only if the mesh axes divide it, so odd tiny shapes
fall back to replication instead of failing.
"""
from __future__ import annotations

import contextlib
import math
import threading
from typing import Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")
Rules = Sequence[tuple[str, str | Sequence[str] | None]]

_ctx = threading.local()


def make_mesh(shape: dict[str, int] | Sequence[int], devices=None) -> Mesh:
  """A ("data", "fsdp", "tensor") mesh; a -1 entry takes the remaining devices."""
  devices = list(jax.devices() if devices is None else devices)
  sizes = [shape.get(a, 1) for a in MESH_AXES] if isinstance(shape, dict) else list(shape)
  if len(sizes) != len(MESH_AXES):
    raise ValueError(f"mesh shape {shape!r}: expected {len(MESH_AXES)} sizes for axes {MESH_AXES}")
  if sizes.count(-1) > 1:
    raise ValueError(f"mesh shape {shape!r}: at most one axis may be -1")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if len(devices) % known:
      raise ValueError(f"mesh shape {shape!r}: {len(devices)} devices not divisible by {known}")
    sizes[sizes.index(-1)] = len(devices) // known
  if math.prod(sizes) < len(devices) and jax.process_count() == 1 and -1 not in shape_values(shape):
    devices = devices[:math.prod(sizes)]  # an explicit smaller mesh: the first devices
  if math.prod(sizes) != len(devices):
    raise ValueError(f"mesh shape {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices, "
                     f"but {len(devices)} are available")
  try:
    from jax.experimental import mesh_utils
    grid = mesh_utils.create_device_mesh(sizes, devices=devices)
  except Exception:  # non-TPU topologies that mesh_utils cannot lay out
    grid = np.asarray(devices).reshape(sizes)
  types = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
  return Mesh(grid, MESH_AXES, axis_types=types)


def shape_values(shape) -> list[int]:
  return list(shape.values()) if isinstance(shape, dict) else list(shape)


def spec_for(names: Sequence[str | None] | None, rules: Rules, mesh: Mesh,
             shape: Sequence[int] | None = None) -> P:
  """PartitionSpec for an array whose dimensions carry logical `names`."""
  if names is None:
    return P()
  table = dict(rules)
  used: set[str] = set()
  out = []
  for i, name in enumerate(names):
    axes = table.get(name) if name is not None else None
    axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
    axes = tuple(a for a in axes if a in mesh.shape and mesh.shape[a] > 1 and a not in used)
    if axes and shape is not None and shape[i] % math.prod(mesh.shape[a] for a in axes):
      axes = ()
    used.update(axes)
    out.append(None if not axes else axes[0] if len(axes) == 1 else axes)
  return P(*out)


def _is_var(x) -> bool:
  return isinstance(x, nnx.Variable)


def _leaf_spec(leaf, rules, mesh) -> P:
  if _is_var(leaf):
    names = leaf.get_metadata().get("logical_axes")
    value = leaf.get_value() if hasattr(leaf, "get_value") else leaf.value
    return spec_for(names, rules, mesh, getattr(value, "shape", None))
  return P()


def state_shardings(state, mesh: Mesh, rules: Rules):
  """NamedShardings for an nnx.State (abstract or concrete), same tree structure."""
  def one(leaf):
    sharding = NamedSharding(mesh, _leaf_spec(leaf, rules, mesh))
    return leaf.replace(sharding) if _is_var(leaf) else sharding
  return jax.tree.map(one, state, is_leaf=_is_var)


def restore_targets(abstract, mesh: Mesh | None = None, rules: Rules = ()) -> dict:
  """Restore targets of an abstract nnx.State: a pure dict of ShapeDtypeStructs in their
  shardings under `mesh`, else on the first device (each parameter read straight into place)."""
  pure = abstract.to_pure_dict()
  if mesh is not None:
    shardings = state_shardings(abstract, mesh, rules).to_pure_dict()
  else:
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    shardings = jax.tree.map(lambda _: one, pure)
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), pure, shardings)


def run_once(fn, *args, out_shardings):
  """`jax.jit(fn, out_shardings=...)(*args)` for a program run once (initialisers). On CPU it
  compiles without LLVM's optimisations: they cost more compile time than they save on one
  run (the tiny base's state init: 8.7 s -> 4.4 s to compile)."""
  lowered = jax.jit(fn, out_shardings=out_shardings).lower(*args)
  leaves = jax.tree.leaves(out_shardings)
  platform = next(iter(leaves[0].device_set)).platform if leaves else jax.default_backend()
  options = {"xla_backend_optimization_level": 0} if platform == "cpu" else None
  return lowered.compile(compiler_options=options)(*args)


@contextlib.contextmanager
def activation_rules(mesh: Mesh, rules: Rules):
  """Makes `constrain` active (inside a jitted function traced under it)."""
  prev = getattr(_ctx, "value", None)
  _ctx.value = (mesh, tuple(rules))
  try:
    yield
  finally:
    _ctx.value = prev


def active_rules() -> tuple[Mesh, Rules] | None:
  """(mesh, rules) of the innermost `activation_rules`, or None outside it."""
  return getattr(_ctx, "value", None)


def target_platform() -> str:
  """The platform a program traced now is for: the active rules' mesh's (an AOT compile for a
  TPU topology runs on a CPU host), else JAX's default backend."""
  ctx = active_rules()
  return ctx[0].devices.flat[0].platform if ctx is not None else jax.default_backend()


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
  """Sharding constraint from logical names; a no-op outside `activation_rules`."""
  ctx = getattr(_ctx, "value", None)
  if ctx is None:
    return x
  mesh, rules = ctx
  if len(names) != x.ndim:
    raise ValueError(f"constrain: {len(names)} names {tuple(names)} for an array of rank {x.ndim}")
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec_for(names, rules, mesh, x.shape)))


def describe(state, mesh: Mesh, rules: Rules) -> str:
  """Table of every parameter's shape, logical names, mesh spec and bytes per device."""
  rows, total, per_device = [], 0, 0
  flat = jax.tree_util.tree_flatten_with_path(state, is_leaf=_is_var)[0]
  for path, leaf in flat:
    value = leaf.get_value() if _is_var(leaf) and hasattr(leaf, "get_value") else getattr(leaf, "value", leaf)
    if not hasattr(value, "shape"):
      continue
    spec = _leaf_spec(leaf, rules, mesh)
    nbytes = math.prod(value.shape) * np.dtype(value.dtype).itemsize
    split = math.prod(math.prod(mesh.shape[a] for a in ((s,) if isinstance(s, str) else s))
                      for s in spec if s is not None)
    total += nbytes
    per_device += nbytes // split
    names = leaf.get_metadata().get("logical_axes") if _is_var(leaf) else None
    rows.append((jax.tree_util.keystr(path), str(tuple(value.shape)), str(names), str(spec), nbytes // split))
  widths = [max(len(r[i]) for r in rows + [("param", "shape", "logical", "spec", "")]) for i in range(4)]
  head = f"{'param':<{widths[0]}}  {'shape':<{widths[1]}}  {'logical':<{widths[2]}}  {'spec':<{widths[3]}}  bytes/device"
  lines = [head] + [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]:<{widths[3]}}  {r[4]:,}"
                    for r in rows]
  lines.append(f"total {total:,} bytes; {per_device:,} bytes per device on mesh {dict(mesh.shape)}")
  return "\n".join(lines)
