"""Multi-process start-up: `jax.distributed.initialize` from flags or the environment.

Where the settings come from, first match wins:
  1. explicit flags (--coordinator HOST:PORT --num_processes N --process_id I),
  2. the environment: JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID
     (set by `launch/local.py` and `launch/slurm_gpu.sbatch`),
  3. cluster auto-detection by JAX itself (Cloud TPU pod slices, SLURM, Open MPI):
     `jax.distributed.initialize()` with no addresses.

`mode`: "off" never initializes (one process); "on" always does (filling what
is missing by auto-detection); "auto" does when settings were given or a
multi-process cluster is detected, and otherwise runs as one process.

Failure is an error, not a hang: a peer that does not join within
`init_timeout` fails initialization, and one that dies mid-run stops sending
heartbeats, so after `heartbeat_timeout` the coordination service ends every
other process with a message naming the dead task; `shutdown_timeout` bounds
how long a finished process waits at exit for the others.
"""
from __future__ import annotations

import dataclasses
import glob
import inspect
import os
import sys
import threading

MODES = ("auto", "on", "off")
INIT_TIMEOUT_EXIT_CODE = 3  # exit status when peers do not join in time


@dataclasses.dataclass
class Settings:
  coordinator: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  init_timeout: int = 300
  heartbeat_timeout: int = 100
  shutdown_timeout: int = 300


def _env_int(name: str) -> int | None:
  value = os.environ.get(name)
  return int(value) if value not in (None, "") else None


def from_environment(s: Settings) -> Settings:
  """Fills unset fields of `s` from JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID."""
  return dataclasses.replace(
      s, coordinator=s.coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS") or None,
      num_processes=s.num_processes if s.num_processes is not None else _env_int("JAX_NUM_PROCESSES"),
      process_id=s.process_id if s.process_id is not None else _env_int("JAX_PROCESS_ID"))


def detected_cluster() -> str | None:
  """"tpu" / "slurm" / "ompi" when running in a multi-process job of that kind, else None."""
  env = os.environ
  if int(env.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_JOB_ID" in env:
    return "slurm"
  if int(env.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1:
    return "ompi"
  # Cloud TPU VMs expose the chips as /dev/accel* (v2-v4) or /dev/vfio/* (v5+); JAX
  # reads the slice's worker list from the metadata server (one worker is fine too).
  if env.get("TPU_WORKER_HOSTNAMES") or glob.glob("/dev/accel[0-9]*") or glob.glob("/dev/vfio/[0-9]*"):
    return "tpu"
  return None


def should_initialize(mode: str, s: Settings) -> bool:
  if mode not in MODES:
    raise ValueError(f"distributed mode {mode!r}: expected one of {MODES}")
  if mode == "off":
    if s.num_processes not in (None, 1):
      raise ValueError(f"--distributed=off but num_processes={s.num_processes}")
    return False
  if mode == "on":
    return True
  if s.num_processes is not None:
    return s.num_processes > 1
  return s.coordinator is not None or detected_cluster() is not None


def initialize(mode: str = "auto", settings: Settings | None = None) -> bool:
  """Initializes JAX's distributed runtime if `mode` and the settings say so.

  Must run before any other JAX call. Returns whether it initialized. Raises
  RuntimeError naming the coordinator and timeout when peers do not join.
  """
  s = from_environment(settings or Settings())
  if not should_initialize(mode, s):
    return False
  explicit = s.num_processes is not None
  if explicit and (s.coordinator is None or s.process_id is None):
    raise ValueError(f"{s.num_processes} processes need a coordinator address (--coordinator or "
                     f"JAX_COORDINATOR_ADDRESS) and a process id (--process_id or JAX_PROCESS_ID); "
                     f"got coordinator={s.coordinator!r} process_id={s.process_id!r}")
  import jax
  # CPU collectives across processes (tests, local runs) need an implementation;
  # GPU/TPU collectives do not use it, so setting it is harmless there.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  kwargs = dict(initialization_timeout=s.init_timeout, heartbeat_timeout_seconds=s.heartbeat_timeout,
                shutdown_timeout_seconds=s.shutdown_timeout)
  if explicit:
    # No auto-detection: under SLURM it would also pin each process to one GPU
    # (SLURM_LOCALID), while our launchers run one process per node with all its GPUs.
    kwargs.update(coordinator_address=s.coordinator, num_processes=s.num_processes,
                  process_id=s.process_id, cluster_detection_method="deactivate")
  elif s.coordinator is not None:
    kwargs.update(coordinator_address=s.coordinator)
  # Keep to the arguments this JAX version has (they were added over releases).
  known = inspect.signature(jax.distributed.initialize).parameters
  kwargs = {k: v for k, v in kwargs.items() if k in known}
  where = s.coordinator or "auto-detected coordinator"
  who = (f"process {s.process_id if s.process_id is not None else '?'} of "
         f"{s.num_processes or '?'}")
  problem = (f"distributed initialization via {where} did not complete within init_timeout="
             f"{s.init_timeout} s: not every process joined, or the coordinator is unreachable")
  print(f"distributed: {who} joining via {where} (waits up to {s.init_timeout} s for all)",
        file=sys.stderr, flush=True)
  # XLA aborts the process (LOG(FATAL), a long status dump) when the join times out;
  # this watchdog says what happened first and exits with a plain error instead.
  watchdog = threading.Timer(s.init_timeout + 1.0, _fail, (f"{who}: {problem}",))
  watchdog.daemon = True
  watchdog.start()
  try:
    jax.distributed.initialize(**kwargs)
  except Exception as e:
    raise RuntimeError(f"{who}: {problem}. Cause: {str(e).splitlines()[0] if str(e) else e!r}") from e
  finally:
    watchdog.cancel()
  print(f"distributed: process {jax.process_index()} of {jax.process_count()} "
        f"({jax.local_device_count()} local / {jax.device_count()} global devices) via {where}",
        file=sys.stderr, flush=True)
  return True


def _fail(message: str):
  print(f"ERROR: {message}", file=sys.stderr, flush=True)
  os._exit(INIT_TIMEOUT_EXIT_CODE)


def run_first_on_lead(fn, name: str):
  """Runs `fn()` on process 0, then (after a barrier) on the others; returns its result.

  For work that must not race on a shared disk, such as preparing a dataset: the
  others then find it done (or, with per-host disks, build their own copy).
  """
  import jax
  if jax.process_count() == 1:
    return fn()
  from jax.experimental import multihost_utils
  result = fn() if jax.process_index() == 0 else None
  multihost_utils.sync_global_devices(f"imagen_video:{name}")
  return fn() if jax.process_index() != 0 else result


def run_on_lead_or_stop_all(fn, name: str) -> None:
  """Runs `fn` (None on the other processes) on process 0 only; if it raised, the others
  stop too, rather than wait at the next collective (e.g. a workdir another run holds)."""
  import jax
  if jax.process_count() == 1:
    if fn:
      fn()
    return
  import numpy as np
  from jax.experimental import multihost_utils
  error = None
  try:
    if fn:
      fn()
  except Exception as e:  # noqa: BLE001 - re-raised below, after telling the others
    error = e
  failed = multihost_utils.broadcast_one_to_all(np.int32(error is not None))
  if error is not None:
    raise error
  if failed:
    raise RuntimeError(f"process 0 could not start the run ({name}); see its log")
