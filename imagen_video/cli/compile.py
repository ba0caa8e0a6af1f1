"""imagen-video compile --config CONFIG[:ARGS] --topology v5p-128 [--batch N] [--sample_batch N]

Compiles a stage's train step (the real train step and state shardings, on the
config's mesh laid over the slice) and one guided sampler step for a TPU slice,
on this host (no TPU needed, nothing allocated), and prints per-device memory
against the chip's HBM, FLOPs per step and the step time the chip's peak gives
at 100% and 50% MFU. Needs libtpu: `pip install 'imagen-video[tpu]'`.

Slices: v4-N / v5p-N count TensorCores (v5p-128 = 64 chips, 4x4x4); v5e-N / v6e-N
count chips; or a libtpu topology such as v5p:4x4x8. Text: the config's T5 is
compiled in the train step as the config says (frozen, on device unless
config.text.precomputed); the sampler step takes precomputed embeddings.
"""
from __future__ import annotations

import os

# Before jax is imported (the config file imports it): the host runs on CPU, the TPU is
# compile-only, and another process's libtpu lockfile must not stop us.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

from absl import flags  # noqa: E402

from imagen_video.cli import flags_util  # noqa: E402


def main(argv: list[str]) -> int:
  fv = flags.FlagValues()
  flags_util.define_config(fv, argv)
  flags.DEFINE_string("topology", "v5p-128", "TPU slice (v5p-128, v4-32, v5e-16, v6e-64, v5p:4x4x8)",
                      flag_values=fv)
  flags.DEFINE_integer("batch", None, "global train batch (default: config.data.batch_size)", flag_values=fv)
  flags.DEFINE_integer("sample_batch", None, "prompts per sampler step (default: chips / 2, so the "
                       "guided 2 x batch U-Net pass has one video per chip)", flag_values=fv)
  flags.DEFINE_list("steps", ["train", "sample"], "which steps to compile", flag_values=fv)
  flags.DEFINE_integer("oom_lines", 0, "when a step does not fit, print this many lines of XLA's "
                       "error after its first (an allocation report, where XLA gives one)", flag_values=fv)
  flags_util.parse(fv, argv, __doc__)
  if fv.config is None:
    raise SystemExit(f"{argv[0]}: --config is required")
  from imagen_video.train import aot
  try:
    sl = aot.parse_slice(fv.topology)
  except ValueError as e:
    raise SystemExit(f"{argv[0]}: {e}")
  try:
    devices = aot.topology_devices(sl)
  except ImportError as e:
    raise SystemExit(f"{argv[0]}: libtpu is needed ({e}); pip install 'imagen-video[tpu]'")
  config = fv.config
  print(f"{sl.name}: topology {sl.topology}, {len(devices)} devices ({devices[0].device_kind}); "
        f"mesh {dict(config.mesh)}", flush=True)
  fits = True
  if "train" in fv.steps:
    fits &= _run("train_step", sl, "step", fv.oom_lines, lambda: aot.compile_train_step(
        config, devices, fv.batch or config.data.batch_size))
  if "sample" in fv.steps:
    fits &= _run("sample_step", sl, "sampler step", fv.oom_lines, lambda: aot.compile_sample_step(
        config, devices, fv.sample_batch or max(1, len(devices) // 2)))
  return 0 if fits else 1


def _run(name, sl, per, oom_lines, compile_fn) -> bool:
  import jax
  from imagen_video.train import aot
  try:
    r = compile_fn()
  except jax.errors.JaxRuntimeError as e:
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    # XLA refuses to compile what cannot fit in HBM: that is the answer, not a crash.
    lines = str(e).splitlines()
    print(f"[{name}] DOES NOT FIT on {sl.name}: {lines[0]}", flush=True)
    if oom_lines:
      print("\n".join(lines[1:1 + oom_lines]), flush=True)
    return False
  print(aot.format_report(r, sl, per=per), flush=True)
  return r.total_bytes <= sl.chip.hbm_gib * aot.GIB
