"""The CLI's XLA CPU options (utils/xla_cpu.py): they reach XLA and fuse sibling loops, and a
user's own backend options are left alone."""
import os
import subprocess
import sys

from imagen_video.utils import xla_cpu

# An AdamW-like pair of moment updates: two loops over the same gradient.
PROBE = """
import re
from imagen_video.utils import xla_cpu
xla_cpu.set_cpu_options()
import jax, jax.numpy as jnp
f = jax.jit(lambda g, m, v: (0.9 * m + 0.1 * g, 0.99 * v + 0.01 * g * g))
text = f.lower(*[jnp.ones((64, 256))] * 3).compile().as_text()
print(len(re.findall(r"^\\s*%\\S+ = \\(?f32\\S* .*\\bfusion\\(", text, re.M)))
"""


def _fusions(xla_flags):
  env = dict(os.environ, XLA_FLAGS=xla_flags, JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  return int(out.stdout.split()[-1])


def test_the_cli_options_fuse_sibling_loops_and_respect_a_users_own():
  assert _fusions("") == 1  # both moments in one pass
  assert _fusions("--xla_backend_extra_options=xla_cpu_enable_fast_min_max") == 2  # the user's kept


def test_with_cpu_options_adds_once():
  once = xla_cpu.with_cpu_options("--xla_force_host_platform_device_count=8")
  assert once == f"--xla_force_host_platform_device_count=8 {xla_cpu.MULTI_OUTPUT_FUSION}"
  assert xla_cpu.with_cpu_options(once) == once
  assert xla_cpu.with_cpu_options("") == xla_cpu.MULTI_OUTPUT_FUSION


# A program with a 64 MiB temporary (sin(x), materialised for the dot), its outputs kept as a
# training loop keeps its state: page faults per run after six warm-up runs.
FAULTS = """
import resource, sys
from imagen_video.utils import xla_cpu
if sys.argv[1] == "keep":
  assert xla_cpu.keep_freed_memory()
import jax, jax.numpy as jnp
f = jax.jit(lambda x, w: jnp.sin(x) @ w)
x, w = jnp.ones((4096, 4096)), jnp.ones((4096, 8))
outs = [f(x, w).block_until_ready() for _ in range(6)]
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
outs += [f(x, w).block_until_ready() for _ in range(20)]
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def _faults_per_run(mode):
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", FAULTS, mode], env=env, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  return float(out.stdout.split()[-1])


def test_kept_freed_memory_serves_the_next_run_without_page_faults():
  """glibc mmaps a block this large and unmaps it on free: every run faults its 16k pages in
  again (64 MiB / 4 KiB). With the CLI's allocator settings the next run reuses them (0 faults
  per run alone; on busy CI cores the heap once grew by 128 MiB within five runs, so the bound
  is a fraction of the default over 20 runs)."""
  default, kept = _faults_per_run("default"), _faults_per_run("keep")
  print(f"minor page faults per run: glibc's defaults {default:.0f}, freed memory kept {kept:.0f}")
  assert default > 0.9 * 2 ** 26 / 4096 and kept < 0.25 * default
