"""XLA CPU options the project runs with: set in XLA_FLAGS before JAX starts its backend, and
the C allocator's settings that keep XLA's per-run buffers in memory."""
import ctypes
import ctypes.util
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


# glibc's mallopt parameters
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8


def keep_freed_memory() -> bool:
  """XLA's CPU runtime allocates a program's temporaries afresh on every run (the bench's train
  step: 465 MiB). glibc serves a block that large with mmap and unmaps it on free, so every
  step faults in and zeroes 119k new pages (~210 ms of kernel time per step on 2 cores).
  One arena that never mmaps or trims keeps freed blocks for the next run instead: no page
  faults, the step 8-11% faster (bench/RESULTS.md). Memory freed stays with the process (its
  peak is what each step takes anyway). Effective for threads started after it (before JAX
  starts its thread pools); False where the C library is not glibc."""
  name = ctypes.util.find_library("c")
  try:
    libc = ctypes.CDLL(name)
    mallopt = libc.mallopt
  except (OSError, AttributeError, TypeError):
    return False
  return all(mallopt(p, v) == 1 for p, v in ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1)))


KEEP_FREED_MEMORY = "IMAGEN_VIDEO_KEEP_FREED_MEMORY"  # "0": glibc's own malloc settings


def set_cpu_options() -> None:
  """On a CPU-only host, adds the options to this process's XLA_FLAGS (and its children's) and
  keeps freed memory (above; IMAGEN_VIDEO_KEEP_FREED_MEMORY=0 leaves glibc's settings). Effective
  only before JAX's first backend starts; afterwards it changes nothing here."""
  if cpu_only():
    os.environ["XLA_FLAGS"] = with_cpu_options(os.environ.get("XLA_FLAGS", ""))
    if os.environ.get(KEEP_FREED_MEMORY, "1") != "0":
      keep_freed_memory()
