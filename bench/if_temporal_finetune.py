"""Do an inflated IF stage's frames move together after training only its temporal layers?

    python bench/if_temporal_finetune.py --stage image=WORKDIR --stage video=WORKDIR [--num 16]

Samples each stage workdir (the same prompts, seeds and sampler) and the ground-truth
`moving_shapes` clips of those prompts, and reports per set: the mean absolute difference of
consecutive frames (pixels in [0, 1]) and the mean jump of the shape's centroid between
consecutive frames (pixels; the data's is its constant speed). A per-frame image model (IF
applied to each frame) draws every frame independently: the shape jumps between frames.
Then, per stage, the x0 error (MSE, clipped to [-1, 1]) of one denoising step on those clips
at IF timesteps 900/700/500/300: where the temporal layers use the other frames, it drops.
"""
from __future__ import annotations

import argparse

import jax.numpy as jnp
import numpy as np

from imagen_video.data import moving_shapes
from imagen_video.diffusion.schedule import alpha_sigma, ddpm_log_snr_table
from imagen_video.stage.sampler import Request, StageSampler

STEPS = (900, 700, 500, 300)


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


def denoise_error(sampler, clips, video, seeds=4) -> list[float]:
  """x0 MSE of the network's one-step prediction on `video` [B, T, H, W, 3] in [-1, 1]."""
  stage = sampler.stage
  emb, mask = sampler.encode([c.caption for c in clips])
  b = len(clips)
  out = []
  for k in STEPS:
    ls = jnp.full((b,), ddpm_log_snr_table(1000)[k + 1], jnp.float32)
    a, s = (np.asarray(v)[:, None, None, None, None] for v in alpha_sigma(ls))
    errs = []
    for seed in range(seeds):
      z = a * video + s * np.random.RandomState(seed).randn(*video.shape).astype(np.float32)
      eps = np.asarray(stage.model_fn(sampler.params["unet"], jnp.asarray(z), ls,
                                      {"text_emb": emb, "text_mask": mask}))[..., :3]
      errs.append(np.mean((np.clip((z - s * eps) / a, -1, 1) - video) ** 2))
    out.append(float(np.mean(errs)))
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--stage", action="append", required=True, help="NAME=WORKDIR (repeat)")
  p.add_argument("--num", type=int, default=16)
  p.add_argument("--steps", type=int, default=32)
  p.add_argument("--sampler", default="ddim")
  p.add_argument("--guidance", type=float, default=3.0)
  a = p.parse_args()
  rows, errors = {}, {}
  clips = data = None
  for spec in a.stage:
    name, workdir = spec.split("=", 1)
    sampler = StageSampler.load(workdir, steps=a.steps, sampler=a.sampler, guidance=a.guidance)
    if clips is None:  # held-out clips of the first stage's data (its shape sizes and gap)
      sizes = moving_shapes.size_args(sampler.stage.config.data.builder)
      clips = [moving_shapes.sample_clip(0, "test", i, **sizes) for i in range(a.num)]
      prompts = tuple(c.caption for c in clips)
    video = np.asarray(sampler.sample(Request(prompts=prompts, seed=0)).video)
    t, h, w = video.shape[1:4]
    data = np.stack([moving_shapes.render(c, t, h, w) for c in clips]).astype(np.float32) / 255.0
    rows[name] = consistency((video + 1) / 2)
    errors[name] = denoise_error(sampler, clips, data * 2 - 1)
  rows["data"] = consistency(data)
  print(f"{a.num} prompts, {t}x{h}x{w}, {a.sampler} {a.steps} steps, guidance {a.guidance}")
  print(f"{'':8} {'frame MAD':>10} {'centroid jump (px)':>19} {'frames with shape':>18}")
  for name, r in rows.items():
    print(f"{name:8} {r['frame_mad']:10.4f} {r['centroid_jump_px']:19.2f} {r['frames_with_shape']:18.2f}")
  print("one-step x0 MSE at IF timestep " + " ".join(f"{k:>7}" for k in STEPS))
  for name, e in errors.items():
    print(f"{name:8} {'':26}" + " ".join(f"{v:7.4f}" for v in e))


if __name__ == "__main__":
  main()
