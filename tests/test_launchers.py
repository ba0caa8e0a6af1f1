"""Launchers in launch/: dry-run commands (TPU pod, SLURM, local, sweep) and the
local launcher's failure reporting; distributed settings from flags/env."""
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap

import pytest

from imagen_video.parallel import distributed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(ROOT, "launch")


def _run(args, env=None, timeout=60):
  return subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)


def test_tpu_pod_dry_run_prints_every_gcloud_command():
  out = _run([sys.executable, f"{LAUNCH}/tpu_pod.py", "--name=iv-pod", "--zone=us-east5-a",
              "--project=proj", "--accelerator_type=v5p-32", "--version=v2-alpha-tpuv5", "--spot",
              "--dry-run", "--", "--config", "configs/base_tiny.py:mesh=-1:1:1",
              "--workdir", "gs://bucket/run1"])
  assert out.returncode == 0, out.stderr
  cmds = [shlex.split(ln) for ln in out.stdout.splitlines() if ln and not ln.startswith("#")]
  where = ["--zone=us-east5-a", "--project=proj"]
  assert cmds[0] == ["gcloud", "compute", "tpus", "tpu-vm", "describe", "iv-pod", *where,
                     "--format=value(state)"]
  assert "# only if the describe above fails" in out.stdout
  assert cmds[1] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "iv-pod", *where,
                     "--accelerator-type=v5p-32", "--version=v2-alpha-tpuv5", "--spot"]
  assert cmds[2][:2] == ["tar", "czf"] and "--exclude=.git" in cmds[2] and cmds[2][-3:] == ["-C", ROOT, "."]
  tarball = cmds[2][2]
  assert cmds[3] == ["gcloud", "compute", "tpus", "tpu-vm", "scp", tarball,
                     "iv-pod:~/imagen-video-src.tar.gz", *where, "--worker=all"]
  assert cmds[4][:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "iv-pod"]
  assert "--worker=all" in cmds[4] and "pip install -e '.[tpu]'" in cmds[4][-1]
  train = cmds[5]
  assert train[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "iv-pod"] and "--worker=all" in train
  remote = train[-1].removeprefix("--command=")
  assert "set -o pipefail" in remote and "| tee ~/imagen-video-train.log" in remote
  assert ("imagen-video train --distributed=on --config configs/base_tiny.py:mesh=-1:1:1 "
          "--workdir gs://bucket/run1") in remote
  assert len(cmds) == 6


def test_tpu_pod_pypi_install_and_missing_train_flags():
  out = _run([sys.executable, f"{LAUNCH}/tpu_pod.py", "--name=p", "--zone=z", "--install=pypi",
              "--dry-run", "--", "--config=c.py", "--workdir=gs://b/w"])
  assert out.returncode == 0
  cmds = [shlex.split(ln) for ln in out.stdout.splitlines() if ln and not ln.startswith("#")]
  assert "pip install 'imagen-video[tpu]'" in cmds[2][-1] and "scp" not in out.stdout
  bad = _run([sys.executable, f"{LAUNCH}/tpu_pod.py", "--name=p", "--zone=z", "--dry-run"])
  assert bad.returncode == 2 and "--config and --workdir" in bad.stderr


def _fake_scontrol(tmp_path):
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  script = bin_dir / "scontrol"
  # What `scontrol show hostnames gpu-a[17-18]` prints on a real cluster.
  script.write_text('#!/bin/sh\n[ "$1 $2" = "show hostnames" ] || exit 1\necho gpu-a17\necho gpu-a18\n')
  script.chmod(0o755)
  return str(bin_dir)


def test_slurm_dry_run_uses_first_node_as_coordinator(tmp_path):
  env = dict(os.environ, PATH=_fake_scontrol(tmp_path) + os.pathsep + os.environ["PATH"], DRY_RUN="1",
             SLURM_JOB_NODELIST="gpu-a[17-18]", SLURM_NNODES="2", COORDINATOR_PORT="23456")
  out = _run(["bash", f"{LAUNCH}/slurm_gpu.sbatch", "--config", "configs/base_tiny.py:mesh=-1:1:1",
              "--workdir", "/shared/my runs/a"], env=env)
  assert out.returncode == 0, out.stderr
  cmd = shlex.split(out.stdout)
  assert cmd[:6] == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1",
                     "--label"]
  assert cmd[6:8] == ["bash", "-c"] and len(cmd) == 9
  task = shlex.split(cmd[8])  # what each task runs, before its shell expands $SLURM_PROCID
  assert task == ["imagen-video", "train", "--coordinator=gpu-a17:23456", "--num_processes=2",
                  "--process_id=$SLURM_PROCID", "--init_timeout=600", "--heartbeat_timeout=100",
                  "--config", "configs/base_tiny.py:mesh=-1:1:1", "--workdir", "/shared/my runs/a"]
  # Each task's shell gives it its own id.
  per_task = _run(["bash", "-c", f"SLURM_PROCID=1; set -- {cmd[8]}; printf '%s\\n' \"$@\""])
  assert "--process_id=1" in per_task.stdout.splitlines()
  assert "gpu-a17:23456" in out.stderr
  header = open(f"{LAUNCH}/slurm_gpu.sbatch").read()
  assert "#SBATCH --ntasks-per-node=1" in header and "#SBATCH --gpus-per-node=8" in header


