"""Real multi-process training on this machine (launch/local.py: gloo CPU collectives,
fake devices), in one 2-process run: a killed peer is a clear error within the heartbeat
timeout, a restart resumes from the checkpoint, the losses equal 1 process x 8 devices',
and the checkpoint restores onto a 4-device mesh where training continues."""
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest
from conftest import ONE_DEVICE_XLA_FLAGS  # tests/ is on sys.path

from imagen_video.data import builders, pipeline
from imagen_video.parallel import sharding
from imagen_video.stage import loading
from imagen_video.train import optimizer, trainer
from imagen_video.workdir import checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "base_tiny.py")
HEARTBEAT = 20  # seconds: how fast a dead peer must turn into an error
# Runs that must finish get a longer one: on 2 busy CI cores a 10 s heartbeat once lapsed in a
# healthy run (both peers starved by a neighbouring test worker) and killed it.
HEALTHY_HEARTBEAT = 120
# 64 clips: a multiple of the global batch 8, so epochs line up for any process count.
BUILDER = dict(frames=8, height=16, width=16, fps=8.0, num_train=64, num_test=8)
# One U-Net level: what is tested is processes, meshes and checkpoints, not the network (a
# short training run takes ~30% less than at runlocal's two levels).
MODEL = dict(channel_mults=(1,), num_res_blocks=(1,), attn_resolutions=(), cross_attn_resolutions=(16,))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("tfds"))
  builders.prepare("moving_shapes", d, **BUILDER)
  return d


def _overrides(data_dir, steps):
  return [f"--config.data.data_dir={data_dir}", "--config.data.batch_size=8",
          f"--config.data.builder.num_train={BUILDER['num_train']}",
          f"--config.data.builder.num_test={BUILDER['num_test']}", f"--config.train.steps={steps}",
          *(f"--config.model.{k}={v}" for k, v in MODEL.items())]


