"""Ahead-of-time compilation of a stage's train and sample steps for a TPU slice, on any host.

Needs `libtpu` (`pip install imagen-video[tpu]`) but no TPU: libtpu describes the
topology and compiles for it (`jax.experimental.topologies`), the steps are lowered
from ShapeDtypeStructs with NamedShardings (nothing is allocated), and XLA's
`memory_analysis()` / `cost_analysis()` give per-device bytes and FLOPs.

Slice names follow Cloud TPU: `v4-N` and `v5p-N` count TensorCores (2 per chip,
one megacore JAX device per chip: v5p-128 = 64 chips, 4x4x4); `v5e-N` and `v6e-N`
count chips (v5e-16 = 4x4). A raw libtpu topology ("v5p:4x4x8", "v5e:2x4") works too.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from imagen_video.data import batch as batch_keys
from imagen_video.diffusion import samplers
from imagen_video.diffusion import schedule as schedule_lib
from imagen_video.parallel import sharding
from imagen_video.stage import conditioning
from imagen_video.text import encoder, t5, t5_checkpoint
from imagen_video.utils import chips, mfu

GIB = 2 ** 30


CHIPS = chips.TPU  # TPU families by name (the shared table of peaks and memory)


@dataclasses.dataclass(frozen=True)
class Slice:
  name: str
  chip: chips.Chip
  grid: tuple[int, ...]

  @property
  def topology(self) -> str:
    return f"{self.chip.family}:{'x'.join(map(str, self.grid))}"

  @property
  def chips(self) -> int:
    return math.prod(self.grid)


def _grid(chips: int, dims: int) -> tuple[int, ...]:
  """Cloud TPU's standard slice shapes: double the last smallest side
  (3-D: 2x2x1, 2x2x2, 2x2x4, 2x4x4, 4x4x4, 4x4x8, ...; 2-D: 1x1, 1x2, 2x2, 2x4, 4x4, ...)."""
  grid = [2, 2, 1] if dims == 3 and chips >= 4 else [1] * dims
  while math.prod(grid) < chips:
    small = min(grid)
    i = max(j for j, g in enumerate(grid) if g == small)
    grid[i] *= 2
  if math.prod(grid) != chips:
    raise ValueError(f"{chips} chips is not a standard slice; give a topology like 'v5p:4x4x12'")
  return tuple(grid)


def parse_slice(name: str) -> Slice:
  """'v5p-128' (cores) / 'v5e-16' (chips) / 'v5p:4x4x4' (libtpu topology) -> Slice."""
  m = re.fullmatch(r"(v4|v5p|v5e|v6e)([-:])([0-9x]+)", name.strip().lower())
  if not m:
    raise ValueError(f"unknown TPU slice {name!r}: expected e.g. v5p-128, v4-32, v5e-16, v6e-64 "
                     f"or a topology like v5p:4x4x4; families: {sorted(CHIPS)}")
  chip = CHIPS[m.group(1)]
  if m.group(2) == ":":
    grid = tuple(int(v) for v in m.group(3).split("x"))
  else:
    count = int(m.group(3))
    if count % chip.cores_per_chip:
      raise ValueError(f"{name}: {chip.family}-N counts TensorCores ({chip.cores_per_chip} per chip)")
    grid = _grid(count // chip.cores_per_chip, chip.dims)
  if len(grid) != chip.dims:
    grid = grid + (1,) * (chip.dims - len(grid))
  return Slice(name, chip, grid)


def topology_devices(sl: Slice) -> list:
  """Compile-only devices of the slice (one per chip: megacore for v4/v5p)."""
  # Another process that loaded libtpu (any jax without JAX_PLATFORMS=cpu) holds its
  # lockfile; compiling without a TPU does not need the exclusive lock.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  from jax.experimental import topologies
  if sl.chip.dims == 3:
    wrap = (min(sl.grid) >= 4,) * 3  # full 4x4x4 cubes are tori
  else:
    wrap = tuple(g == 16 for g in sl.grid) + (False,)
  desc = topologies.get_topology_desc(
      platform="tpu", topology_name=sl.topology,
      chip_config_name="megacore" if sl.chip.cores_per_chip == 2 else "default",
      chips_per_host_bounds=(2, 2, 1), num_slices=1, wrap=wrap)
  return list(desc.devices)


# ---- abstract inputs ----------------------------------------------------------------------

def abstract_text_encoder(text_config) -> encoder.TextEncoder:
  """The config's T5 as shapes only (T5-XXL is 4.76B params: never allocated here).
  A checkpoint's own T5Config is read when it exists; else the preset's."""
  dtypes = dict(dtype=text_config.dtype, param_dtype=text_config.param_dtype)
  if text_config.checkpoint and os.path.exists(text_config.checkpoint):
    cfg = t5_checkpoint.load_config(text_config.checkpoint, **dtypes)
  else:
    cfg = t5.preset(text_config.variant, text_config.preset, **dtypes)
  graphdef, params = nnx.split(t5_checkpoint.abstract_model(cfg))
  return encoder.TextEncoder(cfg, graphdef, params, None, frozen=text_config.frozen,
                             precomputed=text_config.precomputed)


def with_shardings(abstract, shardings):
  """ShapeDtypeStructs carrying their NamedShardings (jit arguments for .lower)."""
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)


def _batch_arg(mesh, rules, shape, dtype):
  spec = sharding.spec_for(("batch",) + (None,) * (len(shape) - 1), rules, mesh, shape)
  return jax.ShapeDtypeStruct(shape, dtype, sharding=NamedSharding(mesh, spec))


def abstract_batch(config, mesh, rules, batch: int) -> dict:
  """What `trainer.to_global` feeds the train step, as sharded shapes."""
  d = config.data
  b = d.builder
  frames = d.get("frames") or b.frames
  h, w = tuple(d.crop) if d.get("crop") else (b.height, b.width)
  out = {batch_keys.VIDEO: _batch_arg(mesh, rules, (batch, frames, h, w, 3), jnp.float32)}
  low = batch_keys.low_res_shape(config)
  if low:
    lf, lh, lw = low
    # crops and frame windows are taken at the same place in the low-res video
    shape = (batch, lf * frames // b.frames, lh * h // b.height, lw * w // b.width, 3)
    out[batch_keys.low_res_key(*low)] = _batch_arg(mesh, rules, shape, jnp.float32)
  length = config.text.max_length
  if config.text.precomputed:
    out[encoder.EMBEDDINGS] = _batch_arg(mesh, rules, (batch, length, 4096), jnp.float32)
  else:
    out[encoder.TOKENS] = _batch_arg(mesh, rules, (batch, length), jnp.int32)
  out[encoder.MASK] = _batch_arg(mesh, rules, (batch, length), jnp.bool_)
  return out


# ---- reports -----------------------------------------------------------------------------

@dataclasses.dataclass
class Report:
  name: str
  batch: int
  argument_bytes: int
  temp_bytes: int
  output_bytes: int
  alias_bytes: int
  flops: float          # per device per step (cost_analysis)
  compile_s: float

  @property
  def total_bytes(self) -> int:
    # Donated inputs alias outputs: count those bytes once.
    return self.argument_bytes + self.temp_bytes + self.output_bytes - self.alias_bytes


def report(name: str, compiled, batch: int, compile_s: float, *, loop_trips: int = 1,
           device=None) -> Report:
  """`loop_trips`: the step is a loop (gradient accumulation) whose body XLA may count once."""
  m = compiled.memory_analysis()
  flops = mfu.step_flops(compiled, loop_trips, device=device) or 0.0
  return Report(name, batch, m.argument_size_in_bytes, m.temp_size_in_bytes, m.output_size_in_bytes,
                m.alias_size_in_bytes, flops, compile_s)


def format_report(r: Report, sl: Slice, per: str = "step") -> str:
  hbm = sl.chip.hbm_gib
  t100 = r.flops / sl.chip.peak_flops
  fits = "fits" if r.total_bytes / GIB <= hbm else "DOES NOT FIT"
  return (f"[{r.name}] batch {r.batch} on {sl.name} ({sl.topology}, {sl.chips} chips), compiled in {r.compile_s:.0f} s\n"
          f"  memory per device: arguments {r.argument_bytes / GIB:.2f} GiB, temporaries {r.temp_bytes / GIB:.2f} GiB, "
          f"outputs {r.output_bytes / GIB:.2f} GiB, aliased {r.alias_bytes / GIB:.2f} GiB; "
          f"total {r.total_bytes / GIB:.2f} of {hbm:g} GiB HBM ({fits})\n"
          f"  FLOPs per {per}: {r.flops:.3e} per device, {r.flops * sl.chips:.3e} in all; "
          f"{per} time at 100% MFU {t100 * 1e3:.1f} ms, at 50% MFU {2 * t100 * 1e3:.1f} ms "
          f"({sl.chip.family} peak {sl.chip.peak_flops / 1e12:g} TFLOP/s bf16)")


# ---- the two steps -------------------------------------------------------------------------

def _setup(config, devices):
  from imagen_video.stage.model import Stage
  mesh = sharding.make_mesh(dict(config.mesh), devices=devices)
  rules = tuple(tuple(r) for r in config.sharding_rules)
  stage = Stage(config, mesh=mesh, rules=rules, text_encoder=abstract_text_encoder(config.text))
  return mesh, rules, stage


def train_step_args(config, devices, batch: int):
  """(mesh, rules, step_fn, abstract (state, frozen, batch, hyper) with their shardings): the
  real `train_step.make_train_step` with `trainer.state_spec` shardings; the frozen T5 runs in
  the step unless the config's text embeddings are precomputed."""
  from imagen_video.train import optimizer, train_step, trainer
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.data.batch_size = batch
  mesh, rules, stage = _setup(config, devices)
  tx, _ = optimizer.make_optimizer(config.optim, config.train.steps)
  abstract_state, state_shardings = trainer.state_spec(config, stage, tx, mesh, rules)
  frozen_abs = {} if not config.text.frozen else {"text": stage.text.params}
  frozen_shardings = sharding.state_shardings(frozen_abs, mesh, rules)
  hyper = train_step.run_hyperparameters(config)
  args = (with_shardings(abstract_state, state_shardings), with_shardings(frozen_abs, frozen_shardings),
          abstract_batch(config, mesh, rules, batch),
          jax.tree.map(lambda v: jax.ShapeDtypeStruct((), v.dtype, sharding=NamedSharding(mesh, P())), hyper))
  step_fn = train_step.make_train_step(stage, optimizer.tx_for(config.optim, config.train.steps),
                                       accum_steps=config.optim.grad_accum_steps)
  return mesh, rules, step_fn, args


