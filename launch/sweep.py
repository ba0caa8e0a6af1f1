#!/usr/bin/env python
"""Runs one config under a list of overrides (ablations), each in its own workdir.

    python launch/sweep.py --config configs/base_tiny.py:runlocal --root workdirs/ablate \\
        --variant "name=v_obj config.diffusion.objective=v" \\
        --variant "name=eps_obj config.diffusion.objective=eps" -- --config.train.steps=200

A variant is `name=NAME key=value ...` (keys as in `--config.key=value`), given
by --variant or one per line in --variants FILE (# comments allowed). Flags
after `--` go to every run. Runs go one after another, each as `imagen-video
train` into ROOT/NAME, or through launch/local.py with --num_processes > 1.
A run that fails is recorded and the sweep goes on. ROOT/summary.json lists
each variant's overrides, workdir, exit status, seconds and last logged loss.
(The mechanism is imagen_video/train/sweep.py; `imagen-video ablate` uses it too.)
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys

from imagen_video.train import sweep


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  cut = argv.index("--") if "--" in argv else len(argv)
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", required=True, help="config file[:args] shared by all variants")
  p.add_argument("--root", required=True, help="each variant trains in ROOT/NAME")
  p.add_argument("--variant", action="append", help="'name=NAME key=value ...' (repeatable)")
  p.add_argument("--variants", help="file with one variant per line")
  p.add_argument("--num_processes", type=int, default=1, help=">1: through launch/local.py")
  p.add_argument("--devices_per_process", type=int, default=None)
  p.add_argument("--dry-run", dest="dry_run", action="store_true", help="print the commands only")
  args = p.parse_args(argv[:cut])
  common = argv[cut + 1:]
  lines = list(args.variant or [])
  if args.variants:
    with open(args.variants) as f:
      lines += list(f)
  variants = sweep.parse_variants(lines)
  if not variants:
    p.error("no variants: give --variant or --variants")
  kw = dict(num_processes=args.num_processes, devices_per_process=args.devices_per_process)
  if args.dry_run:
    for v in variants:
      workdir = os.path.join(args.root, v["name"])
      print(shlex.join(sweep.train_command(args.config, workdir, v["overrides"], common, **kw)))
    return 0
  summary = sweep.run(args.config, args.root, variants, common, **kw)
  failed = [r["name"] for r in summary if r["status"]]
  print(f"[sweep] {len(summary) - len(failed)}/{len(summary)} ok; summary in "
        f"{os.path.join(args.root, 'summary.json')}", flush=True)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
