"""Running a command and SIGKILLing it at a chosen point of its output, as a crash would."""
import os
import signal
import subprocess
import time


def kill_when(cmd, line: str, *, ready=None, env=None, cwd=None, timeout: float = 60) -> str:
  """Runs `cmd`; once an output line contains `line` (and `ready()` holds, waited for up to
  `timeout` s), SIGKILLs it. Returns what it printed; fails unless it died of the kill."""
  proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
  seen = []
  try:
    for out in proc.stdout:
      seen.append(out)
      if line in out:
        deadline = time.time() + timeout
        while ready is not None and not ready() and time.time() < deadline:
          time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        break
    assert proc.wait(timeout=timeout) == -signal.SIGKILL, "".join(seen)[-3000:]
  finally:
    if proc.poll() is None:
      proc.kill()
  return "".join(seen)
