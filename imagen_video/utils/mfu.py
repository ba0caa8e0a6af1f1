"""FLOPs of a compiled step from XLA's cost analysis, the device's peak FLOP/s, and MFU.

XLA's `cost_analysis()` of an SPMD-partitioned executable counts one device's share (checked
against a 1-device compile in tests/test_mfu.py), so every figure here is per device. It does
not see inside custom kernels (cuDNN, Pallas splash): with those, FLOPs and MFU read low by the
attention's share (tiny base on v5p: 8% fewer FLOPs with splash). With remat it counts the
recomputed forward too (hardware FLOPs: reads higher than the model-FLOPs convention). On CPU
it counts the zero channels convolutions are padded with (`nn/layers.CPU_CHANNEL_MULTIPLE`):
the bench's 56-channel train step reads 66.6 G instead of 62.4 G.
"""
from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from imagen_video.utils import chips


@dataclasses.dataclass(frozen=True)
class Peak:
  flops: float  # FLOP/s per device
  label: str    # where the figure comes from, shown beside the MFU


def compiled_flops(compiled) -> float | None:
  """FLOPs per device of one run of a `jax.stages.Compiled`; None where the backend has no
  cost analysis. A loop's body may be counted once: see `step_flops`."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # some backends/versions do not implement it
    return None
  if isinstance(cost, (list, tuple)):  # older JAX: one dict per HLO module
    cost = cost[0] if cost else None
  flops = (cost or {}).get("flops")
  return float(flops) if flops and flops > 0 else None


@functools.cache
def loop_body_counted_once(device=None) -> bool:
  """Whether XLA's cost analysis counts a while loop's body once (as of JAX 0.10) instead of
  once per trip; probed on a 4-trip loop compiled for `device` (default: the default backend;
  an AOT topology's device probes that compiler), since XLA versions and backends differ."""
  x = jax.ShapeDtypeStruct((64, 64), jnp.float32, sharding=(
      jax.sharding.SingleDeviceSharding(device) if device is not None else None))
  one = compiled_flops(jax.jit(lambda a: a @ a).lower(x).compile())
  four = compiled_flops(jax.jit(
      lambda a: jax.lax.fori_loop(0, 4, lambda i, y: y @ a, a)).lower(x).compile())
  return one is not None and four is not None and four < 2 * one


def step_flops(compiled, loop_trips: int = 1, device=None) -> float | None:
  """FLOPs per device of one call of `compiled` whose work is a loop of `loop_trips` trips
  (gradient accumulation, sampler steps; 1: no loop). Work outside the loop is counted as if
  it ran per trip: small next to the network. `device`: what `compiled` was compiled for,
  when not the default backend (AOT)."""
  flops = compiled_flops(compiled)
  if flops is None or loop_trips == 1:
    return flops
  return flops * loop_trips if loop_body_counted_once(device) else flops


def device_peak(devices=None) -> Peak | None:
  """The peak FLOP/s per device of `devices` (those a program runs on; default all local):
  the chip table's dense bf16 peak, on CPU a measured one, None for an unknown accelerator."""
  devices = list(devices if devices is not None else jax.local_devices())
  device = devices[0]
  if device.platform == "cpu":
    return measured_cpu_peak(len(devices))
  chip = chips.for_kind(device.device_kind)
  if chip is None:
    return None
  return Peak(chip.peak_flops, f"{device.device_kind} dense bf16 peak {chip.peak_flops / 1e12:g} TFLOP/s")


@functools.cache
def measured_cpu_peak(num_devices: int = 1, n: int = 1024) -> Peak:
  """FLOP/s per device of an n x n fp32 matmul run on `num_devices` CPU devices at once (fake
  devices share the cores, so each gets its share); best of 3 runs, about a second."""
  devices = jax.local_devices(backend="cpu")[:num_devices]
  mesh = jax.sharding.Mesh(np.asarray(devices), ("d",), axis_types=(jax.sharding.AxisType.Auto,))
  s = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d"))
  a = jax.jit(lambda: jnp.full((len(devices), n, n), 0.5, jnp.float32), out_shardings=s)()
  matmul = jax.jit(lambda a: jnp.einsum("bij,bjk->bik", a, a), out_shardings=s)
  matmul(a).block_until_ready()
  best = float("inf")
  for _ in range(3):
    t0 = time.perf_counter()
    matmul(a).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  flops = 2 * n ** 3 / best
  return Peak(flops, f"measured CPU fp32 matmul peak {flops / 1e12:.3g} TFLOP/s per device "
                     f"({len(devices)} device(s) at once)")


def throughput(flops_per_step: float | None, seconds_per_step: float, peak: Peak | None) -> dict:
  """{'tflops_per_device': ..., 'mfu': ...} (each only where known) for one step's FLOPs per device."""
  if not flops_per_step or seconds_per_step <= 0:
    return {}
  achieved = flops_per_step / seconds_per_step
  out = {"tflops_per_device": achieved / 1e12}
  if peak is not None:
    out["mfu"] = achieved / peak.flops
  return out


def format_throughput(fields: dict) -> str:
  """'0.0123 TFLOP/s/device MFU 3.1%' from `throughput`'s fields ('' when there are none)."""
  parts = []
  if "tflops_per_device" in fields:
    parts.append(f"{fields['tflops_per_device']:.3g} TFLOP/s/device")
  if "mfu" in fields:
    parts.append(f"MFU {fields['mfu']:.1%}")
  return " ".join(parts)
