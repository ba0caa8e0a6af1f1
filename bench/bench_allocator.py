"""Our train step and 4-step guided sampling against `torch.compile`d `Unet3D`
(bench_vs_imagen_pytorch's matched layout), each under C-allocator settings of its own: ours
under the CLI's (freed memory kept, `imagen_video/utils/xla_cpu.keep_freed_memory`) and under
glibc's defaults, PyTorch's under glibc's defaults (a PyTorch program's own) and under ours. The
settings are process-wide, so each side runs alone in a process of its own; the processes
alternate, `--rounds` times. With `--flops`, processes of their own, before the timed ones, count
each side's work (as bench_vs_imagen_pytorch does: ours by XLA's cost analysis of the unpadded
program, theirs by FlopCounterMode over an eager run; not in the timed processes, whose heaps an
eager run would warm) and measure this CPU's peak (fp32 matmul and conv, JAX and torch), so the
table gains GFLOP/s and the fraction of the peak.

    python -m bench.bench_allocator --imagen_pytorch /tmp/ip --rounds 2 [--part sample] [--flops]
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys

from bench import _timing

SIDES = {"ours, freed memory kept (the CLI's)": ("ours", "1"), "ours, glibc's defaults": ("ours", "0"),
         "torch.compile, glibc's defaults": ("torch", "0"), "torch.compile, freed memory kept": ("torch", "1")}
SHORT = dict(zip(("ours-kept", "ours-glibc", "torch-glibc", "torch-kept"), SIDES))
# each side under its own program's settings: the comparison a user of either gets
OWN = (SHORT["ours-kept"], SHORT["torch-glibc"])


def one_side(side: str, a) -> dict:
  """{"seconds": median of `a.steps` train steps (or 4-step guided samples, `a.part`) of `side`
  alone, after warm-up} (the minor page faults per call go to stderr); with `a.flops` instead
  {"flops": its work per call}, nothing timed."""
  from bench import bench_vs_imagen_pytorch as vs
  args = vs.parse_args(["--imagen_pytorch", a.imagen_pytorch or ""])
  n = args.sample_steps
  if side == "peaks":
    return {"peaks": vs.measured_peaks(args.peak_size)}
  if side == "ours":
    from bench import _jax_unet
    if a.flops:
      train_flops, sample_flops = vs.our_flops(args, sampling=a.part == "sample")
      return {"flops": train_flops if a.part == "train" else sample_flops}
    stage, batch, train = vs.our_train_bench(args)
    if a.part == "sample":
      sample = _jax_unet.SampleBench(stage, train.state["params"]["unet"], batch, guidance=args.guidance)
      return {"seconds": _faults_logged(lambda: sample.run(n), a.steps)}
    return {"seconds": _faults_logged(train.step, a.steps)}
  import torch

  from bench import _imagen_pytorch, _torch_unet3d
  torch.set_num_threads(os.cpu_count())
  module = _imagen_pytorch.load(a.imagen_pytorch)
  eager, unet, video, text, mask = vs.their_unets(module, args, vs.bench_batch(args))
  if a.part == "sample":
    call = lambda u: _torch_unet3d.TorchSample(u, tuple(video.shape), text, mask, guidance=args.guidance)
    if a.flops:
      return {"flops": vs.torch_flops(lambda: call(eager).run(n))}
    sample = call(unet)
    return {"seconds": _faults_logged(lambda: sample.run(n), a.steps)}
  if a.flops:
    return {"flops": vs.torch_flops(_torch_unet3d.TorchTrain(eager, video, text, mask).step)}
  return {"seconds": _faults_logged(_torch_unet3d.TorchTrain(unet, video, text, mask).step, a.steps)}


def _child(a, side: str, keep: str, extra: list) -> dict:
  """`one_side(side)` in a process of its own with IMAGEN_VIDEO_KEEP_FREED_MEMORY=`keep`; its
  result, with its page-fault line under "faults"."""
  cmd = [sys.executable, "-m", "bench.bench_allocator", "--side", side] + extra
  if a.imagen_pytorch:
    cmd += ["--imagen_pytorch", a.imagen_pytorch]
  out = subprocess.run(cmd, env=dict(os.environ, IMAGEN_VIDEO_KEEP_FREED_MEMORY=keep),
                       capture_output=True, text=True, check=True)
  result = json.loads(out.stdout.strip().splitlines()[-1])
  result["faults"] = ([ln for ln in out.stderr.splitlines() if ln.startswith("minor page faults")] or [""])[-1]
  return result


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
  p.add_argument("--sides", default=",".join(SHORT), help=f"comma-separated, of {', '.join(SHORT)}")
  p.add_argument("--flops", action="store_true", help="count each side's work and measure the peak")
  p.add_argument("--side", choices=("ours", "torch", "peaks"), help=argparse.SUPPRESS)  # a child
  a = p.parse_args(argv)
  if a.side:
    print(json.dumps(one_side(a.side, a)))
    return
  chosen = a.sides.split(",")
  unknown = set(chosen) - set(SHORT)
  if unknown:
    p.error(f"--sides: unknown {', '.join(sorted(unknown))}; expected some of {', '.join(SHORT)}")
  times = {SHORT[k]: [] for k in chosen}
  print(f"load average at start: {os.getloadavg()}")
  if a.flops:
    peaks = _child(a, "peaks", "0", [])["peaks"]
    peak = max(peaks.values())
    print("peaks (GFLOP/s): " + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in peaks.items()))
    flops = {side: _child(a, side, "0", ["--part", a.part, "--flops"])["flops"]
             for side in {SIDES[name][0] for name in times}}
  for _ in range(a.rounds):
    for name in times:
      side, keep = SIDES[name]
      result = _child(a, side, keep, ["--steps", str(a.steps), "--part", a.part])
      times[name].append(1e3 * result["seconds"])
      print(f"{name}: {times[name][-1]:.1f} ms, {result['faults']}", file=sys.stderr, flush=True)
  print(f"load average at end: {os.getloadavg()}")
  columns = ["ms per round (median of its calls)", "median"]
  rows = [[name, " / ".join(f"{t:.1f}" for t in v), f"{statistics.median(v):.1f}"] for name, v in times.items()]
  if a.flops:
    columns += ["GFLOP per call", "GFLOP/s", f"% of peak ({peak / 1e9:.1f} GFLOP/s)"]
    for row, name in zip(rows, times):
      work, seconds = flops[SIDES[name][0]], statistics.median(times[name]) / 1e3
      row += [f"{work / 1e9:.2f}", f"{work / seconds / 1e9:.1f}", f"{100 * work / seconds / peak:.1f}"]
  what = "train step" if a.part == "train" else "4-step guided sampling"
  print(_timing.markdown_table([f"{what}, each process alone"] + columns, rows))
  if all(name in times for name in OWN):
    ratios = [theirs / ours for ours, theirs in zip(times[OWN[0]], times[OWN[1]])]
    print(f"speed-up, each under its own settings (torch.compile's time / ours), round by round: "
          f"{' / '.join(f'{r:.2f}' for r in ratios)}; median {statistics.median(ratios):.2f}x; "
          f"ours faster in {sum(r > 1 for r in ratios)} of {len(ratios)} rounds")


if __name__ == "__main__":
  main()
