"""Our Video U-Net (JAX/XLA) against lucidrains/imagen-pytorch 2.1.0's `Unet3D`, like for
like: the same layout where an argument allows it, PyTorch both eager and `torch.compile`d,
FLOPs per step counted on both sides, and the machine's own fp32 limit measured in the same run.

    pip download imagen-pytorch==2.1.0 --no-deps -d /tmp/ip    # or set IMAGEN_PYTORCH_SRC
    python -m bench.bench_vs_imagen_pytorch --imagen_pytorch /tmp/ip --quick   # ~6.5 min
    python -m bench.bench_vs_imagen_pytorch --imagen_pytorch /tmp/ip --repeats 2
    python -m bench.bench_vs_imagen_pytorch --imagen_pytorch /tmp/ip --no_sampling  # train only

On 2 cores most of the time is inductor compiling `Unet3D`: ~3 min for the train step and
~3 min for sampling even at --quick's tiny shapes with its on-disk cache cold (a re-run
reuses the cache: the default run took 9 min cold, under 3 min warm; first-call times are
printed).

Needs torch (the `bench` extra); `Unet3D` is loaded from its module file alone (see
`bench/_imagen_pytorch.py` for the one stubbed sibling import).

Layout. Ours: `--channels` C, `--mults`, `--blocks` (1, 1, 2): per level that many space-time
blocks (ResBlock + [spatial self-attn] + [text cross-attn] + temporal attention), 4 heads x 32,
self-attention at the lowest level and in the middle, cross-attention at the two lowest.
`Unet3D` gets `dim=C`, the same `dim_mults`, heads, text width/length, `layer_attns` and
`layer_cross_attns`, and `num_resnet_blocks = blocks - 1`: a `Unet3D` level always has one
"init" ResnetBlock (the one that cross-attends) and then `num_resnet_blocks` more, so (0, 0, 1)
gives (1, 1, 2) ResnetBlocks per level like ours. Its extras are switched off:
`init_cross_embed=False, init_conv_kernel_size=3` (a 3x3 input conv like ours),
`attn_pool_text=False`, `use_global_context_attn=False`, `final_resnet_block=False`,
`ff_time_token_shift=False`, `time_causal_attn=False` (ours is bidirectional in time).

What no argument removes (so the FLOPs per step differ; compare GFLOP/s as well as time):
- widths: a `Unet3D` level runs at its *input* width on the way down (levels at C, C*m0, C*m1
  and the middle at C*m_last; with (1, 2, 2): 56, 56, 112 | 112) and at its output width on
  the way up (112, 112, 56); ours runs level i at C*m_i both ways (56, 112, 112 | 112);
- temporal mixing: one depthwise temporal conv ("peg") + one temporal attention per level
  (and in the middle); ours has temporal attention in every block and no peg;
- text: `Unet3D` cross-attends in the first ResnetBlock of a level only, adds time tokens and
  the pooled text to the attention context, and its lowest-level self-attention is a
  transformer block (attention + feed-forward) also conditioned on text; ours cross-attends
  in every block of the two lowest levels and has no feed-forward;
- skips: `Unet3D` keeps one skip per ResnetBlock plus one per level (more concats, wider
  up-path convs); ours one per level;
- resampling: `Unet3D` downsamples by space-to-depth + 1x1 conv and upsamples by 1x1 conv +
  pixel shuffle; ours by strided 3x3 conv and nearest + 3x3 conv;
- the middle: two ResnetBlocks around one spatial self-attention and temporal attention;
  ours two full space-time blocks.

Train step, both sides: forward, v-MSE loss, backward, clip to norm 1, AdamW (b2 0.99, no
decay), EMA update; ours is the trainer's compiled step. PyTorch compiled: the same step
around `torch.compile(unet.forward)` (default inductor backend: forward and backward graphs
compiled by AOTAutograd); the loss, clipping, AdamW and EMA stay eager.
Sampling, N DDIM/ancestral steps with classifier-free guidance w=3 and dynamic thresholding:
ours `Stage.sample` (one compiled `lax.fori_loop`, one forward on a 2B batch per step);
theirs imagen-pytorch's loop, `forward_with_cond_scale` (two forwards of batch B per step)
and the ancestral posterior step, under `torch.inference_mode()`, eager or with the compiled
forward.

FLOPs. Ours: XLA's cost analysis of the compiled train step / sampler loop
(`imagen_video.utils.mfu`), compiled once more without the zero channels our CPU convolutions
are padded with (`nn/layers.CPU_CHANNEL_MULTIPLE`: faster, but not work); it counts every HLO
op, elementwise ones included (1 per element), so it reads somewhat higher than a
matmul/conv-only count. Theirs: `torch.utils.flop_counter.
FlopCounterMode` over one eager train step (forward + backward + clipping + AdamW + EMA) or
one guided sampling run: it counts only matmuls, convolutions and attention kernels, so the
optimizer, norms and other elementwise ops count 0. Both are per step of the same batch.
Peak: the best of a large fp32 matmul and a large fp32 conv, each timed in JAX and in torch
in this run; the fraction of peak is GFLOP/s over that best.
Times: medians of interleaved repeats (ours, eager, compiled, ours, ...) after warm-up
(torch.compile's compilation excluded; its first-call time is printed).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from bench import _imagen_pytorch, _jax_unet
from bench._timing import interleaved_medians, markdown_table, median_time

COLUMNS = ("", "ours (JAX)", "PyTorch eager", "PyTorch compiled", "GFLOP/step ours",
           "GFLOP/step theirs", "GFLOP/s ours", "GFLOP/s eager", "GFLOP/s compiled",
           "% peak ours", "% peak eager", "% peak compiled", "speed-up vs eager",
           "speed-up vs compiled")


def log(msg):
  print(msg, file=sys.stderr, flush=True)


def parse_args(argv=None) -> argparse.Namespace:
  ints = lambda s: tuple(int(v) for v in s.split(","))
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--imagen_pytorch", default=None, help="wheel, folder with the wheel, or source tree")
  p.add_argument("--channels", type=int, default=56, help="our level-0 width = Unet3D's dim")
  p.add_argument("--mults", type=ints, default=(1, 2, 2))
  p.add_argument("--blocks", type=ints, default=(1, 1, 2))
  p.add_argument("--batch", type=int, default=2)
  p.add_argument("--frames", type=int, default=8)
  p.add_argument("--size", type=int, default=32)
  p.add_argument("--text_dim", type=int, default=128)
  p.add_argument("--text_len", type=int, default=16)
  p.add_argument("--sample_steps", type=int, default=4)
  p.add_argument("--guidance", type=float, default=3.0)
  p.add_argument("--repeats", type=int, default=3, help="timed repeats (train: 2x this)")
  p.add_argument("--peak_size", type=int, default=2048, help="n of the n x n peak matmul")
  p.add_argument("--no_sampling", action="store_true", help="train step only")
  p.add_argument("--quick", action="store_true", help="smoke run: small net and shapes, 1 repeat")
  args = p.parse_args(argv)
  if args.quick:
    args.channels, args.mults, args.blocks, args.frames, args.size = 16, (1, 2), (1, 1), 4, 16
    args.sample_steps, args.repeats, args.peak_size = 2, 1, 1024
  return args


def unet3d_kwargs(args) -> dict:
  n = len(args.mults)
  return dict(dim=args.channels, dim_mults=args.mults, num_resnet_blocks=tuple(b - 1 for b in args.blocks),
              channels=3, text_embed_dim=args.text_dim, max_text_len=args.text_len, attn_heads=4,
              attn_dim_head=32, layer_attns=tuple(i == n - 1 for i in range(n)),
              layer_cross_attns=tuple(i >= n - 2 for i in range(n)),
              init_cross_embed=False, init_conv_kernel_size=3, attn_pool_text=False,
              use_global_context_attn=False, final_resnet_block=False, ff_time_token_shift=False,
              time_causal_attn=False)


def _best(fn, n=3) -> float:
  fn()
  best = float("inf")
  for _ in range(n):
    t0 = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t0)
  return best


def measured_peaks(n: int) -> dict[str, float]:
  """FLOP/s of an n x n fp32 matmul and a 3x3 conv (batch 8, 64x64, 128 -> 128 channels) in
  JAX and in torch, best of 3 after a warm-up."""
  import torch
  out = {}
  a = jnp.full((n, n), 0.5, jnp.float32)
  mm = jax.jit(lambda a: a @ a)
  out["JAX matmul"] = 2 * n ** 3 / _best(lambda: mm(a).block_until_ready())
  b, hw, c = 8, 64, 128
  conv_flops = 2 * b * hw * hw * c * c * 9
  x = jnp.full((b, hw, hw, c), 0.5, jnp.float32)
  w = jnp.full((3, 3, c, c), 0.01, jnp.float32)
  conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                                           dimension_numbers=("NHWC", "HWIO", "NHWC")))
  out["JAX conv"] = conv_flops / _best(lambda: conv(x, w).block_until_ready())
  ta = torch.full((n, n), 0.5)
  with torch.inference_mode():
    out["torch matmul"] = 2 * n ** 3 / _best(lambda: ta @ ta)
    tx, tw = torch.full((b, c, hw, hw), 0.5), torch.full((c, c, 3, 3), 0.01)
    out["torch conv"] = conv_flops / _best(lambda: torch.nn.functional.conv2d(tx, tw, padding=1))
  return out


def torch_flops(fn) -> float:
  from torch.utils.flop_counter import FlopCounterMode
  with FlopCounterMode(display=False) as counter:
    fn()
  return float(counter.get_total_flops())


def compiled_copy(unet):
  """A copy of `unet` whose forward (also the one `forward_with_cond_scale` calls) is compiled."""
  import torch
  c = copy.deepcopy(unet)
  c.forward = torch.compile(c.forward)
  return c


def warm(name, fn, calls=2):
  """First calls of `fn` (compilation); prints their times."""
  for i in range(calls):
    t0 = time.perf_counter()
    fn()
    log(f"{name} warm-up call {i + 1}: {time.perf_counter() - t0:.1f} s")


def row(label, times, flops_ours, flops_theirs, peak, unit=1.0):
  o, e, c = times["ours"], times["eager"], times["compiled"]
  gf = lambda f, t: f / t / 1e9
  return (label, o * unit, e * unit, c * unit, flops_ours / 1e9, flops_theirs / 1e9,
          gf(flops_ours, o), gf(flops_theirs, e), gf(flops_theirs, c),
          100 * flops_ours / o / peak, 100 * flops_theirs / e / peak, 100 * flops_theirs / c / peak,
          e / o, c / o)


def bench_batch(args: argparse.Namespace) -> dict:
  """The random batch both sides train and sample on, at `args`' shapes."""
  return _jax_unet.random_batch(jax.random.key(0), batch=args.batch, frames=args.frames,
                                size=args.size, text_dim=args.text_dim, text_len=args.text_len)


