"""Dynamic thresholding's percentile: `jnp.percentile` (a sort of every row) against
`guidance.row_percentile` (bisection over the float bits), compiled, at the sizes the
stages threshold: rows = samples, n = frames x H x W x 3 of one sample.

    python -m bench.bench_threshold [--repeats 10]
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from bench._timing import interleaved_medians, markdown_table
from imagen_video.diffusion import guidance

SIZES = (  # (rows, frames, height, width): the bench's sampler, the tiny cascade's SR, paper-like
    (2, 8, 32, 32), (4, 16, 64, 64), (1, 16, 128, 128), (1, 32, 320, 192))


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--repeats", type=int, default=10)
  p.add_argument("--percentile", type=float, default=99.5)
  a = p.parse_args(argv)
  by_sort = jax.jit(lambda x, q: jnp.percentile(x, q, axis=1))
  by_bits = jax.jit(guidance.row_percentile)
  rows = []
  for r, t, h, w in SIZES:
    x = jnp.abs(jax.random.normal(jax.random.key(0), (r, t * h * w * 3)))
    same = bool(np.allclose(by_sort(x, a.percentile), by_bits(x, a.percentile), rtol=1e-6))
    ms = interleaved_medians({k: (lambda f=f: f(x, a.percentile).block_until_ready())
                              for k, f in (("sort", by_sort), ("bits", by_bits))}, repeats=a.repeats)
    rows.append((f"{r} x {t}x{h}x{w}x3", 1e3 * ms["sort"], 1e3 * ms["bits"], ms["sort"] / ms["bits"], same))
  print(markdown_table(("rows x sample", "jnp.percentile (sort) ms", "bisection ms", "speed-up",
                        "equal (rtol 1e-6)"), rows))


if __name__ == "__main__":
  main()
