"""Train steps and 4-step guided sampling under each process's own C-allocator settings: ours under the CLI's (freed memory
kept, `imagen_video/utils/xla_cpu.keep_freed_memory`) and under glibc's defaults, and
`torch.compile`d `Unet3D` (bench_vs_imagen_pytorch's matched layout) under glibc's defaults (a
PyTorch program's own) and under ours. The settings are process-wide, so each side runs alone in
a process of its own; the processes alternate, `--rounds` times.

    python -m bench.bench_allocator --imagen_pytorch /tmp/ip --rounds 2 [--part sample --steps 4]
"""
import argparse
import contextlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys

from bench import _timing

SIDES = {"ours, freed memory kept (the CLI's)": ("ours", "1"), "ours, glibc's defaults": ("ours", "0"),
         "torch.compile, glibc's defaults": ("torch", "0"), "torch.compile, freed memory kept": ("torch", "1")}


def one_side(side: str, a) -> float:
  """Median seconds of `a.steps` train steps (or 4-step guided samples, `a.part`) of `side`
  alone, after warm-up; the minor page faults per call go to stderr."""
  from bench import bench_vs_imagen_pytorch as vs
  args = vs.parse_args(["--imagen_pytorch", a.imagen_pytorch or ""])
  n = args.sample_steps
  if side == "ours":
    stage, batch, train = vs.our_train_bench(args)
    if a.part == "sample":
      from bench import _jax_unet
      sample = _jax_unet.SampleBench(stage, train.state["params"]["unet"], batch, guidance=args.guidance)
      return _faults_logged(lambda: sample.run(n), a.steps)
    return _faults_logged(train.step, a.steps)
  import numpy as np
  import torch

  from bench import _imagen_pytorch, _jax_unet, _torch_unet3d
  import jax
  torch.set_num_threads(os.cpu_count())
  module = _imagen_pytorch.load(a.imagen_pytorch)
  batch = _jax_unet.random_batch(jax.random.key(0), batch=args.batch, frames=args.frames, size=args.size,
                                 text_dim=args.text_dim, text_len=args.text_len)
  torch.manual_seed(0)
  with contextlib.redirect_stdout(io.StringIO()):  # Unet3D prints advice for dim < 128
    unet = vs.compiled_copy(module.Unet3D(**vs.unet3d_kwargs(args)))
  video = torch.from_numpy(np.array(batch["video"])).permute(0, 4, 1, 2, 3).contiguous()
  text, mask = torch.from_numpy(np.array(batch["text_embeddings"])), torch.from_numpy(np.array(batch["text_mask"]))
  if a.part == "sample":
    sample = _torch_unet3d.TorchSample(unet, tuple(video.shape), text, mask, guidance=args.guidance)
    return _faults_logged(lambda: sample.run(n), a.steps)
  return _faults_logged(_torch_unet3d.TorchTrain(unet, video, text, mask).step, a.steps)


def _faults_logged(step, steps: int) -> float:
  for _ in range(3):
    step()
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  seconds = _timing.median_time(step, repeats=steps, warmup=0)
  faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / steps
  print(f"minor page faults per step: {faults:.0f}", file=sys.stderr)
  return seconds


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--imagen_pytorch", default=None, help="as bench_vs_imagen_pytorch's")
  p.add_argument("--rounds", type=int, default=2)
  p.add_argument("--steps", type=int, default=8, help="timed steps per process")
  p.add_argument("--part", choices=("train", "sample"), default="train")
  p.add_argument("--side", choices=("ours", "torch"), help=argparse.SUPPRESS)  # a child process
  a = p.parse_args(argv)
  if a.side:
    print(json.dumps({"seconds": one_side(a.side, a)}))
    return
  times = {name: [] for name in SIDES}
  for _ in range(a.rounds):
    for name, (side, keep) in SIDES.items():
      env = dict(os.environ, IMAGEN_VIDEO_KEEP_FREED_MEMORY=keep)
      cmd = [sys.executable, "-m", "bench.bench_allocator", "--side", side, "--steps", str(a.steps),
             "--part", a.part]
      if a.imagen_pytorch:
        cmd += ["--imagen_pytorch", a.imagen_pytorch]
      out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
      times[name].append(1e3 * json.loads(out.stdout.strip().splitlines()[-1])["seconds"])
      faults = [ln for ln in out.stderr.splitlines() if ln.startswith("minor page faults")][-1]
      print(f"{name}: {times[name][-1]:.1f} ms, {faults}", file=sys.stderr, flush=True)
  print(f"load average at end: {os.getloadavg()}")
  rows = [(name, " / ".join(f"{t:.1f}" for t in v), f"{statistics.median(v):.1f}") for name, v in times.items()]
  what = "train step" if a.part == "train" else "4-step guided sampling"
  print(_timing.markdown_table((f"{what}, each process alone", "ms per round (median of its calls)",
                                "median"), rows))


if __name__ == "__main__":
  main()
