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
