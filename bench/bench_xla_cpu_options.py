"""The CLI's XLA CPU options (`imagen_video/utils/xla_cpu.py`) against XLA's defaults, on our
train step at bench_vs_imagen_pytorch's default shapes: each variant in its own process (XLA
reads its flags once), interleaved over rounds; median step time, compile time, and the first
steps' losses (the options must not change them).

    python -m bench.bench_xla_cpu_options --rounds 3
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# An xla_-prefixed key that nothing reads: "backend options set", so ours are not added.
VARIANTS = {"XLA defaults": "--xla_backend_extra_options=xla_none", "CLI options": ""}


def one(steps: int) -> dict:
  from bench import bench_vs_imagen_pytorch as vs  # bench/__init__ has set this process's options
  import numpy as np
  t0 = time.time()
  _, _, tr = vs.our_train_bench(vs.parse_args([]))
  compile_s = time.time() - t0
  losses = [float(tr.step()) for _ in range(4)]
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    tr.step()
    times.append(time.perf_counter() - t)
  return dict(ms=1e3 * float(np.median(times)), compile_s=compile_s, losses=losses)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--steps", type=int, default=6, help="timed steps per process (after 4 warm ones)")
  p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  a = p.parse_args(argv)
  if a.child:
    print(json.dumps(one(a.steps)), flush=True)
    return
  print(f"load average at start: {os.getloadavg()}", file=sys.stderr)
  runs = {name: [] for name in VARIANTS}
  for r in range(a.rounds):
    for name, flags in VARIANTS.items():
      env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
      out = subprocess.run([sys.executable, "-m", "bench.bench_xla_cpu_options", "--child", "--steps", str(a.steps)],
                           env=env, capture_output=True, text=True, check=True)
      runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
      print(f"round {r + 1} {name}: {runs[name][-1]['ms']:.1f} ms", file=sys.stderr, flush=True)
  print(f"load average at end: {os.getloadavg()}", file=sys.stderr)
  base = statistics.median(x["ms"] for x in runs["XLA defaults"])
  print("| XLA CPU options | train step ms, each round | median | speed-up vs defaults | build + compile s | losses, steps 1-4 |")
  print("|---|---|---|---|---|---|")
  for name, rs in runs.items():
    med = statistics.median(x["ms"] for x in rs)
    losses = {tuple(x["losses"]) for x in rs}
    shown = ", ".join(f"{v:.5f}" for v in rs[0]["losses"]) + ("" if len(losses) == 1 else " (differ between rounds)")
    ms = " / ".join(f"{x['ms']:.0f}" for x in rs)
    compile_s = " / ".join(f"{x['compile_s']:.0f}" for x in rs)
    print(f"| {name} | {ms} | {med:.0f} | {base / med:.2f}x | {compile_s} | {shown} |")


if __name__ == "__main__":
  main()
