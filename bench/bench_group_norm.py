"""GroupNorm as shipped (one pass, pivoted) against the two-pass form it replaced, in our train
step at bench_vs_imagen_pytorch's default shapes: both compiled in one process and timed
interleaved (separate processes drift more than the difference on a shared 2-core box).

    python -m bench.bench_group_norm --rounds 20
"""
import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from bench import bench_vs_imagen_pytorch as vs
from imagen_video.nn import layers


def two_pass(self, x):
  """The form before session 24: the mean, then the variance about it, then the affine."""
  *lead, h, w, c = x.shape
  xg = x.astype(jnp.float32).reshape(*lead, h, w, self.groups, c // self.groups)
  mean = xg.mean((-4, -3, -1), keepdims=True)
  var = jnp.square(xg - mean).mean((-4, -3, -1), keepdims=True)
  y = ((xg - mean) * jax.lax.rsqrt(var + self.eps)).reshape(x.shape)
  return (y * self.scale[...] + self.bias[...]).astype(self.dtype)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--rounds", type=int, default=20)
  a = p.parse_args(argv)
  shipped = layers.GroupNorm.__call__
  benches = {}
  try:
    for name, call in (("two-pass", two_pass), ("one pass (shipped)", shipped)):
      layers.GroupNorm.__call__ = call  # the step is traced and compiled while this is set
      benches[name] = vs.our_train_bench(vs.parse_args([]))[2]
  finally:
    layers.GroupNorm.__call__ = shipped
  for b in benches.values():
    [b.step() for _ in range(2)]
  times = {k: [] for k in benches}
  for _ in range(a.rounds):
    for k, b in benches.items():
      t = time.perf_counter()
      b.step()
      times[k].append(1e3 * (time.perf_counter() - t))
  base = statistics.median(times["two-pass"])
  print("| GroupNorm | GFLOP/step (XLA) | train step ms, median | min | vs two-pass |")
  print("|---|---|---|---|---|")
  for k, v in times.items():
    med = statistics.median(v)
    print(f"| {k} | {benches[k].flops / 1e9:.2f} | {med:.1f} | {min(v):.1f} | {med / base - 1:+.1%} |")


if __name__ == "__main__":
  main()
