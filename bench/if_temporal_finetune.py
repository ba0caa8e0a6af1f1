"""Do an inflated IF stage's frames move together after training only its temporal layers?

    python bench/if_temporal_finetune.py --stage image=WORKDIR --stage video=WORKDIR [--num 16]

Samples each stage workdir (the same prompts, seeds and sampler) and the ground-truth
`moving_shapes` clips of those prompts, and reports per set: the mean absolute difference of
consecutive frames (pixels in [0, 1]) and the mean jump of the shape's centroid between
consecutive frames (pixels; the data's is its constant speed). A per-frame image model (IF
applied to each frame) draws every frame independently: the shape jumps between frames.
"""
from __future__ import annotations

import argparse

import numpy as np

from imagen_video.data import moving_shapes
from imagen_video.stage.sampler import Request, StageSampler


def consistency(video: np.ndarray, threshold: float = 0.3) -> dict:
  """video [B, T, H, W, 3] in [0, 1] -> frame-difference and centroid-jump statistics."""
  mad = float(np.abs(np.diff(video, axis=1)).mean())
  mask = video.max(-1) > threshold  # the shape on a black background
  h, w = mask.shape[2:]
  ys, xs = np.mgrid[:h, :w]
  mass = mask.sum((2, 3))
  cy = (mask * ys).sum((2, 3)) / np.maximum(mass, 1)
  cx = (mask * xs).sum((2, 3)) / np.maximum(mass, 1)
  jump = np.hypot(np.diff(cy, axis=1), np.diff(cx, axis=1))
  seen = (mass[:, 1:] > 0) & (mass[:, :-1] > 0)
  return {"frame_mad": mad, "centroid_jump_px": float(jump[seen].mean()) if seen.any() else float("nan"),
          "frames_with_shape": float((mass > 0).mean())}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--stage", action="append", required=True, help="NAME=WORKDIR (repeat)")
  p.add_argument("--num", type=int, default=16)
  p.add_argument("--steps", type=int, default=32)
  p.add_argument("--sampler", default="ddim")
  p.add_argument("--guidance", type=float, default=3.0)
  a = p.parse_args()
  clips = [moving_shapes.sample_clip(0, "test", i) for i in range(a.num)]
  prompts = tuple(c.caption for c in clips)
  rows = {}
  shape = None
  for spec in a.stage:
    name, workdir = spec.split("=", 1)
    sampler = StageSampler.load(workdir, steps=a.steps, sampler=a.sampler, guidance=a.guidance)
    video = np.asarray(sampler.sample(Request(prompts=prompts, seed=0)).video)
    shape = video.shape
    rows[name] = consistency((video + 1) / 2)
  t, h, w = shape[1:4]
  rows["data"] = consistency(np.stack([moving_shapes.render(c, t, h, w) for c in clips]) / 255.0)
  print(f"{a.num} prompts, {t}x{h}x{w}, {a.sampler} {a.steps} steps, guidance {a.guidance}")
  print(f"{'':8} {'frame MAD':>10} {'centroid jump (px)':>19} {'frames with shape':>18}")
  for name, r in rows.items():
    print(f"{name:8} {r['frame_mad']:10.4f} {r['centroid_jump_px']:19.2f} {r['frames_with_shape']:18.2f}")


if __name__ == "__main__":
  main()
