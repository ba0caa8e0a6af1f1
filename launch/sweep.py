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
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_variant(text: str) -> dict:
  """'name=a config.x.y=1 z=2' -> {'name': 'a', 'overrides': {'x.y': '1', 'z': '2'}}."""
  fields = dict(part.split("=", 1) for part in shlex.split(text))
  name = fields.pop("name", None) or "_".join(f"{k.split('.')[-1]}-{v}" for k, v in fields.items())
  if not re.fullmatch(r"[\w.+-]+", name):
    raise ValueError(f"variant name {name!r}: use letters, digits and ._+- only")
  overrides = {k.removeprefix("config."): v for k, v in fields.items()}
  return {"name": name, "overrides": overrides}


def read_variants(args) -> list[dict]:
  lines = list(args.variant or [])
  if args.variants:
    with open(args.variants) as f:
      lines += [ln.split("#", 1)[0].strip() for ln in f]
  variants = [parse_variant(ln) for ln in lines if ln]
  names = [v["name"] for v in variants]
  if len(set(names)) != len(names):
    raise ValueError(f"variant names repeat: {names}")
  return variants


def run_command(args, variant: dict, common: list[str]) -> list[str]:
  train = ["train", f"--config={args.config}", f"--workdir={os.path.join(args.root, variant['name'])}",
           *(f"--config.{k}={v}" for k, v in variant["overrides"].items()), *common]
  if args.num_processes > 1:
    local = [sys.executable, os.path.join(HERE, "local.py"), f"--num_processes={args.num_processes}"]
    if args.devices_per_process:
      local.append(f"--devices_per_process={args.devices_per_process}")
    return local + ["--", *train]
  return [sys.executable, "-m", "imagen_video.cli.main", *train]


def last_loss(workdir: str) -> float | None:
  path = os.path.join(workdir, "metrics_train.jsonl")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    rows = [json.loads(ln) for ln in f if ln.strip()]
  return rows[-1].get("loss") if rows else None


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
  variants = read_variants(args)
  if not variants:
    p.error("no variants: give --variant or --variants")
  if args.dry_run:
    for v in variants:
      print(shlex.join(run_command(args, v, common)))
    return 0
  os.makedirs(args.root, exist_ok=True)
  summary = []
  for v in variants:
    cmd = run_command(args, v, common)
    print(f"[sweep] {v['name']}: {shlex.join(cmd)}", flush=True)
    t0 = time.time()
    code = subprocess.call(cmd)
    workdir = os.path.join(args.root, v["name"])
    summary.append(dict(v, workdir=workdir, status=code, seconds=round(time.time() - t0, 1),
                        last_loss=last_loss(workdir)))
    print(f"[sweep] {v['name']}: {'ok' if code == 0 else f'FAILED ({code})'}", flush=True)
    with open(os.path.join(args.root, "summary.json"), "w") as f:  # after each run: partial is useful
      json.dump({"config": args.config, "common": common, "runs": summary}, f, indent=2)
  failed = [r["name"] for r in summary if r["status"]]
  print(f"[sweep] {len(summary) - len(failed)}/{len(summary)} ok; summary in "
        f"{os.path.join(args.root, 'summary.json')}", flush=True)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
