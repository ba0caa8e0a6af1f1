"""Smoke test of `bench/bench_unet.py --quick`: it runs and reports positive figures.

Only the JAX benchmark: the imagen-pytorch comparison needs optional packages.
"""
import math
import pathlib
import sys

ROOT = str(pathlib.Path(__file__).resolve().parents[1])
if ROOT not in sys.path:  # `bench/` is a top-level folder, not part of the installed package
  sys.path.insert(0, ROOT)

from bench import bench_unet


def test_bench_unet_quick_table():
  args = bench_unet.parse_args(["--quick"])
  results = bench_unet.run(args)
  for name, expected in (("train", bench_unet.TRAIN_COLUMNS), ("sample", bench_unet.SAMPLE_COLUMNS)):
    columns, rows = results[name]
    assert tuple(columns) == expected
    assert len(rows) == len(args.channels) * (1 if name == "train" else len(args.sample_steps))
    for row in rows:
      assert len(row) == len(columns)
      assert all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in row), row
  table = bench_unet.markdown_table(*results["train"])
  assert table.splitlines()[0].startswith("| channels | params (M) |")