def test_slurm_script_needs_an_allocation(tmp_path):
  env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
  out = _run(["bash", f"{LAUNCH}/slurm_gpu.sbatch", "--config", "c.py", "--workdir", "w"], env=env)
  assert out.returncode != 0 and "SLURM_JOB_NODELIST" in out.stderr


def test_local_dry_run_sets_each_process_env():
  out = _run([sys.executable, f"{LAUNCH}/local.py", "-n", "2", "--devices_per_process", "4",
              "--port", "23999", "--dry-run", "--", "train", "--config", "c.py", "--workdir", "w"])
  assert out.returncode == 0, out.stderr
  lines = out.stdout.splitlines()
  assert len(lines) == 2
  for i, line in enumerate(lines):
    assert "JAX_COORDINATOR_ADDRESS=127.0.0.1:23999" in line and "JAX_NUM_PROCESSES=2" in line
    assert f"JAX_PROCESS_ID={i}" in line and "JAX_PLATFORMS=cpu" in line
    assert "XLA_FLAGS=--xla_force_host_platform_device_count=4" in line
    assert line.endswith("-m imagen_video.cli.main train --config c.py --workdir w")


def test_local_launcher_names_the_failed_process_and_stops_the_rest(tmp_path):
  script = tmp_path / "worker.py"
  script.write_text(textwrap.dedent("""
      import os, sys, time
      i = int(os.environ["JAX_PROCESS_ID"])
      print("worker", i, os.environ["XLA_FLAGS"], flush=True)
      if i == 1:
        sys.exit(5)
      time.sleep(600)  # a peer that would hang forever
  """))
  out = _run([sys.executable, f"{LAUNCH}/local.py", "-n", "2", "--devices_per_process", "3",
              "--grace", "2", "--log_dir", str(tmp_path / "logs"), "--", str(script)], timeout=60)
  assert out.returncode == 5
  flags = re.search(r"\[p1\] worker 1 (.*)", out.stdout).group(1).split()
  kept = [f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f]
  assert flags == kept + ["--xla_force_host_platform_device_count=3"]  # the count replaced, the rest kept
  assert "process 1" in out.stdout and "failed with exit code 5" in out.stdout
  assert "stopping processes [0]" in out.stdout
  assert (tmp_path / "logs" / "process_0.log").read_text().startswith("worker 0")


def test_local_launcher_explains_a_death_whose_stack_dump_runs_long(tmp_path):
  # JAX's fatal coordination error is followed by a stack per thread: the reason must survive it.
  script = tmp_path / "worker.py"
  script.write_text(textwrap.dedent("""
      import os
      print("F client.h:77] Terminating process ... UNAVAILABLE: The following tasks are "
            "unhealthy (stopped sending heartbeats):", flush=True)
      for k in range(500):
        print(f"  frame {k}", flush=True)
      os.abort()
  """))
  out = _run([sys.executable, f"{LAUNCH}/local.py", "-n", "1", "--", str(script)], timeout=60)
  assert out.returncode != 0
  assert "failed with signal SIGABRT: a peer died (stopped sending heartbeats)" in out.stdout


def test_sweep_dry_run_and_summary(tmp_path):
  variants = tmp_path / "ablation.txt"
  variants.write_text("# objective ablation\nname=v config.diffusion.objective=v\n"
                      "name=eps diffusion.objective=eps optim.lr=1e-3\n")
  base = [sys.executable, f"{LAUNCH}/sweep.py", "--config", "configs/base_tiny.py:runlocal",
          "--root", str(tmp_path / "root"), "--variants", str(variants)]
  out = _run(base + ["--dry-run", "--", "--config.train.steps=2"])
  assert out.returncode == 0, out.stderr
  cmds = [shlex.split(ln) for ln in out.stdout.splitlines()]
  assert cmds[0][-5:] == ["train", "--config=configs/base_tiny.py:runlocal",
                          f"--workdir={tmp_path / 'root' / 'v'}", "--config.diffusion.objective=v",
                          "--config.train.steps=2"][-5:]
  assert "--config.optim.lr=1e-3" in cmds[1] and f"--workdir={tmp_path / 'root' / 'eps'}" in cmds[1]
  multi = _run(base + ["--num_processes=2", "--devices_per_process=4", "--dry-run"])
  first = shlex.split(multi.stdout.splitlines()[0])
  assert first[1].endswith("launch/local.py") and "--num_processes=2" in first and "--" in first
  # A real (failing) sweep still writes its summary: here the config file does not exist.
  bad = _run([sys.executable, f"{LAUNCH}/sweep.py", "--config", "nope.py", "--root",
              str(tmp_path / "bad"), "--variant", "name=a train.steps=1"], timeout=120)
  assert bad.returncode == 1
  summary = json.loads((tmp_path / "bad" / "summary.json").read_text())
  assert summary["runs"][0]["name"] == "a" and summary["runs"][0]["status"] != 0
  assert summary["runs"][0]["overrides"] == {"train.steps": "1"}