def _config(data_dir, steps, mesh="2:4:1"):
  spec = importlib.util.spec_from_file_location("base_tiny", CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config(f"runlocal,mesh={mesh}")
  c.data.data_dir, c.data.batch_size, c.train.steps = data_dir, 8, steps
  c.data.builder.update(BUILDER)
  c.model.update(MODEL)
  return c


def _launch_cmd(workdir, data_dir, steps, *extra, heartbeat=HEALTHY_HEARTBEAT):
  return [sys.executable, os.path.join(ROOT, "launch", "local.py"), "-n", "2",
          "--devices_per_process", "4", "--grace", "60", "--",
          "train", f"--config={CONFIG}:runlocal,mesh=2:4:1", f"--workdir={workdir}",
          f"--heartbeat_timeout={heartbeat}", "--shutdown_timeout=30", "--init_timeout=120",
          *_overrides(data_dir, steps), *extra]


def _env():
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", XLA_FLAGS=ONE_DEVICE_XLA_FLAGS)


def _metrics(workdir):
  with open(os.path.join(workdir, "metrics_train.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_process_shares_concatenate_to_the_one_process_batch(data_dir):
  """Why 2x4 and 1x8 see the same global batches: process p holds rows p*b:(p+1)*b."""
  c = _config(data_dir, 10).data
  c.tokenizer, c.text = None, "string"
  one = pipeline.VideoBatches(c, process_index=0, process_count=1, start_step=7)
  two = [pipeline.VideoBatches(c, process_index=p, process_count=2, start_step=7) for p in range(2)]
  for _ in range(12):  # crosses an epoch (64 clips = 8 batches)
    rows = np.concatenate([next(b)["index"] for b in two])
    np.testing.assert_array_equal(rows, next(one)["index"])


class _Reader:
  """Collects a launcher's output lines with arrival times, without blocking the test."""

  def __init__(self, proc):
    self.lines = []
    self.thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
    self.thread.start()

  def _read(self, stream):
    for line in iter(stream.readline, ""):
      self.lines.append((time.time(), line))

  def wait_for(self, pattern, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
      for t, line in self.lines:
        if re.search(pattern, line):
          return t, line
      time.sleep(0.2)
    raise AssertionError(f"no line matching {pattern!r} in {timeout} s:\n" +
                         "".join(line for _, line in self.lines[-60:]))

  def text(self):
    return "".join(line for _, line in self.lines)


@pytest.mark.slow
def test_two_processes_survive_a_killed_peer_train_like_one_and_restore_onto_another_mesh(tmp_path, data_dir):
  """One 2 x 4 run: a peer SIGKILLed after step 4 is a clear error within the heartbeat
  timeout; the restart resumes from the newest checkpoint, finishes and samples; its per-step
  losses equal a 1 x 8 run's (the resume is exact), and its checkpoint restores onto
  1 x 4 devices, holds what the 1 x 8 run trained, and trains on."""
  if jax.device_count() < 8:
    pytest.skip("needs 8 (fake) devices in the test process")
  workdir, w18 = str(tmp_path / "2x4"), str(tmp_path / "1x8")
  ckpt_every = "--config.train.ckpt_every=2"
  cmd = _launch_cmd(workdir, data_dir, 6, ckpt_every, heartbeat=HEARTBEAT)
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
                          cwd=ROOT)
  out = _Reader(proc)
  try:
    _, started = out.wait_for(r"\[launch\] started process 1 \(pid \d+\)", 60)
    pid = int(re.search(r"pid (\d+)", started).group(1))
    # After step 4 is logged the step-2 checkpoint is complete (Orbax finishes one save
    # before starting the next), so the restart has something to resume from.
    out.wait_for(r"\[p0\] \[train\] step 4/6", 600)
    killed = time.time()
    os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=HEARTBEAT + 90) != 0
  finally:
    if proc.poll() is None:
      proc.kill()
  out.thread.join(timeout=10)
  t_error, report = out.wait_for(r"\[launch\] process 0 .*failed", 1)
  elapsed = t_error - killed
  print(f"peer killed -> process 0 stopped with an error after {elapsed:.1f} s: {report.strip()}")
  assert elapsed < HEARTBEAT + 30, out.text()[-4000:]
  text = out.text()
  assert "[p0] distributed: process 0 of 2 (4 local / 8 global devices)" in text
  assert "[p1] distributed: process 1 of 2 (4 local / 8 global devices)" in text
  assert "[launch] process 1" in text and "signal SIGKILL" in text
  assert "a peer died (stopped sending heartbeats)" in report, text[-4000:]
  assert re.search(r"\[p0\] .*Terminating process because the JAX distributed service detected fatal "
                   r"errors\. This most likely indicates that another task died", text)
  assert re.search(r"\[p0\] .*The following tasks are unhealthy \(stopped sending heartbeats\)", text)

  # Both again (the same run, the longer heartbeat): resume from the newest finished
  # checkpoint, finish, and sample (every process samples; process 0 alone writes the files).
  again = subprocess.run(_launch_cmd(workdir, data_dir, 6, ckpt_every, "--config.train.sample_every=6",
                                     "--config.sample.steps=2"),
                         capture_output=True, text=True, timeout=900, env=_env(), cwd=ROOT)
  assert again.returncode == 0, again.stdout[-5000:]
  resumed = re.search(r"\[p(\d)\] resumed from .* step (\d+)", again.stdout)
  assert resumed and int(resumed.group(2)) in (2, 4), again.stdout[-3000:]
  assert "[p0] done: step 6" in again.stdout and "[p1] done: step 6" in again.stdout
  assert "[p0] [train] step 6/6" in again.stdout and "[p1] [train]" not in again.stdout  # p0 logs
  assert sorted(os.listdir(os.path.join(workdir, "samples"))) == [
      "step_0000006.json", "step_0000006.mp4", "step_0000006.png"]
  multi = [(m["step"], m["loss"]) for m in _metrics(workdir)]
  assert [s for s, _ in multi] == list(range(1, 7))  # each step once across the kill

  single = trainer.train_and_evaluate(_config(data_dir, 6), w18)  # 1 process x 8 devices
  diff = max(abs(a[1] - b[1]) for a, b in zip(single["losses"], multi))
  print(f"max |loss(2x4, killed and resumed) - loss(1x8)| over 6 steps: {diff:.3g}")
  assert diff < 1e-5, (single["losses"], multi)

  # The 2-process checkpoint, restored onto 1 process x 4 devices (data=2, fsdp=2) ...
  mesh4 = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 1}, devices=jax.devices()[:4])
  config = trainer.resolve_config(_config(data_dir, 8, mesh="2:2:1"))
  _, rules, stage = loading.build(config, mesh4)
  tx, _ = optimizer.make_optimizer(config.optim, config.train.steps)
  abstract, shardings = trainer.state_spec(config, stage, tx, mesh4, rules)
  ckpt = checkpoints.Checkpoints(os.path.join(workdir, "checkpoints"), async_save=False)
  restored, data_state, step = ckpt.restore(checkpoints.abstract_like(abstract, shardings))
  ckpt.close()
  assert step == 6 and data_state["step"] == 6
  kernel = restored["params"]["unet"]["conv_in"]["kernel"].get_value()
  assert kernel.sharding.mesh.devices.size == 4 and "fsdp" in str(kernel.sharding.spec)
  for part in ("params", "ema"):  # ... holds what the 1x8 run trained
    for a, b in zip(jax.tree.leaves(restored[part]), jax.tree.leaves(single["state"][part])):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)

  # ... and training continues there from step 6.
  cont = trainer.train_and_evaluate(config, workdir, mesh=mesh4)
  assert [s for s, _ in cont["losses"]] == [7, 8] and cont["step"] == 8
  assert all(np.isfinite(loss) for _, loss in cont["losses"])
  assert [m["step"] for m in _metrics(workdir)][-2:] == [7, 8]
