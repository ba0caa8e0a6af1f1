"""Low-res conditioning of super-resolution stages, and conditioning augmentation.

`config.stage` fields:
  kind            "base" | "tsr" (temporal SR) | "ssr" (spatial SR)
  low_res         (frames, height, width) of the low-res video (SR only; its batch key is
                  `data.batch.low_res_key`)
  temporal_upsample  "repeat" (the paper: repeated frames) | "linear" (frame blend)
  aug_max_level   training draws the augmentation level per example from
                  U(0, aug_max_level); 0 turns conditioning augmentation off
  aug_level       the fixed level used at sampling (Imagen: 0.1-0.3)
  residual        False (the paper) | True: diffuse x - upsample(low) and add the
                  upsampled low-res back after sampling (SRDiff-style residual SR:
                  a short training run starts from the classical upsampling)
  residual_scale  residual stages diffuse residual_scale * (x - upsample(low)): residuals
                  are several times smaller than frames, and scaling them up to the frames'
                  std keeps the network's v target (and so its output error) at the
                  frames' scale; the noise process equals a log-SNR shift of 2 log(scale)
  blur_max        training blurs each example's low-res video by a Gaussian of std
                  U(0, blur_max) low-res pixels (0: off; Ho et al. 2021's conditioning
                  augmentation): the stage learns to sharpen, as a cascade's upstream
                  samples are blurrier than the data's own low-res renderings
  back_projection  iterations of back-projection after sampling (0: the paper):
                  out += upsample(low - downsample(out)), so the output agrees with
                  its low-res input (source frames / area means) and only the detail
                  the input lacks is the model's; removes low-frequency drift

The level is a diffusion time in [0, 1] of the stage's own cosine schedule
(without its `diffusion.resolution_shift`): the low-res video is replaced by
z = alpha(t) x + sigma(t) eps, and the network sees t through its augmentation
embedding.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from imagen_video.diffusion.samplers import per_sample_normal
from imagen_video.diffusion.schedule import alpha_sigma, schedule_from_config

KINDS = ("base", "tsr", "ssr")


def kind(config) -> str:
  k = config.get("stage", {}).get("kind", "base") if "stage" in config else "base"
  if k not in KINDS:
    raise ValueError(f"config.stage.kind={k!r}: expected one of {KINDS}")
  return k


def cond_channels(config) -> int:
  return 0 if kind(config) == "base" else 3


def uses_aug_level(config) -> bool:
  return kind(config) != "base"


def upsample(low, shape, temporal: str = "repeat"):
  """Resizes [B, t, h, w, C] to shape[1:4]: repeated (or blended) frames, bilinear space."""
  b, t, h, w, c = low.shape
  frames, height, width = shape[1:4]
  if frames % t:
    raise ValueError(f"low-res video has {t} frames; {frames} is not a multiple of it")
  if frames != t:
    if temporal == "repeat":
      low = jnp.repeat(low, frames // t, axis=1)
    elif temporal == "linear":
      # Frame i of the output sits at time i * t / frames of the input; blend neighbours.
      pos = jnp.arange(frames) * (t / frames)
      lo = jnp.floor(pos).astype(jnp.int32)
      hi = jnp.minimum(lo + 1, t - 1)
      f = (pos - lo)[None, :, None, None, None]
      low = (1 - f) * low[:, lo] + f * low[:, hi]
    else:
      raise ValueError(f"config.stage.temporal_upsample={temporal!r}: expected 'repeat' or 'linear'")
  if (height, width) != (h, w):
    low = jax.image.resize(low, (b, frames, height, width, c), method="bilinear", antialias=False)
  return low


def downsample(video, low_shape):
  """The inverse sampling of `upsample`: the source frames (every r-th, as the
  datasets' low-fps renderings), area means in space (as their low-res renderings)."""
  b, frames, height, width, c = video.shape
  t, h, w = low_shape
  if frames % t or height % h or width % w:
    raise ValueError(f"cannot downsample {frames}x{height}x{width} to {t}x{h}x{w}: not integer factors")
  video = video[:, ::frames // t]
  if (height, width) != (h, w):
    video = video.reshape(b, t, h, height // h, w, width // w, c).mean(axis=(3, 5))
  return video


def back_project(config, out, low_res):
  """`config.stage.back_projection` rounds of out += upsample(low_res - downsample(out))."""
  low_res = jnp.asarray(low_res, out.dtype)
  for _ in range(int(config.stage.get("back_projection", 0))):
    error = low_res - downsample(out, low_res.shape[1:4])
    out = out + upsample(error, out.shape, config.stage.temporal_upsample)
  return out


def _augment(config, video, level, noise):
  # The frames' own schedule: a resolution shift (e.g. for residual stages) moves the
  # diffusion of x, not the meaning of an augmentation level.
  log_snr = schedule_from_config(config.diffusion, shifted=False)(level)
  alpha, sigma = alpha_sigma(log_snr)
  bc = lambda a: a.reshape(a.shape + (1,) * (video.ndim - 1))
  return bc(alpha) * video + bc(sigma) * noise.astype(video.dtype)


def low_res_input(config, low_res, shape):
  """The low-res video upsampled to `shape`: what SR stages condition on (None for the base)."""
  if kind(config) == "base":
    if low_res is not None:
      raise ValueError("the base stage takes no low-res video")
    return None
  if low_res is None:
    raise ValueError(f"{kind(config)} stage: sampling needs the low-res video (low_res=...)")
  return upsample(jnp.asarray(low_res, jnp.float32), shape, config.stage.temporal_upsample)


def blur_augment(config, low_res, rng):
  """`low_res` [B, t, h, w, C] blurred per example by a Gaussian of std U(0,
  config.stage.blur_max) pixels, separable, edges repeated; unchanged when blur_max is 0."""
  blur_max = float(config.stage.get("blur_max", 0.0)) if "stage" in config else 0.0
  if blur_max <= 0 or low_res is None:
    return low_res
  radius = max(1, math.ceil(3 * blur_max))
  sigma = jnp.maximum(jax.random.uniform(rng, (low_res.shape[0],), maxval=blur_max), 1e-3)
  taps = jnp.exp(-0.5 * (jnp.arange(-radius, radius + 1)[None] / sigma[:, None]) ** 2)
  taps = taps / taps.sum(1, keepdims=True)  # [B, 2r + 1]
  for axis in (2, 3):
    pad = [(0, 0)] * low_res.ndim
    pad[axis] = (radius, radius)
    padded = jnp.pad(low_res, pad, mode="edge")
    n = low_res.shape[axis]
    low_res = sum(taps[:, k, None, None, None, None] * jax.lax.slice_in_dim(padded, k, k + n, axis=axis)
                  for k in range(2 * radius + 1))
  return low_res


def is_residual(config) -> bool:
  """Whether the stage diffuses x - low_res_input (config.stage.residual)."""
  return kind(config) != "base" and config.stage.get("residual", False)


def to_diffused(config, video, up):
  """What the stage diffuses: video itself, or residual_scale * (video - up) (residual stages)."""
  if not is_residual(config):
    return video
  return (video - up) * float(config.stage.get("residual_scale", 1.0))


def from_diffused(config, out, up):
  """Inverse of `to_diffused`: the video from what the sampler returns."""
  if not is_residual(config):
    return out
  return up + out / float(config.stage.get("residual_scale", 1.0))


def training_inputs(config, up, rng) -> dict:
  """cond_video and aug_level for a training batch from `low_res_input` (nothing for the base)."""
  if up is None:
    return {}
  s = config.stage
  k_level, k_noise = jax.random.split(rng)
  level = jax.random.uniform(k_level, (up.shape[0],), maxval=s.aug_max_level)
  noise = jax.random.normal(k_noise, up.shape, up.dtype)
  cond = jnp.where(s.aug_max_level > 0, _augment(config, up, level, noise), up)
  return {"cond_video": cond, "aug_level": level}


def sampling_inputs(config, up, aug_level, keys) -> dict:
  """cond_video and aug_level at sampling, at a fixed (configurable) level; the
  augmentation noise of sample b from its own key (`samplers.seed_keys`)."""
  if up is None:
    return {}
  level = config.stage.aug_level if aug_level is None else aug_level
  levels = jnp.full((up.shape[0],), level, jnp.float32)
  noise = per_sample_normal(keys, up.shape, 3)
  return {"cond_video": _augment(config, up, levels, noise), "aug_level": levels}
