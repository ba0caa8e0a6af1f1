"""Session 24's train-step fixes one by one, in our train step at bench_vs_imagen_pytorch's
default shapes: the step as it was, + one-pass GroupNorm, + CPU channel padding (as shipped).
All compiled in one process and timed interleaved (separate processes drift more than these
differences on a shared 2-core box). FLOPs: XLA's count of each program (the padded one counts
its zero channels too) and of the unpadded program (the work).

    python -m bench.bench_step_fixes --rounds 20
"""
import argparse
import contextlib
import statistics
import time

import jax
import jax.numpy as jnp

from bench import _jax_unet
from bench import bench_vs_imagen_pytorch as vs
from imagen_video.nn import layers


def two_pass(self, x):
  """GroupNorm before session 24: the mean, then the variance about it, then the affine."""
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
  shipped_norm = layers.GroupNorm.__call__
  variants = (("before (two-pass GroupNorm, no padding)", two_pass, False),
              ("+ one-pass GroupNorm", shipped_norm, False),
              ("+ CPU channel padding (shipped)", shipped_norm, True))
  benches = {}
  try:
    for name, norm, padded in variants:  # each step is traced and compiled under its variant
      layers.GroupNorm.__call__ = norm
      with _jax_unet.channels_unpadded() if not padded else contextlib.nullcontext():
        benches[name] = vs.our_train_bench(vs.parse_args([]))[2]
  finally:
    layers.GroupNorm.__call__ = shipped_norm  # (channels_unpadded restores the padding itself)
  work = benches[variants[1][0]].flops  # unpadded, one-pass: the network's work
  for b in benches.values():
    [b.step() for _ in range(2)]
  times = {k: [] for k in benches}
  for _ in range(a.rounds):
    for k, b in benches.items():
      t = time.perf_counter()
      b.step()
      times[k].append(1e3 * (time.perf_counter() - t))
  base = statistics.median(times[variants[0][0]])
  print(f"work (XLA's count, unpadded): {work / 1e9:.2f} GFLOP/step; medians of {a.rounds} interleaved rounds")
  print("| train step | GFLOP/step (XLA, as compiled) | ms, median | min | GFLOP/s of work | vs before |")
  print("|---|---|---|---|---|---|")
  for k, v in times.items():
    med = statistics.median(v)
    print(f"| {k} | {benches[k].flops / 1e9:.2f} | {med:.1f} | {min(v):.1f} | {work / med / 1e6:.1f} | "
          f"{med / base - 1:+.1%} |")


if __name__ == "__main__":
  main()