def our_train_bench(args: argparse.Namespace):
  """(stage, batch, TrainBench): our side of the comparison at `args`' shapes."""
  config = _jax_unet.stage_config(args.channels, size=args.size, text_dim=args.text_dim,
                                  mults=args.mults, blocks=args.blocks)
  stage = _jax_unet.make_stage(config, args.text_dim)
  batch = bench_batch(args)
  return stage, batch, _jax_unet.TrainBench(stage, batch)


def our_flops(args: argparse.Namespace, sampling: bool) -> tuple[float, float | None]:
  """Our work: FLOPs of a train step and (with `sampling`) of `args.sample_steps` guided steps,
  from the same programs without the zero channels CPU convolutions are padded with (compiled
  once more, not timed)."""
  with _jax_unet.channels_unpadded():
    stage, batch, train = our_train_bench(args)
    if not sampling:
      return train.flops, None
    sample = _jax_unet.SampleBench(stage, train.state["params"]["unet"], batch, guidance=args.guidance)
    sample.run(args.sample_steps)
    return train.flops, sample.sampler.timings[-1].flops_per_step * args.sample_steps


def their_unets(module, args: argparse.Namespace, batch: dict):
  """(eager Unet3D, its torch.compile'd copy, video, text, mask): the PyTorch side on the same
  data, channels-first [B, C, T, H, W]."""
  import torch
  torch.manual_seed(0)
  with contextlib.redirect_stdout(io.StringIO()):  # Unet3D prints advice for dim < 128
    eager = module.Unet3D(**unet3d_kwargs(args))
  video = torch.from_numpy(np.array(batch["video"])).permute(0, 4, 1, 2, 3).contiguous()
  text = torch.from_numpy(np.array(batch["text_embeddings"]))
  mask = torch.from_numpy(np.array(batch["text_mask"]))
  return eager, compiled_copy(eager), video, text, mask