def test_sweep_runs_share_one_compilation_cache_under_the_root(tmp_path, monkeypatch):
  """Variants that differ only in the train step's inputs (lr, steps, ...) compile it once:
  every run gets ROOT/compilation_cache, unless the user set a cache; gs:// roots get none."""
  from imagen_video.train import sweep
  seen = []
  monkeypatch.setattr(sweep.subprocess, "call", lambda cmd, env: seen.append(env) or 0)
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  variants = sweep.parse_variants(["name=a optim.lr=1e-3", "name=b optim.lr=3e-3 train.steps=20"])
  sweep.run("configs/base_tiny.py:runlocal", str(tmp_path / "root"), variants)
  assert [e["JAX_COMPILATION_CACHE_DIR"] for e in seen] == [str(tmp_path / "root" / "compilation_cache")] * 2
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "mine"))
  assert sweep.run_environment(str(tmp_path / "root"))["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "mine")
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
  assert "JAX_COMPILATION_CACHE_DIR" not in sweep.run_environment("gs://bucket/sweep")

def test_distributed_settings_from_flags_env_and_cluster(monkeypatch):
  for k in list(os.environ):
    if k.startswith(("SLURM_", "OMPI_", "JAX_COORDINATOR", "JAX_NUM_PROC", "JAX_PROCESS_ID", "TPU_")):
      monkeypatch.delenv(k)
  s = distributed.from_environment(distributed.Settings())
  assert not distributed.should_initialize("auto", s) or distributed.detected_cluster() == "tpu"
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
  monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
  monkeypatch.setenv("JAX_PROCESS_ID", "3")
  s = distributed.from_environment(distributed.Settings(process_id=2))  # flags win over env
  assert (s.coordinator, s.num_processes, s.process_id) == ("10.0.0.1:1234", 4, 2)
  assert distributed.should_initialize("auto", s) and not distributed.should_initialize("off", distributed.Settings())
  one = distributed.Settings(num_processes=1)
  assert not distributed.should_initialize("auto", one)
  with pytest.raises(ValueError, match="off"):
    distributed.should_initialize("off", s)
  monkeypatch.setenv("SLURM_JOB_ID", "7")
  monkeypatch.setenv("SLURM_NTASKS", "2")
  assert distributed.detected_cluster() == "slurm"


def test_a_peer_that_never_joins_is_a_clear_error_not_a_hang(tmp_path):
  env = dict(os.environ, JAX_COORDINATOR_ADDRESS="127.0.0.1:23987", JAX_NUM_PROCESSES="2",
             JAX_PROCESS_ID="0", JAX_PLATFORMS="cpu")
  out = _run([sys.executable, "-m", "imagen_video.cli.main", "train", "--config=configs/base_tiny.py:runlocal",
              f"--workdir={tmp_path}", "--init_timeout=3"], env=env, timeout=60)
  assert out.returncode == distributed.INIT_TIMEOUT_EXIT_CODE
  assert "process 0 of 2: distributed initialization via 127.0.0.1:23987 did not complete within " \
         "init_timeout=3 s" in out.stderr


def test_print_shardings_shows_fsdp_split_and_optimizer_like_params(tmp_path, capsys):
  import jax
  from imagen_video.cli import main as cli
  if jax.device_count() < 8:
    pytest.skip("needs 8 (fake) devices")
  data = dict(frames=8, height=16, width=16, fps=8.0, num_train=16, num_test=4)
  args = ["train", "--config=configs/base_tiny.py:runlocal,mesh=2:4:1", "--print_shardings",
          f"--config.data.data_dir={tmp_path}"] + [f"--config.data.builder.{k}={v}" for k, v in data.items()]
  assert cli.main(args) == 0
  out = capsys.readouterr().out
  assert re.search(r"\['conv_in'\]\['kernel'\] +\(3, 3, 3, 16\) .* P\(None, None, None, 'fsdp'\) +432", out)
  rows = {ln.split()[0]: ln for ln in out.splitlines() if ln.split() and ln.split()[0] in ("params", "ema", "opt")}
  assert set(rows) == {"params", "ema", "opt"} and all("x split" in r for r in rows.values())
  assert "optimizer state sharded like params" in out
  assert "mesh {'data': 2, 'fsdp': 4, 'tensor': 1}" in out


def test_optimizer_state_sharded_unlike_params_is_reported():
  from jax.sharding import NamedSharding, PartitionSpec as P
  from imagen_video.parallel import sharding, state_report
  mesh = sharding.make_mesh({"data": 1, "fsdp": -1, "tensor": 1})
  fsdp, rep = NamedSharding(mesh, P("fsdp")), NamedSharding(mesh, P())
  good = {"params": {"w": fsdp}, "opt": ({"mu": {"w": fsdp}, "count": rep},)}
  assert state_report.optimizer_mismatches(good) == []
  bad = {"params": {"w": fsdp}, "opt": ({"mu": {"w": rep}, "count": rep},)}
  assert len(state_report.optimizer_mismatches(bad)) == 1
