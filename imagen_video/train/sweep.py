"""Training sweeps: one config under a list of overrides, each variant in its own workdir.

A variant is `name=NAME key=value ...` (keys as in `--config.key=value`). Runs go
one after another as `imagen-video train` subprocesses (through launch/local.py
for several processes); a failed run is recorded and the sweep goes on.
ROOT/summary.json lists each variant's overrides, workdir, exit status, seconds and
last logged loss, rewritten after every run. Used by launch/sweep.py and the
ablation runner (`imagen-video ablate`).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time

LAUNCH_LOCAL = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "launch", "local.py")


def parse_overrides(text: str) -> dict:
  """'config.x.y=1 z=2' -> {'x.y': '1', 'z': '2'} (the `config.` prefix is optional)."""
  return {k.removeprefix("config."): v for k, v in (part.split("=", 1) for part in shlex.split(text))}


def parse_variant(text: str) -> dict:
  """'name=a config.x.y=1 z=2' -> {'name': 'a', 'overrides': {'x.y': '1', 'z': '2'}}."""
  overrides = parse_overrides(text)
  name = overrides.pop("name", None) or "_".join(f"{k.split('.')[-1]}-{v}" for k, v in overrides.items())
  if not re.fullmatch(r"[\w.+-]+", name):
    raise ValueError(f"variant name {name!r}: use letters, digits and ._+- only")
  return {"name": name, "overrides": overrides}


def parse_variants(lines: list[str]) -> list[dict]:
  """Variants from text lines (# comments and blank lines skipped); names must not repeat."""
  variants = [parse_variant(ln) for ln in (ln.split("#", 1)[0].strip() for ln in lines) if ln]
  names = [v["name"] for v in variants]
  if len(set(names)) != len(names):
    raise ValueError(f"variant names repeat: {names}")
  return variants


def train_command(config: str, workdir: str, overrides: dict, common: list[str], *,
                  num_processes: int = 1, devices_per_process: int | None = None) -> list[str]:
  train = ["train", f"--config={config}", f"--workdir={workdir}",
           *(f"--config.{k}={v}" for k, v in overrides.items()), *common]
  if num_processes > 1:
    local = [sys.executable, LAUNCH_LOCAL, f"--num_processes={num_processes}"]
    if devices_per_process:
      local.append(f"--devices_per_process={devices_per_process}")
    return local + ["--", *train]
  return [sys.executable, "-m", "imagen_video.cli.main", *train]


def train_metrics(workdir: str) -> list[dict]:
  """The rows of WORKDIR/metrics_train.jsonl (none before the first log)."""
  path = os.path.join(workdir, "metrics_train.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(ln) for ln in f if ln.strip()]


def last_loss(workdir: str) -> float | None:
  rows = train_metrics(workdir)
  return rows[-1].get("loss") if rows else None


def checkpoint_steps(workdir: str) -> list[int]:
  """Steps of the finished checkpoints in WORKDIR/checkpoints (orbax names them by step)."""
  d = os.path.join(workdir, "checkpoints")
  return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


def run_environment(root: str) -> dict:
  """The runs' environment: one JAX persistent compilation cache under ROOT (unless
  JAX_COMPILATION_CACHE_DIR is set already), so variants that differ only in the train step's
  inputs (learning rate, warm-up, steps, EMA decay, seed) compile it once between them."""
  env = dict(os.environ)
  if "://" not in root:  # a local ROOT; a gs:// one leaves the choice to the user
    env.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(os.path.abspath(root), "compilation_cache"))
  return env


def run(config: str, root: str, variants: list[dict], common: list[str] = (), *,
        num_processes: int = 1, devices_per_process: int | None = None,
        done_at: int | None = None) -> list[dict]:
  """Trains every variant into ROOT/NAME; `done_at`: skip a variant whose workdir already
  holds a checkpoint at or past that step. Returns the summary rows."""
  os.makedirs(root, exist_ok=True)
  env = run_environment(root)
  summary = []
  for v in variants:
    workdir = os.path.join(root, v["name"])
    cmd = train_command(config, workdir, v["overrides"], list(common),
                        num_processes=num_processes, devices_per_process=devices_per_process)
    t0 = time.time()
    if done_at is not None and any(s >= done_at for s in checkpoint_steps(workdir)):
      print(f"[sweep] {v['name']}: trained to step {done_at} already, skipped", flush=True)
      code = 0
    else:
      print(f"[sweep] {v['name']}: {shlex.join(cmd)}", flush=True)
      code = subprocess.call(cmd, env=env)
      print(f"[sweep] {v['name']}: {'ok' if code == 0 else f'FAILED ({code})'}", flush=True)
    summary.append(dict(v, workdir=workdir, status=code, seconds=round(time.time() - t0, 1),
                        last_loss=last_loss(workdir)))
    with open(os.path.join(root, "summary.json"), "w") as f:  # after each run: partial is useful
      json.dump({"config": config, "common": list(common), "runs": summary}, f, indent=2)
  return summary
