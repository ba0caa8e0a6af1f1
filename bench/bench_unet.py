"""Base Video U-Net: train-step throughput and guided DDIM sampling latency at
several widths, on this machine's default JAX backend.

    python -m bench.bench_unet                      # channels 32/64/96, 8x32x32, batch 2
    python -m bench.bench_unet --quick              # smoke run (~30 s, mostly XLA compiling)
    python -m bench.bench_unet --channels 32,64 --sample_steps 16 --repeats 3

Train step: the trainer's compiled step (fwd + bwd + clipped AdamW + EMA),
state donated; FLOPs per step from XLA's `compiled.cost_analysis()`.
Sampling: `Stage.sample`, one compiled `lax.fori_loop` of DDIM steps, each a
guided forward on a 2B batch. Figures are medians of `--repeats` calls after
one warm-up call (compilation excluded); ratios are against the narrowest
U-Net measured in the same run.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys

import jax

from bench import _jax_unet
from bench._timing import markdown_table, median_time

TRAIN_COLUMNS = ("channels", "params (M)", "batch", "step (ms)", "steps/s", "examples/s",
                 "GFLOP/step", "GFLOP/s", "time vs narrowest")
SAMPLE_COLUMNS = ("channels", "params (M)", "batch", "steps", "guidance", "latency (s)",
                  "ms/step", "time vs narrowest")


def parse_args(argv=None) -> argparse.Namespace:
  ints = lambda s: tuple(int(v) for v in s.split(","))
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--channels", type=ints, default=(32, 64, 96), help="level-0 widths, comma-separated")
  p.add_argument("--batch", type=int, default=2)
  p.add_argument("--frames", type=int, default=8)
  p.add_argument("--size", type=int, default=32, help="frame height = width")
  p.add_argument("--text_dim", type=int, default=128)
  p.add_argument("--text_len", type=int, default=16)
  p.add_argument("--sample_steps", type=ints, default=(16, 64))
  p.add_argument("--guidance", type=float, default=3.0)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--train_repeats", type=int, default=None, help="default: 2 x --repeats")
  p.add_argument("--mults", type=ints, default=(1, 2, 2), help="channel multiplier per level")
  p.add_argument("--blocks", type=ints, default=(1, 1, 2), help="res blocks per level")
  p.add_argument("--quick", action="store_true", help="smoke run: 1-level net, tiny shapes, 1 repeat")
  args = p.parse_args(argv)
  if args.quick:
    # One level: XLA compiling the backward pass dominates a smoke run on CPU.
    args.channels, args.mults, args.blocks = (16,), (1,), (1,)
    args.batch, args.frames, args.size = 1, 4, 16
    args.text_len, args.text_dim, args.sample_steps, args.repeats = 4, 32, (2,), 1
    args.train_repeats = 1
  args.train_repeats = args.train_repeats or 2 * args.repeats
  return args


def run(args: argparse.Namespace) -> dict:
  """{"train": (columns, rows), "sample": (columns, rows)}; also printed by `main`."""
  train_rows, sample_rows = [], []
  base_step, base_sample = None, {}
  for ch in args.channels:
    config = _jax_unet.stage_config(ch, size=args.size, text_dim=args.text_dim, mults=args.mults,
                                    blocks=args.blocks)
    stage = _jax_unet.make_stage(config, args.text_dim)
    batch = _jax_unet.random_batch(jax.random.key(0), batch=args.batch, frames=args.frames,
                                   size=args.size, text_dim=args.text_dim, text_len=args.text_len)
    tb = _jax_unet.TrainBench(stage, batch)
    t = median_time(tb.step, repeats=args.train_repeats)
    base_step = base_step or t
    mparams = tb.params / 1e6
    print(f"channels {ch}: train step {1e3 * t:.1f} ms", file=sys.stderr, flush=True)
    train_rows.append((ch, mparams, args.batch, 1e3 * t, 1 / t, args.batch / t, tb.flops / 1e9,
                       tb.flops / 1e9 / t, t / base_step))
    sb = _jax_unet.SampleBench(stage, tb.state["params"]["unet"], batch, guidance=args.guidance)
    for n in args.sample_steps:
      s = median_time(lambda sb=sb, n=n: sb.run(n), repeats=args.repeats)
      print(f"channels {ch}: {n}-step sampling {s:.3f} s", file=sys.stderr, flush=True)
      base_sample.setdefault(n, s)
      sample_rows.append((ch, mparams, args.batch, n, args.guidance, s, 1e3 * s / n,
                          s / base_sample[n]))
  return {"train": (TRAIN_COLUMNS, train_rows), "sample": (SAMPLE_COLUMNS, sample_rows)}


def describe(args) -> str:
  return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"jax {jax.__version__} on {jax.devices()[0].platform}; batch {args.batch}, "
          f"{args.frames} frames x {args.size}x{args.size}, levels x{args.mults} blocks {args.blocks}, text {args.text_len} tokens x "
          f"{args.text_dim}, fp32")


def main(argv=None):
  args = parse_args(argv)
  results = run(args)
  print(describe(args))
  print("\nTrain step (fwd + bwd + AdamW + EMA), median of", args.train_repeats)
  print(markdown_table(*results["train"]))
  print(f"\nGuided DDIM sampling (compiled fori_loop, 2B forward per step), median of {args.repeats}")
  print(markdown_table(*results["sample"]))
  return results


if __name__ == "__main__":
  main()
