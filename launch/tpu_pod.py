#!/usr/bin/env python
"""Trains on a Cloud TPU VM slice: create (or reuse) it, install this package on
every worker, start the same `imagen-video train` on all workers, stream logs.

    python launch/tpu_pod.py --name iv-v5p-32 --zone us-east5-a --project my-proj \\
        --accelerator_type v5p-32 --version v2-alpha-tpuv5 -- \\
        --config configs/base_tiny.py:mesh=-1:1:1 --workdir gs://my-bucket/base_tiny

Everything after `--` goes to `imagen-video train`. Workers find each other by
themselves (`--distributed=on`: JAX reads the slice from the TPU metadata), so
the command is the same on every worker. Use a gs:// workdir: every worker
writes its checkpoint shards there and process 0 writes logs and samples.

--dry-run prints every gcloud command (including the one that would create the
slice) without running anything. --install pypi installs `imagen-video[tpu]`
from PyPI instead of copying this checkout.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REMOTE_DIR = "imagen-video"  # in each worker's home
TARBALL = "imagen-video-src.tar.gz"


def _where(a) -> list[str]:
  out = [f"--zone={a.zone}"]
  return out + ([f"--project={a.project}"] if a.project else [])


def describe_cmd(a) -> list[str]:
  return ["gcloud", "compute", "tpus", "tpu-vm", "describe", a.name, *_where(a), "--format=value(state)"]


def create_cmd(a) -> list[str]:
  cmd = ["gcloud", "compute", "tpus", "tpu-vm", "create", a.name, *_where(a),
         f"--accelerator-type={a.accelerator_type}", f"--version={a.version}"]
  if a.spot:
    cmd.append("--spot")
  return cmd


def ssh_cmd(a, remote: str) -> list[str]:
  cmd = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", a.name, *_where(a), "--worker=all",
         f"--command={remote}"]
  return cmd + (["--internal-ip"] if a.internal_ip else [])


def install_cmds(a) -> list[list[str]]:
  """Copies this checkout (or names the PyPI package) and installs it on all workers."""
  pip = "python3 -m pip install --upgrade pip && python3 -m pip install"
  if a.install == "pypi":
    return [ssh_cmd(a, f"{pip} 'imagen-video[tpu]'")]
  tarball = os.path.join(a.tmp_dir, TARBALL)
  pack = ["tar", "czf", tarball, "--exclude=.git", "--exclude=workdirs", "--exclude=__pycache__",
          "-C", REPO, "."]
  scp = ["gcloud", "compute", "tpus", "tpu-vm", "scp", tarball, f"{a.name}:~/{TARBALL}", *_where(a),
         "--worker=all"] + (["--internal-ip"] if a.internal_ip else [])
  unpack = (f"rm -rf ~/{REMOTE_DIR} && mkdir -p ~/{REMOTE_DIR} && tar xzf ~/{TARBALL} -C ~/{REMOTE_DIR} "
            f"&& cd ~/{REMOTE_DIR} && {pip} -e '.[tpu]'")
  return [pack, scp, ssh_cmd(a, unpack)]


def train_cmd(a, train_args: list[str]) -> list[str]:
  train = shlex.join(["imagen-video", "train", "--distributed=on", *train_args])
  log = f"~/{REMOTE_DIR}-train.log"
  # Same command on every worker; each keeps a log, ssh streams all of them here.
  remote = (f"set -o pipefail; cd ~/{REMOTE_DIR} 2>/dev/null || cd ~; export PATH=$HOME/.local/bin:$PATH; "
            f"{train} 2>&1 | tee {log}")
  return ssh_cmd(a, remote)


def plan(a, train_args: list[str]) -> list[tuple[str, list[str]]]:
  """(when, command) in order; `when` is "always" or "if-missing" (create)."""
  steps = [("always", describe_cmd(a)), ("if-missing", create_cmd(a))]
  steps += [("always", c) for c in install_cmds(a)] if a.install != "none" else []
  return steps + [("always", train_cmd(a, train_args))]


def parse(argv: list[str]):
  cut = argv.index("--") if "--" in argv else len(argv)
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--name", required=True, help="TPU VM (slice) name; reused if it exists")
  p.add_argument("--zone", required=True)
  p.add_argument("--project", default=None, help="default: gcloud's configured project")
  p.add_argument("--accelerator_type", default="v5p-8", help="e.g. v5p-32, v4-64, v5litepod-16")
  p.add_argument("--version", default="v2-alpha-tpuv5", help="TPU VM runtime version")
  p.add_argument("--spot", action="store_true", help="create a Spot (preemptible) slice")
  p.add_argument("--internal_ip", action="store_true", help="ssh/scp over internal IPs")
  p.add_argument("--install", choices=("copy", "pypi", "none"), default="copy",
                 help="copy this checkout (default), install from PyPI, or skip")
  p.add_argument("--tmp_dir", default="/tmp", help="where the source tarball is packed")
  p.add_argument("--dry-run", dest="dry_run", action="store_true", help="print the commands only")
  a = p.parse_args(argv[:cut])
  train_args = argv[cut + 1:]
  if not any(x.startswith("--config") for x in train_args) or not any(
      x.startswith("--workdir") for x in train_args):
    p.error("give the train flags after `--`, at least --config and --workdir")
  return a, train_args


def main(argv: list[str] | None = None) -> int:
  a, train_args = parse(sys.argv[1:] if argv is None else argv)
  steps = plan(a, train_args)
  if a.dry_run:
    for when, cmd in steps:
      prefix = "# only if the describe above fails (no such TPU VM):\n" if when == "if-missing" else ""
      print(prefix + shlex.join(cmd))
    return 0
  exists = subprocess.run(steps[0][1], capture_output=True, text=True)
  if exists.returncode == 0:
    print(f"reusing TPU VM {a.name} (state {exists.stdout.strip()})", flush=True)
  for when, cmd in steps[1:]:
    if when == "if-missing" and exists.returncode == 0:
      continue
    print("+ " + shlex.join(cmd), flush=True)
    code = subprocess.call(cmd)  # output (the workers' logs for the last one) streams through
    if code:
      print(f"failed with exit code {code}: {shlex.join(cmd)}", file=sys.stderr)
      return code
  return 0


if __name__ == "__main__":
  sys.exit(main())
