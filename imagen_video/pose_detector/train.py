"""Training of the pose detector (`pose_detector.py`) on `athletes` renderings: a ring
buffer of rendered frames refreshed every step, soft-argmax distance plus a Gaussian-target
cross-entropy, light blur and pixel noise."""
from __future__ import annotations

import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from imagen_video.data import athletes
from imagen_video.pose_detector.model import Detector, DetectorConfig, HeatmapNet, _to_input, load, soft_argmax
from imagen_video.pose.skeleton import NUM_KEYPOINTS


class _FramePool:
  """Ring buffer of train-split frames with their keypoints; `refresh` renders new clips."""

  def __init__(self, size: int, height: int, width: int, frames_per_clip: int, rng, split: str):
    self.h, self.w, self.fpc, self.rng, self.split = height, width, frames_per_clip, rng, split
    self.size = max(size, frames_per_clip)
    self.frames = np.zeros((self.size, height, width, 3), np.uint8)
    self.keypoints = np.zeros((self.size, NUM_KEYPOINTS, 2), np.float32)
    self.visibility = np.zeros((self.size, NUM_KEYPOINTS), np.float32)
    self.pos = 0
    self.refresh(math.ceil(self.size / frames_per_clip))

  def refresh(self, clips: int):
    for _ in range(clips):
      clip = athletes.sample_clip(int(self.rng.integers(2 ** 31)), self.split,
                                  int(self.rng.integers(2 ** 31)), self.w / self.h)
      video = athletes.render(clip, self.fpc, self.h, self.w)
      k, v = clip.keypoints(self.fpc)
      idx = (self.pos + np.arange(self.fpc)) % self.size
      self.frames[idx], self.keypoints[idx], self.visibility[idx] = video, k, v
      self.pos = (self.pos + self.fpc) % self.size

  def batch(self, n: int):
    i = self.rng.integers(self.size, size=n)
    return self.frames[i], self.keypoints[i], self.visibility[i]


def _augment(key, x):
  """Per image: a random mix toward a 3x3 box blur and Gaussian pixel noise (x in [-1, 1])."""
  k1, k2, k3 = jax.random.split(key, 3)
  n = x.shape[0]
  pad = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
  blur = sum(pad[:, i:i + x.shape[1], j:j + x.shape[2]] for i in range(3) for j in range(3)) / 9
  mix = jax.random.uniform(k1, (n, 1, 1, 1)) * (jax.random.uniform(k3, (n, 1, 1, 1)) < 0.5)
  x = x + mix * (blur - x)
  sigma = jax.random.uniform(k2, (n, 1, 1, 1), maxval=0.1)  # up to ~13 levels of 255
  return x + sigma * jax.random.normal(jax.random.fold_in(key, 1), x.shape)


def _loss(model, x, kp, vis, aspect: float, sigma_cells: float, ce_weight: float):
  logits = model(x)
  pred, _ = soft_argmax(logits)
  scale = jnp.array([aspect, 1.0])
  dist = jnp.sqrt((((pred - kp) * scale) ** 2).sum(-1) + 1e-8)  # frame heights
  w = vis / jnp.maximum(vis.sum(), 1.0)
  coord = (dist * w).sum()
  # cross-entropy against a Gaussian around the truth (sigma in heatmap cells)
  h, wd = logits.shape[1:3]
  xs = (jnp.arange(wd) + 0.5) / wd
  ys = (jnp.arange(h) + 0.5) / h
  gx = jnp.exp(-0.5 * ((xs[None, :, None] - kp[:, None, :, 0]) * wd / sigma_cells) ** 2)  # [N, w, K]
  gy = jnp.exp(-0.5 * ((ys[None, :, None] - kp[:, None, :, 1]) * h / sigma_cells) ** 2)  # [N, h, K]
  target = gy[:, :, None, :] * gx[:, None, :, :]
  target = target / jnp.maximum(target.sum(axis=(1, 2), keepdims=True), 1e-12)
  logp = jax.nn.log_softmax(logits.reshape(logits.shape[0], h * wd, -1), axis=1).reshape(logits.shape)
  ce = -(target * logp).sum(axis=(1, 2))  # [N, K]
  return coord + ce_weight * (ce * w).sum(), coord


