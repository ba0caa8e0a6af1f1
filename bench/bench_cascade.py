"""Wall-clock of whole cascades, per stage, measured in one run (e.g. undistilled vs distilled).

    python -m bench.bench_cascade \
        --cascade "undistilled=configs/cascade_tiny.py:root=R,data_dir=D" \
        --cascade "distilled=configs/cascade_tiny.py:root=R,data_dir=D,distilled=S" \
        [--batch 4] [--repeats 3]

Each cascade samples the same --batch prompts once to compile, then --repeats times
(interleaved across cascades, so all see the same machine load); the table gives
the median seconds per stage and in total, and the speed-up against the first cascade.
"""
from __future__ import annotations

import argparse
import statistics
import time

from imagen_video.cascade.cascade import Cascade
from imagen_video.cli import flags_util
from imagen_video.stage.sampler import Request

PROMPTS = ("a red circle moving left", "a blue square moving up", "a green triangle moving right",
           "a yellow circle moving down")


def timed(cascade: Cascade, prompts, seed: int) -> list[float]:
  """Seconds per stage of one cascade call (from the cascade's own per-stage log lines)."""
  lines = []
  t0 = time.time()
  cascade.sample(Request(prompts=tuple(prompts), seed=seed), log=lines.append)
  total = time.time() - t0
  per_stage = [float(line.split(" in ")[1].split(" s")[0]) for line in lines]
  return per_stage + [total]


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--cascade", action="append", required=True, help="NAME=CASCADE_CONFIG[:args]")
  p.add_argument("--batch", type=int, default=4)
  p.add_argument("--repeats", type=int, default=3)
  a = p.parse_args()
  cascades = {}
  for item in a.cascade:
    name, _, spec = item.partition("=")
    cascades[name] = Cascade.load(flags_util.load_config(spec))
  prompts = [PROMPTS[i % len(PROMPTS)] for i in range(a.batch)]
  for c in cascades.values():
    timed(c, prompts, seed=0)  # compile
  runs = {name: [] for name in cascades}
  for r in range(a.repeats):
    for name, c in cascades.items():
      runs[name].append(timed(c, prompts, seed=1 + r))
  names = [run.name for run in next(iter(cascades.values())).runs]
  first = None
  print(f"Cascade wall-clock, batch {a.batch}, median of {a.repeats} (seconds)\n")
  print("| cascade | steps per stage | " + " | ".join(names) + " | total | speed-up |")
  print("|---|---|" + "---|" * (len(names) + 2))
  for name, c in cascades.items():
    med = [statistics.median(col) for col in zip(*runs[name])]
    first = first or med[-1]
    steps = "/".join(str(run.defaults.steps) for run in c.runs)
    print(f"| {name} | {steps} | " + " | ".join(f"{s:.2f}" for s in med[:-1]) +
          f" | {med[-1]:.2f} | {first / med[-1]:.2f}x |")


if __name__ == "__main__":
  main()
