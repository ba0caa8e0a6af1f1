"""gs:// end to end on a local GCS server (gcp-storage-emulator, started here on 127.0.0.1):
a manifest of gs:// videos prepared to a gs:// data_dir; a stage trained with its dataset and
workdir on gs:// (checkpoints, saved config and tokenizer, TensorBoard, metrics), killed
with SIGKILL and resumed; then sampled from that workdir. Each step is the CLI in its own
process, pointed at the emulator by environment variables as the README says."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import ONE_DEVICE_XLA_FLAGS  # tests/ is on sys.path
from killing import kill_when  # tests/killing.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUCKET = "ivtest"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def gcs():
  port = _free_port()
  server = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "gcs_server.py"), str(port), BUCKET],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  url = f"http://127.0.0.1:{port}"
  for _ in range(100):
    try:
      urllib.request.urlopen(url, timeout=1).read()
      break
    except OSError:
      time.sleep(0.1)
  env = dict(os.environ, STORAGE_EMULATOR_HOST=url, TENSORSTORE_GCS_HTTP_URL=url,
             CLOUD_STORAGE_EMULATOR_ENDPOINT=url, EPATH_USE_TF="false", FSSPEC_GCS_TOKEN="anon",
             GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false", XLA_FLAGS=ONE_DEVICE_XLA_FLAGS,
             # TensorFlow's own GCS client cannot be pointed at an emulator: fail fast if touched
             GCS_RETRY_CONFIG_MAX_RETRIES="0", GOOGLE_AUTH_TOKEN_FOR_TESTING="dummy", NO_GCE_CHECK="true")
  from gcsfs.core import GCSFileSystem  # the plain client: no gRPC bucket probe to time out
  fs = GCSFileSystem(endpoint_url=url, token="anon")
  yield env, fs
  server.terminate()
  server.wait(timeout=10)


def _cli(env, *args, timeout=600):
  out = subprocess.run([sys.executable, "-m", "imagen_video.cli.main", *args], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=timeout)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  return out.stdout


@pytest.mark.slow
def test_manifest_of_gs_videos_prepared_to_gs(gcs, tmp_path):
  env, fs = gcs
  from imagen_video.data import moving_shapes as ms
  from imagen_video.media import video_io
  rows = []
  for i in range(4):
    clip = ms.sample_clip(0, "train", i)
    video_io.write_video(tmp_path / f"v{i}.mp4", ms.render(clip, 12, 24, 24), 8)
    fs.put(str(tmp_path / f"v{i}.mp4"), f"{BUCKET}/videos/v{i}.mp4")
    rows.append({"file": f"gs://{BUCKET}/videos/v{i}.mp4", "caption": clip.caption})
  rows.append({"file": f"gs://{BUCKET}/videos/missing.mp4", "caption": "not uploaded"})
  fs.pipe(f"{BUCKET}/videos/manifest.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
  spec = f"configs/video_folder.py:manifest=gs://{BUCKET}/videos/manifest.jsonl,frames=8,height=16,width=16,skip_bad"
  out = _cli(env, "prepare", "--config", spec, "--data_dir", f"gs://{BUCKET}/tfds")
  assert "'train': 4" in out and "missing.mp4" in out
  code = ("from imagen_video.data import builders; import numpy as np; "
          f"b = builders.get_builder('video_folder', 'gs://{BUCKET}/tfds', manifest='gs://{BUCKET}/videos/manifest.jsonl', "
          "frames=8, height=16, width=16); s = b.as_data_source('train'); "
          "print(b.is_prepared(), len(s), sorted(s[i]['file'].decode() for i in range(len(s))), np.stack(s[0]['video']).shape)")
  read = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert read.returncode == 0, read.stderr[-3000:]
  assert read.stdout.startswith("True 4 ") and "(12, 16, 16, 3)" in read.stdout
  assert f"gs://{BUCKET}/videos/v0.mp4" in read.stdout


@pytest.mark.slow
def test_train_kill_resume_and_sample_with_everything_on_gs(gcs, tmp_path):
  env, fs = gcs
  workdir, data_dir = f"gs://{BUCKET}/runs/base", f"gs://{BUCKET}/tfds"
  cmd = [sys.executable, "-m", "imagen_video.cli.main", "train", "--config", "configs/base_tiny.py:runlocal",
         f"--config.data.data_dir={data_dir}", "--config.train.steps=6", "--config.train.ckpt_every=2",
         "--workdir", workdir]
  # Killed after step 5 is logged: a checkpoint (2 or 4) is final by then.
  kill_when(cmd, "[train] step 5/6", env=env, cwd=ROOT)
  out = _cli(env, *cmd[3:])
  assert f"resumed from {workdir}/checkpoints step" in out and "done: step 6" in out
  assert f"{workdir}/LOCK.json: took over the lock of a run that is gone from this host" in out
  assert not fs.exists(f"{BUCKET}/runs/base/LOCK.json")  # released at the end
  root = f"{BUCKET}/runs/base"
  assert fs.exists(f"{root}/config.json") and fs.exists(f"{root}/tokenizer.model")
  assert fs.exists(f"{root}/checkpoints/6") and fs.ls(f"{root}/tensorboard/train")
  logged = [json.loads(line)["step"] for line in fs.cat(f"{root}/metrics_train.jsonl").decode().splitlines()]
  assert logged == [1, 2, 3, 4, 5, 6]
  assert fs.exists(f"{BUCKET}/tfds/moving_shapes")  # the dataset too
  _cli(env, "sample", "--workdir", workdir, "--prompt", "a red circle moving left", "--steps", "2",
       "--out", str(tmp_path / "a.mp4"))
  from imagen_video.media import video_io
  assert video_io.read_video(tmp_path / "a.mp4")[0].shape[:3] == (8, 128, 128)


def test_the_workdir_lock_on_gs_holds_beats_and_is_taken_over_when_stale(gcs, monkeypatch):
  env, fs = gcs
  monkeypatch.setenv("STORAGE_EMULATOR_HOST", env["STORAGE_EMULATOR_HOST"])
  from imagen_video.workdir import lock
  workdir, notices = f"gs://{BUCKET}/runs/locked", []
  first = lock.Lock(workdir, heartbeat_s=0.2, log=notices.append)
  first.me = dict(first.me, host="elsewhere")  # another host's run: only its heartbeat tells
  first.acquire()
  try:
    holder = json.loads(fs.cat(f"{BUCKET}/runs/locked/LOCK.json"))
    assert holder["pid"] == os.getpid()
    with pytest.raises(lock.Held, match=f"in use by another training run: host elsewhere pid {os.getpid()} "):
      lock.Lock(workdir).acquire()
    time.sleep(0.5)
    assert json.loads(fs.cat(f"{BUCKET}/runs/locked/LOCK.json"))["beat"] > holder["beat"]  # heartbeat
    # Another host's run whose heartbeat stopped long ago: taken over, and the old holder knows.
    stale = lock.Lock(workdir, stale_s=0.0, log=notices.append)
    stale.acquire()
    time.sleep(0.6)
    assert first.lost and "taken by another run" in notices[-1]
    with pytest.raises(lock.Held, match="took this workdir's lock"):
      first.check()
    assert any("took over the lock of a run that is silent (no heartbeat for" in n for n in notices)
    stale.release()
    assert not fs.exists(f"{BUCKET}/runs/locked/LOCK.json")
  finally:
    first.release()
  # A holder that stopped beating (a preempted host) is waited out, not refused.
  gone = lock.Lock(workdir, heartbeat_s=0.1)
  gone.me = dict(gone.me, host="preempted")
  gone.acquire()
  gone._stop.set()
  time.sleep(0.4)
  later = lock.Lock(workdir, stale_s=1.5, heartbeat_s=0.1, log=notices.append)
  later.acquire()
  assert "has been silent for" in notices[-2] and "silent (no heartbeat for" in notices[-1]
  later.release()
  # The holder releases between a starter's failed create and its read of the holder: the
  # starter creates the lock again instead of failing on the missing object.
  holder = lock.Lock(workdir)
  holder.acquire()
  racing = lock.Lock(workdir)
  create = racing._write_remote

  def create_while_released(generation):
    got = create(generation)
    if generation == 0 and got < 0:
      holder.release()  # gone before the starter reads who held it
    return got
  monkeypatch.setattr(racing, "_write_remote", create_while_released)
  racing.acquire()
  assert json.loads(fs.cat(f"{BUCKET}/runs/locked/LOCK.json"))["started"] == racing.me["started"]
  racing.release()