def train_detector(height: int, width: int, *, steps: int = 1500, batch: int = 32, lr: float = 3e-3,
                   seed: int = 0, pool: int = 2048, frames_per_clip: int = 8, new_clips: int = 2,
                   channels: tuple[int, ...] | None = None, augment: bool = True,
                   sigma_cells: float = 1.0, ce_weight: float = 0.02, split: str = "train",
                   log=print, log_every: int | None = None) -> Detector:
  """Trains a Detector on `athletes` `split` renderings at height x width.

  pool: frames kept (rendered up front); new_clips: clips of `frames_per_clip` frames
  rendered into it each step (so about batch / (new_clips * frames_per_clip) uses per frame).
  """
  t_start = time.time()
  config = (DetectorConfig(height, width, channels) if channels else DetectorConfig.for_size(height, width))
  rng = np.random.default_rng([seed, 0x905E])
  data = _FramePool(pool, height, width, frames_per_clip, rng, split)
  log(f"[pose_detector] {height}x{width}, channels {config.channels}, pool of {data.size} frames "
      f"rendered in {time.time() - t_start:.1f} s; {steps} steps of {batch}")
  model = HeatmapNet(config, rngs=nnx.Rngs(seed))
  graphdef, params = nnx.split(model)
  warmup = min(100, max(1, steps // 10))
  schedule = optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(steps, warmup + 1), lr * 0.05)
  opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))
  opt_state = opt.init(params)
  aspect = width / height

  @jax.jit
  def step(params, opt_state, key, frames, kp, vis):
    x = _to_input(frames)
    if augment:
      x = _augment(key, x)

    def f(p):
      return _loss(nnx.merge(graphdef, p), x, kp, vis, aspect, sigma_cells, ce_weight)
    (loss, coord), grads = jax.value_and_grad(f, has_aux=True)(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, coord

  key = jax.random.key(seed)
  log_every = log_every or max(1, steps // 15)
  recent, t0 = [], None
  for i in range(steps):
    frames, kp, vis = data.batch(batch)
    params, opt_state, loss, coord = step(params, opt_state, jax.random.fold_in(key, i),
                                          frames, kp, vis)
    data.refresh(new_clips)
    recent.append(coord)
    if i == 0:
      float(loss)
      t0 = time.time()  # rate and ETA exclude compilation
      log(f"[pose_detector] step 1/{steps} error {float(coord):.4f} frame heights "
          f"(compiled in {t0 - t_start:.0f} s incl. data)")
    elif (i + 1) % log_every == 0 or i + 1 == steps:
      err = float(np.mean([float(c) for c in recent]))
      now = time.time()
      rate = i / (now - t0)
      log(f"[pose_detector] step {i + 1}/{steps} error {err:.4f} frame heights (train, last "
          f"{len(recent)} steps)  {rate:.1f} steps/s  ETA {(steps - i - 1) / rate:.0f} s")
      recent = []
  info = {"steps": steps, "batch": batch, "lr": lr, "seed": seed, "augment": augment,
          "split": split, "train_seconds": round(time.time() - t_start, 1)}
  return Detector(config, nnx.to_pure_dict(params), info)


def load_or_train(path, height: int, width: int, log=print, **train_kw) -> Detector:
  """The detector cached at `path` (trained and saved there if the file is missing).
  A file for another frame size, or an unreadable one, raises (naming the file)."""
  path = os.fspath(path)
  if os.path.exists(path):
    det = load(path)
    if (det.config.height, det.config.width) != (height, width):
      raise ValueError(f"pose detector file {path!r} is for {det.config.height}x{det.config.width} "
                       f"frames, not {height}x{width}; pass another path")
    log(f"[pose_detector] loaded {path} ({det.info})")
    return det
  det = train_detector(height, width, log=log, **train_kw)
  det.save(path)
  log(f"[pose_detector] saved {path}")
  return det