def run(args: argparse.Namespace) -> dict:
  import torch

  from bench import _torch_unet3d

  load_start = os.getloadavg()
  log(f"load average at start: {load_start}")
  threads = os.cpu_count()
  torch.set_num_threads(threads)  # XLA's CPU client uses one intra-op thread per core
  module = _imagen_pytorch.load(args.imagen_pytorch)

  peaks = measured_peaks(args.peak_size)
  peak = max(peaks.values())
  log("peaks (GFLOP/s): " + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in peaks.items()))

  # ---- ours ------------------------------------------------------------------
  stage, batch, train = our_train_bench(args)
  sample = None if args.no_sampling else _jax_unet.SampleBench(
      stage, train.state["params"]["unet"], batch, guidance=args.guidance)
  # Ours alone, before PyTorch has run anything (no OpenMP pool, no inductor workers), and again
  # after the interleaved runs: what interleaving costs our step, measured, not guessed.
  alone = {"before PyTorch": median_time(train.step, repeats=2 * args.repeats)}
  train_flops_ours, sample_flops_ours = our_flops(args, sampling=sample is not None)

  # ---- theirs: same data, channels-first [B, C, T, H, W] -----------------------
  unet3d, unet3d_c, video, text, mask = their_unets(module, args, batch)
  t_train = _torch_unet3d.TorchTrain(unet3d, video, text, mask)
  c_train = _torch_unet3d.TorchTrain(unet3d_c, video, text, mask)
  theirs_params = _torch_unet3d.param_count(unet3d)

  train_flops_theirs = torch_flops(t_train.step)
  warm("torch.compile train step", c_train.step)
  tt = interleaved_medians({"ours": train.step, "eager": t_train.step, "compiled": c_train.step},
                           repeats=2 * args.repeats)
  log("train step: " + ", ".join(f"{k} {v:.3f} s" for k, v in tt.items()))
  alone["after PyTorch"] = median_time(train.step, repeats=2 * args.repeats)
  log("our train step alone: " + ", ".join(f"{k} {v:.3f} s" for k, v in alone.items()))
  alone["interleaved with PyTorch's"] = tt["ours"]
  rows = [row("train step (ms)", tt, train_flops_ours, train_flops_theirs, peak, unit=1e3)]

  if sample is not None:
    n = args.sample_steps
    t_sample = _torch_unet3d.TorchSample(unet3d, tuple(video.shape), text, mask, guidance=args.guidance)
    c_sample = _torch_unet3d.TorchSample(unet3d_c, tuple(video.shape), text, mask, guidance=args.guidance)
    sample_flops_theirs = torch_flops(lambda: t_sample.run(n))
    sample.run(n)  # compiles ours
    warm("torch.compile sampling", lambda: c_sample.run(n))
    ts = interleaved_medians({"ours": lambda: sample.run(n), "eager": lambda: t_sample.run(n),
                              "compiled": lambda: c_sample.run(n)}, repeats=args.repeats)
    log(f"{n}-step sampling: " + ", ".join(f"{k} {v:.3f} s" for k, v in ts.items()))
    rows.append(row(f"guided sampling, {n} steps (s)", ts, sample_flops_ours, sample_flops_theirs, peak))

  info = dict(threads=threads, unet3d_kwargs=unet3d_kwargs(args), torch=torch.__version__,
              params_ours=train.params, params_theirs=theirs_params, peaks=peaks, peak=peak,
              load_start=load_start, load_end=os.getloadavg(), ours_alone=alone)
  log(f"load average at end: {info['load_end']}")
  return {"table": (COLUMNS, rows), "info": info}


