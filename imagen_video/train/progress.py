"""Console progress line (step, rate, TFLOP/s and MFU per device, ETA), TensorBoard scalars and
a metrics.jsonl (one line per logged step; a resumed run continues it from its restored step, dropping what
a killed run logged after its last checkpoint); process 0 only. Local or gs:// workdirs."""
from __future__ import annotations

import json
import os
import sys
import time

from etils import epath

from imagen_video.utils import mfu


def _fmt_time(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class _Lines:
  """An append-only text file: appended to locally; on an object store (gs://), where
  appending is not possible, rewritten whole (metrics files are small)."""

  def __init__(self, path: str, keep_until: int):
    self.path = epath.Path(path)
    self.remote = "://" in path
    old = self.path.read_text().splitlines(keepends=True) if self.path.exists() else []
    self.lines = [line for line in old if line.strip() and json.loads(line)["step"] <= keep_until]
    if self.lines != old:
      self._rewrite()
    self.file = None if self.remote else open(path, "a")

  def _rewrite(self):
    if self.remote:
      self.path.write_text("".join(self.lines))
    else:
      tmp = f"{self.path}.tmp"
      with open(tmp, "w") as f:
        f.writelines(self.lines)
      os.replace(tmp, self.path)

  def write(self, line: str):
    self.lines.append(line)
    if self.file is None:
      self._rewrite()
    else:
      self.file.write(line)
      self.file.flush()

  def close(self):
    if self.file is not None:
      self.file.close()


class Progress:
  """Reports `step/total`, steps/s, examples/s, TFLOP/s and MFU per device (given the step's
  FLOPs per device and the device's peak) and ETA; writes scalars to TensorBoard."""

  def __init__(self, total_steps: int, start_step: int, batch_size: int, workdir: str | None,
               is_lead: bool = True, stream=None, name: str = "train",
               flops_per_step: float | None = None, peak: mfu.Peak | None = None):
    self.total, self.batch, self.is_lead = total_steps, batch_size, is_lead
    self.flops, self.peak = flops_per_step, peak
    self.stream = stream or sys.stdout
    self.name = name
    self._t0, self._s0 = time.time(), start_step
    self._last_t, self._last_s = self._t0, start_step
    self.writer = self.jsonl = None
    if is_lead and workdir:
      from tensorboardX import SummaryWriter
      # A resumed run continues the logs from its restored step: what a killed run logged
      # past its last checkpoint is dropped (purge_step), not shown twice.
      self.writer = SummaryWriter(os.path.join(workdir, "tensorboard", name),
                                  purge_step=start_step + 1 if start_step else None)
      self.jsonl = _Lines(os.path.join(workdir, f"metrics_{name}.jsonl"), start_step)

  def update(self, step: int, scalars: dict[str, float]) -> dict[str, float]:
    now = time.time()
    rate = (step - self._last_s) / max(now - self._last_t, 1e-9)
    self._last_t, self._last_s = now, step
    overall = (step - self._s0) / max(now - self._t0, 1e-9)
    speed = mfu.throughput(self.flops, 1 / rate if rate > 0 else 0.0, self.peak)
    scalars = dict(scalars, steps_per_sec=rate, examples_per_sec=rate * self.batch, **speed)
    if self.is_lead:
      eta = (self.total - step) / overall if overall > 0 else float("nan")
      rates = ("steps_per_sec", "examples_per_sec", *speed)
      shown = " ".join(f"{k}={v:.4g}" for k, v in scalars.items() if k not in rates)
      flops = f" {mfu.format_throughput(speed)}" if speed else ""
      print(f"[{self.name}] step {step}/{self.total} ({step / max(self.total, 1):.0%}) {shown} "
            f"| {rate:.2f} steps/s {rate * self.batch:.1f} ex/s{flops} | ETA {_fmt_time(eta)}",
            file=self.stream, flush=True)
      if self.writer is not None:
        for k, v in scalars.items():
          self.writer.add_scalar(k, float(v), step)
        self.writer.flush()
        self.jsonl.write(json.dumps({"step": step, **{k: float(v) for k, v in scalars.items()}}) + "\n")
    return scalars

  def record(self, step: int, scalars: dict[str, float]) -> None:
    """Scalars that are not a training step's (evaluations): printed, TensorBoard, jsonl."""
    if not self.is_lead or not scalars:
      return
    print(f"[{self.name}] step {step} " + " ".join(f"{k}={v:.4g}" for k, v in scalars.items()),
          file=self.stream, flush=True)
    if self.writer is not None:
      for k, v in scalars.items():
        self.writer.add_scalar(k, float(v), step)
      self.writer.flush()
      self.jsonl.write(json.dumps({"step": step, **{k: float(v) for k, v in scalars.items()}}) + "\n")

  def close(self):
    if self.writer is not None:
      self.writer.close()
      self.jsonl.close()