def compile_train_step(config, devices, batch: int) -> Report:
  import time
  mesh, rules, step_fn, args = train_step_args(config, devices, batch)
  shardings = jax.tree.map(lambda a: a.sharding, args)
  t0 = time.time()
  with jax.set_mesh(mesh), sharding.activation_rules(mesh, rules):
    jitted = jax.jit(step_fn, in_shardings=shardings,
                     out_shardings=(shardings[0], NamedSharding(mesh, P())), donate_argnums=(0,))
    compiled = jitted.lower(*args).compile()
  return report("train_step", compiled, batch, time.time() - t0,
                loop_trips=config.optim.grad_accum_steps, device=devices[0])


def compile_sample_step(config, devices, batch: int, steps: int = 1) -> Report:
  """`samplers.sample` (guided: the U-Net runs on 2 x batch) for `steps` steps.

  steps=1 gives one sampler step exactly (XLA's cost analysis counts a loop body
  once, so FLOPs of a longer loop would read as one step's)."""
  import time
  config = config.copy_and_resolve_references()
  mesh, rules, stage = _setup(config, devices)
  shape = stage.output_shape(batch)
  params = with_shardings(stage.abstract_params, sharding.state_shardings(stage.abstract_params, mesh, rules))
  length = config.text.max_length
  cond = {"text_emb": _batch_arg(mesh, rules, (batch, length, stage.text.d_model), jnp.float32),
          "text_mask": _batch_arg(mesh, rules, (batch, length), jnp.bool_)}
  if conditioning.kind(config) != "base":
    cond["cond_video"] = _batch_arg(mesh, rules, shape[:4] + (3,), jnp.float32)
    cond["aug_level"] = _batch_arg(mesh, rules, (batch,), jnp.float32)
  guidance = jax.ShapeDtypeStruct((steps, batch), jnp.float32, sharding=NamedSharding(mesh, P()))
  d = config.diffusion

  plan = samplers.Plan(shape, steps, config.sample.sampler, d.objective, stage.default_thresholding(),
                       schedule_lib.spec_from_config(d),
                       learned_variance=bool(d.get("learned_variance", False)))

  def sample(params, cond, keys, guidance):  # the loop `stage.sampler.StageSampler` runs
    return samplers.sample(stage.model_fn, params, cond, keys, plan, samplers.Controls(guidance))
  keys = jax.ShapeDtypeStruct((batch,), jax.random.key(0).dtype, sharding=NamedSharding(mesh, P()))
  t0 = time.time()
  with jax.set_mesh(mesh), sharding.activation_rules(mesh, rules):
    compiled = jax.jit(sample).lower(params, cond, keys, guidance).compile()
  return report(f"sample_step x{steps}" if steps > 1 else "sample_step", compiled, batch,
                time.time() - t0)
