"""One training run per workdir: `LOCK.json` names the holder (host, pid, start time).

Local disks: the file is held with `flock`, which the kernel drops when the holder dies, so a
lock left by a killed run is taken over at once (with a notice). gs://: the lock is an object
created only if absent (generation precondition 0); the holder rewrites it every
`HEARTBEAT_S` seconds, each write conditional on its own last generation, so a second writer
is never silent. A lock whose holder is on this host and gone, or whose heartbeat is older
than `STALE_S`, is taken over (conditional on the generation read). The holder checks
`lost` (a takeover or deletion under it) and stops before writing more.
"""
from __future__ import annotations

import datetime
import json
import os
import socket
import threading
import time

NAME = "LOCK.json"
HEARTBEAT_S = 20.0
STALE_S = 120.0


class Held(RuntimeError):
  """The workdir is in use by another live run."""


def _describe(holder: dict) -> str:
  started = holder.get("started")
  when = datetime.datetime.fromtimestamp(started).isoformat(timespec="seconds") if started else "?"
  return f"host {holder.get('host', '?')} pid {holder.get('pid', '?')} (started {when})"


def _alive_here(holder: dict) -> bool | None:
  """Whether the holder still runs, when it is on this host; None when it cannot be told."""
  if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
    return None
  try:
    os.kill(holder["pid"], 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


class Lock:
  """`with Lock(workdir): ...`, or `acquire()` / `release()`; `log` gets the notices."""

  def __init__(self, workdir, *, log=print, stale_s: float = STALE_S, heartbeat_s: float = HEARTBEAT_S):
    self.workdir, self.log = str(workdir), log
    self.stale_s, self.heartbeat_s = stale_s, heartbeat_s
    self.me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
    self.remote = "://" in self.workdir
    self._file = None
    self._stop = threading.Event()
    self._thread = None
    self.lost = False

  def __enter__(self):
    self.acquire()
    return self

  def __exit__(self, *exc):
    self.release()

  def _refuse(self, holder: dict):
    raise Held(f"{self.workdir} is in use by another training run: {_describe(holder)}; wait for it "
               f"to finish, stop it, or train in another --workdir")

  # ---- local: flock ---------------------------------------------------------
  def _acquire_local(self):
    import fcntl
    os.makedirs(self.workdir, exist_ok=True)
    path = os.path.join(self.workdir, NAME)
    f = open(path, "a+")
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
      taken = True
    except BlockingIOError:
      taken = False
    if not taken:  # refused outside the except: the message is the whole story
      f.seek(0)
      holder = _parse(f.read())
      f.close()
      self._refuse(holder)
    f.seek(0)
    left = _parse(f.read())
    if left:  # written by a run that died holding it (a clean release empties the file)
      self.log(f"{path}: took over the lock of a run that is gone ({_describe(left)})")
    f.seek(0)
    f.truncate()
    f.write(json.dumps(self.me))
    f.flush()
    self._file = f

  # ---- gs://: generation preconditions ----------------------------------------
  def _blob(self):
    from google.cloud import storage
    bucket, _, prefix = self.workdir.split("://", 1)[1].partition("/")
    if os.environ.get("STORAGE_EMULATOR_HOST"):
      from google.auth.credentials import AnonymousCredentials
      client = storage.Client(project="emulator", credentials=AnonymousCredentials())
    else:
      client = storage.Client()
    return client.bucket(bucket).blob(f"{prefix.rstrip('/')}/{NAME}" if prefix else NAME)

  def _write_remote(self, generation: int) -> int:
    from google.api_core import exceptions
    try:
      self._b.upload_from_string(json.dumps(self.me | {"beat": time.time()}),
                                 content_type="application/json", if_generation_match=generation)
    except exceptions.PreconditionFailed:
      return -1
    return int(self._b.generation)

  def _acquire_remote(self):
    from google.api_core import exceptions
    self._b = self._blob()
    for _ in range(4):
      generation = self._write_remote(0)
      if generation > 0:
        break
      try:
        self._b.reload()
        current = self._b.generation
        holder = _parse(self._b.download_as_text(if_generation_match=current))
      except (exceptions.NotFound, exceptions.PreconditionFailed):
        continue  # released or rewritten since our create failed: try again
      age = time.time() - float(holder.get("beat", 0))
      alive = _alive_here(holder)
      if alive or (alive is None and age < self.stale_s):
        if alive is None and age > 2 * self.heartbeat_s:  # beats missed: likely gone (preempted)
          self.log(f"{self.workdir}/{NAME}: its holder ({_describe(holder)}) has been silent for "
                   f"{age:.0f} s; waiting {self.stale_s - age:.0f} s for its lock to go stale")
          time.sleep(self.stale_s - age + 1)
          continue
        self._refuse(holder)
      generation = self._write_remote(int(current))
      if generation > 0:
        why = "gone from this host" if alive is False else f"silent (no heartbeat for {age:.0f} s)"
        self.log(f"{self.workdir}/{NAME}: took over the lock of a run that is {why} ({_describe(holder)})")
        break
    else:
      raise Held(f"{self.workdir}/{NAME}: could not take the lock (other runs kept changing it)")
    self._generation = generation
    self._thread = threading.Thread(target=self._beat, daemon=True, name="workdir-lock")
    self._thread.start()

  def _beat(self):
    while not self._stop.wait(self.heartbeat_s):
      generation = self._write_remote(self._generation)
      if generation < 0:
        self.lost = True
        self.log(f"{self.workdir}/{NAME}: the lock was taken by another run; stopping")
        return
      self._generation = generation

  # ---- both ----------------------------------------------------------------
  def acquire(self):
    (self._acquire_remote if self.remote else self._acquire_local)()

  def check(self):
    """Raises if the lock was lost (another run took it over)."""
    if self.lost:
      raise Held(f"{self.workdir}: another run took this workdir's lock; this run stops without "
                 "writing more")

  def release(self):
    if self._file is not None:
      import fcntl
      self._file.seek(0)
      self._file.truncate()  # empty = released cleanly (the file stays: see _acquire_local)
      self._file.flush()
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()
      self._file = None
    if self._thread is not None:
      self._stop.set()
      self._thread.join()
      self._thread = None
      if not self.lost:
        from google.api_core import exceptions
        try:
          self._b.delete(if_generation_match=self._generation)
        except exceptions.PreconditionFailed:
          pass


def _parse(text: str) -> dict:
  try:
    holder = json.loads(text) if text.strip() else {}
  except json.JSONDecodeError:
    return {"host": "?", "note": "unreadable lock file"}
  return holder if isinstance(holder, dict) else {}
