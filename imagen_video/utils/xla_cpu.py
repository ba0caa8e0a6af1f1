"""XLA CPU options the project runs with: set in XLA_FLAGS before JAX starts its backend."""
import glob
import os

# XLA's CPU compiler leaves multi-output fusion off by default (its GPU compiler always does it):
# sibling loops over the same arrays then run as one pass instead of several. In our train step
# 423 fusions become multi-output, 333 of them the optimizer's per-parameter updates (AdamW's
# moments and step, the EMA); the step runs ~9% faster (bench/RESULTS.md).
MULTI_OUTPUT_FUSION = "--xla_backend_extra_options=xla_cpu_use_multi_output_fusion"


def with_cpu_options(flags: str) -> str:
  """`flags` (an XLA_FLAGS value) with the project's CPU options added, unless it already sets
  backend options of its own (a user's are left as they are)."""
  if "--xla_backend_extra_options" in flags:
    return flags
  return f"{flags} {MULTI_OUTPUT_FUSION}".strip()


def cpu_only() -> bool:
  """Whether JAX will run on the CPU here: JAX_PLATFORMS says so, or the host has no TPU
  (/dev/accel*, /dev/vfio) or NVIDIA GPU device files."""
  platforms = os.environ.get("JAX_PLATFORMS", "")
  if platforms:
    return platforms == "cpu"
  return not any(glob.glob(p) for p in ("/dev/accel*", "/dev/vfio/[0-9]*", "/dev/nvidia[0-9]*"))


def set_cpu_options() -> None:
  """On a CPU-only host, adds the options to this process's XLA_FLAGS (and its children's).
  Effective only before JAX's first backend starts; afterwards it changes nothing here."""
  if cpu_only():
    os.environ["XLA_FLAGS"] = with_cpu_options(os.environ.get("XLA_FLAGS", ""))
