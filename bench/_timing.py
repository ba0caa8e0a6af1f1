"""Timing and table helpers shared by the benchmarks.

Every figure is the median of `repeats` timed calls after `warmup` untimed
ones (the first call compiles or fills caches), so one slow outlier on a
shared CPU does not move it.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence


def median_time(fn: Callable[[], object], *, repeats: int, warmup: int = 1) -> float:
  """Median wall time in seconds of `fn()`; `fn` must block until its work is done."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(max(repeats, 1)):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
  """A markdown table; floats get 4 significant digits."""
  fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
  return "\n".join(lines)


def interleaved_medians(fns: dict[str, Callable[[], object]], *, repeats: int,
                        warmup: int = 1) -> dict[str, float]:
  """Median seconds of each blocking `fn`, timed in turn (A B A B ...) so that load
  from other jobs on a shared machine falls on all of them alike."""
  for fn in fns.values():
    for _ in range(warmup):
      fn()
  times = {name: [] for name in fns}
  for _ in range(max(repeats, 1)):
    for name, fn in fns.items():
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(ts) for name, ts in times.items()}
