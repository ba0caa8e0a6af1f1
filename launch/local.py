#!/usr/bin/env python
"""Runs N JAX processes of one imagen-video command on this machine (CPU, gloo).

    python launch/local.py -n 2 --devices_per_process 4 -- \\
        train --config configs/base_tiny.py:runlocal,mesh=2:4:1 --workdir workdirs/mp

Each process gets D fake CPU devices (XLA_FLAGS), the coordinator on a free
loopback port and its id (JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES /
JAX_PROCESS_ID, read by `imagen_video.parallel.distributed`), so together they
form one N*D-device mesh with cross-process collectives, as on a pod.

Output is streamed with a "[pI]" prefix (and copied to --log_dir/process_I.log).
If a process fails, the launcher names it, gives the others --grace seconds to
stop on their own (they do, after the heartbeat timeout), then stops them, and
exits non-zero. A command whose first word ends in .py runs as a Python script.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

EXPLAIN = (  # last words of a dying process -> a one-line reason
    ("stopped sending heartbeats", "a peer died (stopped sending heartbeats)"),
    ("leader task was preempted/died", "the coordinator (process 0) died"),
    ("did not complete within init_timeout", "not every process joined within init_timeout"),
    ("Gloo all-reduce failed", "a collective lost its peer"),
)


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def process_env(base: dict, i: int, n: int, port: int, devices: int | None, platform: str | None) -> dict:
  env = dict(base, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES=str(n),
             JAX_PROCESS_ID=str(i), PYTHONUNBUFFERED="1")
  if platform:
    env["JAX_PLATFORMS"] = platform
  if devices:
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", env.get("XLA_FLAGS", "")).strip()
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
  return env


def command(args: list[str]) -> list[str]:
  if args and args[0].endswith(".py"):
    return [sys.executable, *args]
  return [sys.executable, "-m", "imagen_video.cli.main", *args]


def explain(line: str) -> str | None:
  """The one-line reason a process's output line gives for its death, if any."""
  return next((why for key, why in EXPLAIN if key in line), None)


def _pump(i: int, stream, log, reasons: list[str]):
  """Streams process i's output; keeps the first explained reason (checked line by line: a
  fatal error's stack dump, one stack per thread, can run to hundreds of lines after it)."""
  for line in iter(stream.readline, ""):
    sys.stdout.write(f"[p{i}] {line}")
    sys.stdout.flush()
    if not reasons and (why := explain(line)):
      reasons.append(why)
    if log:
      log.write(line)
      log.flush()


def _reason(code: int, reasons: list[str]) -> str:
  how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
  return how + (f": {reasons[0]}" if reasons else "")


def _stop(procs, pending: set[int]):
  for i in pending:
    if procs[i].poll() is None:
      procs[i].terminate()
  deadline = time.time() + 10
  for i in pending:
    try:
      procs[i].wait(max(deadline - time.time(), 0.1))
    except subprocess.TimeoutExpired:
      procs[i].kill()


def _interrupt(*_):
  raise KeyboardInterrupt


def launch(n: int, cmd: list[str], *, devices: int | None = None, platform: str | None = "cpu",
           port: int | None = None, grace: float = 120.0, log_dir: str | None = None) -> int:
  """Runs n processes of `cmd`; 0 if all succeed, else the first failure's status."""
  port = port or free_port()
  full = command(cmd)
  print(f"[launch] {n} processes x {devices or 'all'} devices, coordinator 127.0.0.1:{port}: "
        f"{shlex.join(full)}", flush=True)
  if log_dir:
    os.makedirs(log_dir, exist_ok=True)
  procs, threads, reasons = [], [], []
  for i in range(n):
    env = process_env(os.environ, i, n, port, devices, platform)
    p = subprocess.Popen(full, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)  # a signal to one never reaches the launcher
    log = open(os.path.join(log_dir, f"process_{i}.log"), "w") if log_dir else None
    reasons.append([])
    t = threading.Thread(target=_pump, args=(i, p.stdout, log, reasons[i]), daemon=True)
    t.start()
    procs.append(p)
    threads.append(t)
    print(f"[launch] started process {i} (pid {p.pid})", flush=True)

  status, failed_at, pending = 0, None, set(range(n))
  signal.signal(signal.SIGTERM, _interrupt)  # `kill LAUNCHER` also stops the processes
  try:
    while pending:
      for i in sorted(pending):
        code = procs[i].poll()
        if code is None:
          continue
        pending.discard(i)
        threads[i].join(timeout=5)
        if code == 0:
          print(f"[launch] process {i} finished", flush=True)
          continue
        print(f"[launch] process {i} (pid {procs[i].pid}) failed with {_reason(code, reasons[i])}",
              flush=True)
        if failed_at is None:
          status, failed_at = (128 - code if code < 0 else code), time.time()
      if failed_at is not None and pending and time.time() - failed_at > grace:
        print(f"[launch] stopping processes {sorted(pending)}: still running {grace:.0f} s after "
              f"the first failure", flush=True)
        _stop(procs, pending)
        break
      time.sleep(0.2)
  except KeyboardInterrupt:
    print("[launch] interrupted: stopping all processes", flush=True)
    _stop(procs, pending)
    return 130
  print(f"[launch] {'all processes succeeded' if status == 0 else f'failed (status {status})'}",
        flush=True)
  return status


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if "--" not in argv:
    print(__doc__.strip(), file=sys.stderr)
    return 2
  cut = argv.index("--")
  parser = argparse.ArgumentParser(description="local multi-process launcher")
  parser.add_argument("-n", "--num_processes", type=int, default=2)
  parser.add_argument("--devices_per_process", type=int, default=None,
                      help="fake CPU devices per process (XLA_FLAGS)")
  parser.add_argument("--platform", default="cpu", help="JAX_PLATFORMS for the processes ('' = any)")
  parser.add_argument("--port", type=int, default=None, help="coordinator port (default: a free one)")
  parser.add_argument("--grace", type=float, default=120.0,
                      help="seconds the others get to stop on their own after one fails")
  parser.add_argument("--log_dir", default=None, help="also write process_I.log files here")
  parser.add_argument("--dry-run", dest="dry_run", action="store_true",
                      help="print each process's environment and command, run nothing")
  a = parser.parse_args(argv[:cut])
  cmd = argv[cut + 1:]
  if a.dry_run:
    port = a.port or free_port()
    for i in range(a.num_processes):
      env = process_env({}, i, a.num_processes, port, a.devices_per_process, a.platform)
      print(" ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items())), shlex.join(command(cmd)))
    return 0
  return launch(a.num_processes, cmd, devices=a.devices_per_process, platform=a.platform or None,
                port=a.port, grace=a.grace, log_dir=a.log_dir)


if __name__ == "__main__":
  sys.exit(main())