def main(argv=None):
  args = parse_args(argv)
  results = run(args)
  info = results["info"]
  cpu = platform.processor()
  if os.path.exists("/proc/cpuinfo"):
    with open("/proc/cpuinfo") as f:
      cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
  print(f"{cpu} ({platform.machine()}), {os.cpu_count()} CPUs; jax {jax.__version__} "
        f"({jax.devices()[0].platform}), torch {info['torch']} with {info['threads']} threads; fp32")
  print(f"load average (1, 5, 15 min): start {tuple(round(v, 2) for v in info['load_start'])}, "
        f"end {tuple(round(v, 2) for v in info['load_end'])}")
  print(f"input: batch {args.batch}, {args.frames} frames x {args.size}x{args.size}, text "
        f"{args.text_len} tokens x {args.text_dim}; ours channels {args.channels} x{args.mults} "
        f"blocks {args.blocks}; Unet3D {info['unet3d_kwargs']}")
  print(f"parameters: ours {info['params_ours'] / 1e6:.3f} M, Unet3D {info['params_theirs'] / 1e6:.3f} M")
  print("measured peak (GFLOP/s): " + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in info["peaks"].items())
        + f"; % peak is against the best, {info['peak'] / 1e9:.1f}")
  print(f"medians of {2 * args.repeats} (train) / {args.repeats} (sampling) interleaved repeats; "
        "GFLOP ours: XLA cost analysis (all ops), theirs: FlopCounterMode (matmul/conv/attention only); "
        "speed-up = PyTorch's time / ours (> 1: ours faster)\n")
  print(markdown_table(*results["table"]))
  print("\nour train step (ms, median of the same count): " + ", ".join(
      f"{k} {1e3 * v:.1f}" for k, v in info["ours_alone"].items()))
  return results


if __name__ == "__main__":
  main()
