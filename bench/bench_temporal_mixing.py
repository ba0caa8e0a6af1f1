"""Cost of the base stage's temporal mixing choices: train-step time of the tiny
cascade's base U-Net (configs/cascade_tiny.py, 8x16x16, batch 8) with temporal
attention only, attention + (2+1)-D temporal conv, and attention + full 3x3x3
space-time conv. Timed in turn (A B C A B C ...) so shared-machine load falls on
all alike; ratios are against temporal attention only, measured in the same run.

    python -m bench.bench_temporal_mixing              # ~2 min on 2 CPU cores
    python -m bench.bench_temporal_mixing --quick      # smoke run
"""
from __future__ import annotations

import argparse

import jax

from bench import _jax_unet
from bench._timing import interleaved_medians, markdown_table
from imagen_video.utils import configs_loader

VARIANTS = {  # name -> model overrides
    "attention": dict(temporal_mixing="attention"),
    "conv (2+1)-D + attention": dict(temporal_mixing="conv+attention", temporal_conv_spatial=1),
    "conv 3x3x3 + attention": dict(temporal_mixing="conv+attention", temporal_conv_spatial=3),
}
COLUMNS = ("temporal mixing", "params (M)", "batch", "step (ms)", "examples/s", "GFLOP/step",
           "time vs attention")


def run(args) -> tuple:
  base = configs_loader.load("cascade_tiny.py:stage=base" + (",runlocal=true" if args.quick else ""))
  text_dim = 64
  benches = {}
  for name, overrides in VARIANTS.items():
    c = _jax_unet.stage_config(16, size=16, text_dim=text_dim)
    c.model.update(base.model.to_dict())
    c.model.update(dict(text_dim=text_dim, **overrides))
    stage = _jax_unet.make_stage(c, text_dim)
    batch = _jax_unet.random_batch(jax.random.key(0), batch=args.batch, frames=base.data.builder.frames,
                                   size=base.data.builder.height, text_dim=text_dim, text_len=8)
    benches[name] = _jax_unet.TrainBench(stage, batch)
  times = interleaved_medians({n: b.step for n, b in benches.items()}, repeats=args.repeats)
  rows = [(n, b.params / 1e6, args.batch, 1e3 * times[n], args.batch / times[n], b.flops / 1e9,
           times[n] / times["attention"]) for n, b in benches.items()]
  return COLUMNS, rows


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--repeats", type=int, default=30)
  p.add_argument("--quick", action="store_true")
  args = p.parse_args(argv)
  if args.quick:
    args.batch, args.repeats = 2, 2
  columns, rows = run(args)
  print(f"Train step of the tiny cascade's base U-Net, jax {jax.__version__} on "
        f"{jax.devices()[0].platform}, median of {args.repeats} interleaved calls")
  print(markdown_table(columns, rows))
  return columns, rows


if __name__ == "__main__":
  main()
