"""Our Video U-Net (JAX/XLA) against lucidrains/imagen-pytorch 2.1.0's `Unet3D`
(eager PyTorch) at matched parameter count, same input, same CPU, one run.

    pip download imagen-pytorch==2.1.0 --no-deps -d /tmp/ip    # or set IMAGEN_PYTORCH_SRC
    python -m bench.bench_vs_imagen_pytorch --imagen_pytorch /tmp/ip
    python -m bench.bench_vs_imagen_pytorch --imagen_pytorch /tmp/ip --quick

Needs torch (the `bench` extra); `Unet3D` is loaded from its module file alone
(see `bench/_imagen_pytorch.py` for the one stubbed sibling import).

Matched: fp32 on both sides; the same batch, frames, frame size, text embedding
width and length; the same number of intra-op threads (torch is set to the
CPU count, which is what XLA's CPU client uses); the same U-Net layout (levels,
width multipliers, res blocks per level, self-attention at the lowest level,
text cross-attention at the two lowest, temporal attention, heads x head
width), with `Unet3D`'s `dim` chosen as the multiple of 8 whose parameter count
is closest to ours.
Train step, both sides: forward, v-MSE loss, backward, clip to norm 1, AdamW
(b2 0.99, no decay), EMA update. Ours is the trainer's compiled step.
Sampling, N steps with classifier-free guidance w=3 and dynamic thresholding:
ours is `Stage.sample`, one compiled `lax.fori_loop` of DDIM steps, each a
single forward on a 2B batch; theirs is imagen-pytorch's loop, a Python loop
of `forward_with_cond_scale` (two forwards of batch B per step) and the
ancestral posterior step, under `torch.inference_mode()`.
Times are medians of interleaved repeats (ours, theirs, ours, ...) after one
warm-up each, so compilation and first-call allocations are excluded.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import sys

import jax
import numpy as np

from bench import _imagen_pytorch, _jax_unet
from bench._timing import interleaved_medians, markdown_table

COLUMNS = ("", "ours (JAX, compiled)", "imagen-pytorch Unet3D (eager)", "speed-up (theirs / ours)",
           "goal")


def parse_args(argv=None) -> argparse.Namespace:
  ints = lambda s: tuple(int(v) for v in s.split(","))
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--imagen_pytorch", default=None, help="wheel, folder with the wheel, or source tree")
  # 56 pairs with Unet3D dim 48 within 10% of parameters (Unet3D dims must be multiples of 8).
  p.add_argument("--channels", type=int, default=56, help="our level-0 width; Unet3D is matched to it")
  p.add_argument("--mults", type=ints, default=(1, 2, 2))
  p.add_argument("--blocks", type=ints, default=(1, 1, 2))
  p.add_argument("--batch", type=int, default=2)
  p.add_argument("--frames", type=int, default=8)
  p.add_argument("--size", type=int, default=32)
  p.add_argument("--text_dim", type=int, default=128)
  p.add_argument("--text_len", type=int, default=16)
  # Eager Unet3D takes seconds per forward on 2 CPU cores: keep the default run under ~15 min.
  p.add_argument("--sample_steps", type=ints, default=(4, 16))
  p.add_argument("--guidance", type=float, default=3.0)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--quick", action="store_true", help="smoke run: small net and shapes, 1 repeat")
  args = p.parse_args(argv)
  if args.quick:
    args.channels, args.mults, args.blocks, args.frames, args.size = 16, (1, 2), (1, 1), 4, 16
    args.sample_steps, args.repeats = (2,), 1
  return args


def unet3d_kwargs(args, dim: int) -> dict:
  n = len(args.mults)
  return dict(dim=dim, dim_mults=args.mults, num_resnet_blocks=args.blocks, channels=3,
              text_embed_dim=args.text_dim, max_text_len=args.text_len, attn_heads=4, attn_dim_head=32,
              layer_attns=tuple(i == n - 1 for i in range(n)),
              layer_cross_attns=tuple(i >= n - 2 for i in range(n)))


def matched_unet3d(module, args, target: int):
  """(Unet3D, dim) whose parameter count is closest to `target` over dims in steps of 8."""
  import torch

  from bench._torch_unet3d import param_count
  counts = {}
  with contextlib.redirect_stdout(io.StringIO()):  # Unet3D prints advice for dim < 128
    for dim in range(8, 8 * args.channels, 8):
      counts[dim] = param_count(module.Unet3D(**unet3d_kwargs(args, dim)))
      if counts[dim] > target:
        break
  dim = min(counts, key=lambda d: abs(counts[d] - target))
  torch.manual_seed(0)
  with contextlib.redirect_stdout(io.StringIO()):
    return module.Unet3D(**unet3d_kwargs(args, dim)), dim


def run(args: argparse.Namespace) -> dict:
  import torch

  from bench import _torch_unet3d

  threads = os.cpu_count()
  torch.set_num_threads(threads)  # XLA's CPU client uses one intra-op thread per core
  module = _imagen_pytorch.load(args.imagen_pytorch)

  # ---- ours ------------------------------------------------------------------
  config = _jax_unet.stage_config(args.channels, size=args.size, text_dim=args.text_dim,
                                  mults=args.mults, blocks=args.blocks)
  stage = _jax_unet.make_stage(config, args.text_dim)
  batch = _jax_unet.random_batch(jax.random.key(0), batch=args.batch, frames=args.frames,
                                 size=args.size, text_dim=args.text_dim, text_len=args.text_len)
  train = _jax_unet.TrainBench(stage, batch)
  sample = _jax_unet.SampleBench(stage, train.state["params"]["unet"], batch, guidance=args.guidance)

  # ---- theirs: same data, channels-first [B, C, T, H, W] -----------------------
  unet3d, dim = matched_unet3d(module, args, train.params)
  video = torch.from_numpy(np.array(batch["video"])).permute(0, 4, 1, 2, 3).contiguous()
  text = torch.from_numpy(np.array(batch["text_embeddings"]))
  mask = torch.from_numpy(np.array(batch["text_mask"]))
  t_train = _torch_unet3d.TorchTrain(unet3d, video, text, mask)
  t_sample = _torch_unet3d.TorchSample(unet3d, tuple(video.shape), text, mask, guidance=args.guidance)

  theirs_params = _torch_unet3d.param_count(unet3d)
  rows = [("parameters (M)", train.params / 1e6, theirs_params / 1e6,
           f"size ratio {theirs_params / train.params:.3f}", "within 10%")]
  tt = interleaved_medians({"ours": train.step, "theirs": t_train.step}, repeats=2 * args.repeats)
  print(f"train step: ours {tt['ours']:.3f} s, theirs {tt['theirs']:.3f} s", file=sys.stderr, flush=True)
  rows.append(("train step (ms)", 1e3 * tt["ours"], 1e3 * tt["theirs"], tt["theirs"] / tt["ours"], ">= 1.5x"))
  for n in args.sample_steps:
    ts = interleaved_medians({"ours": lambda n=n: sample.run(n), "theirs": lambda n=n: t_sample.run(n)},
                             repeats=args.repeats)
    print(f"{n}-step sampling: ours {ts['ours']:.3f} s, theirs {ts['theirs']:.3f} s", file=sys.stderr,
          flush=True)
    rows.append((f"sample {n} steps, guided (s)", ts["ours"], ts["theirs"], ts["theirs"] / ts["ours"],
                 ">= 2x"))
  info = dict(dim=dim, threads=threads, unet3d_kwargs=unet3d_kwargs(args, dim), train_flops=train.flops,
              torch=torch.__version__)
  return {"table": (COLUMNS, rows), "info": info}


def main(argv=None):
  args = parse_args(argv)
  results = run(args)
  info = results["info"]
  print(f"{platform.machine()}, {os.cpu_count()} CPUs; jax {jax.__version__} ({jax.devices()[0].platform}), "
        f"torch {info['torch']} with {info['threads']} threads; fp32")
  print(f"input: batch {args.batch}, {args.frames} frames x {args.size}x{args.size}, text "
        f"{args.text_len} tokens x {args.text_dim}; ours channels {args.channels} x{args.mults} "
        f"blocks {args.blocks}; Unet3D {info['unet3d_kwargs']}")
  print(f"ours: XLA cost analysis {info['train_flops'] / 1e9:.3g} GFLOP per train step; "
        f"medians of {2 * args.repeats} (train) / {args.repeats} (sampling) interleaved repeats\n")
  print(markdown_table(*results["table"]))
  return results


if __name__ == "__main__":
  main()
