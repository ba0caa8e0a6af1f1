"""What a sample is conditioned on besides text: known frames or pixels.

One mechanism serves video extension/prediction (the first frames known),
image-to-video (the first frame), frame interpolation (keyframes at any frame
indices) and inpainting (masked pixels): a `Known` holds a video in [-1, 1]
and a mask (1 = known) and is resized to each stage's frames and size
(`to_shape`), so the same `Known` conditions one stage or a whole cascade.
The sampler enforces it by replacement or reconstruction guidance
(`diffusion/samplers.py`).
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

from imagen_video.stage import conditioning


@dataclasses.dataclass
class Known:
  video: np.ndarray  # float [B, T, H, W, 3] in [-1, 1]
  mask: np.ndarray   # float [B, T, H, W, 1], 1 where `video` is known

  def __post_init__(self):
    self.video = np.asarray(self.video, np.float32)
    self.mask = np.broadcast_to(np.asarray(self.mask, np.float32),
                                self.video.shape[:4] + (1,)).copy()
    if self.video.ndim != 5 or self.video.shape[-1] != 3:
      raise ValueError(f"known video must be [B, T, H, W, 3], got {self.video.shape}")

  def to_shape(self, shape) -> "Known":
    """This Known at `shape`'s (T, H, W): every r-th frame when it has r times as many
    (the cascade's low-fps stages see the frames at their own times), area means in
    space (a pixel is known only if all of its area is), bilinear if smaller."""
    b, frames, height, width = shape[0], *shape[1:4]
    video, mask = self.video, self.mask
    if video.shape[0] not in (1, b):
      raise ValueError(f"known video has batch {video.shape[0]}, the sample {b}")
    t, h, w = video.shape[1:4]
    if t % frames:
      raise ValueError(f"known video has {t} frames; cannot map them onto {frames} "
                       f"(needs an integer multiple)")
    if h % height == 0 and w % width == 0:  # the SR stages' own downsampling
      video = np.asarray(conditioning.downsample(video, (frames, height, width)))
      mask = (np.asarray(conditioning.downsample(mask, (frames, height, width))) > 1 - 1e-6
              ).astype(np.float32)
    else:
      video, mask = video[:, ::t // frames], mask[:, ::t // frames]
      size = video.shape[:2]
      video = np.asarray(jax.image.resize(video, (*size, height, width, 3), "bilinear"))
      mask = np.asarray(jax.image.resize(mask, (*size, height, width, 1), "nearest"))
    reps = (b // video.shape[0], 1, 1, 1, 1)
    return Known(np.tile(video, reps), np.tile(mask, reps))


def resized(video, shape) -> np.ndarray:
  """`video` [B, T, H, W, 3] at `shape`'s (T, H, W) as a known video is (`Known.to_shape`):
  an SDEdit init for each stage of a cascade."""
  video = np.asarray(video, np.float32)
  return Known(video, np.ones(video.shape[:4] + (1,), np.float32)).to_shape(shape).video


def _empty(b, frames, height, width):
  return np.zeros((b, frames, height, width, 3), np.float32), np.zeros((b, frames, 1, 1, 1), np.float32)


def prefix(video, frames: int) -> Known:
  """Extension / prediction: `video` [B, k, H, W, 3] are the first k of `frames` frames."""
  video = np.asarray(video, np.float32)
  b, k, h, w, _ = video.shape
  if not 0 < k < frames:
    raise ValueError(f"extension needs 1..{frames - 1} given frames for a {frames}-frame sample, got {k}")
  out, mask = _empty(b, frames, h, w)
  out[:, :k], mask[:, :k] = video, 1.0
  return Known(out, mask)


def first_frame(image, frames: int) -> Known:
  """Image-to-video: `image` [B, H, W, 3] is frame 0."""
  return prefix(np.asarray(image, np.float32)[:, None], frames)


def keyframes(images, positions, frames: int) -> Known:
  """Interpolation: `images` [B, K, H, W, 3] at frame indices `positions` (any spacing)."""
  images = np.asarray(images, np.float32)
  positions = [int(p) for p in positions]
  if len(positions) != images.shape[1]:
    raise ValueError(f"{images.shape[1]} keyframes but {len(positions)} positions")
  bad = [p for p in positions if not 0 <= p < frames]
  if bad or len(set(positions)) != len(positions):
    raise ValueError(f"keyframe positions {positions}: expected distinct indices in [0, {frames})")
  b, _, h, w, _ = images.shape
  out, mask = _empty(b, frames, h, w)
  out[:, positions], mask[:, positions] = images, 1.0
  return Known(out, mask)


def inpainting(video, region) -> Known:
  """Inpainting: `region` (broadcastable to [B, T, H, W]) is 1 where pixels are to be
  generated; everything else of `video` is kept."""
  video = np.asarray(video, np.float32)
  region = np.broadcast_to(np.asarray(region, np.float32), video.shape[:4])
  return Known(video, (1.0 - region)[..., None])


def default_context(window: int) -> int:
  """Context frames per extension window: three quarters of it. More context pins the
  velocity down: the tiny base's first two new frames were 0.28 / 0.64 px off with 6 of 8
  given against 0.29 / 0.86 with 4 (docs/results/conditional.md, prediction sweep)."""
  return max(1, window - max(1, window // 4))


REFRESH_FLOOR = 0.5  # a refresh may not take more than half of a window's contrast away


def extend(sample_window, video, total_frames: int, *, window: int, context: int, refresh=None,
           refresh_floor: float = REFRESH_FLOOR):
  """Autoregressive extension: `video` [B, k, H, W, 3] (k >= 1 given frames) is continued
  to `total_frames`, each call `sample_window(known)` -> [B, window, H, W, 3] generating
  the frames after the last `context` ones. `refresh(window_video, known)`, if given,
  re-denoises each window before its new frames are kept (and become later context), so
  the sampler's small errors are not copied from window to window. A sample keeps its
  window un-refreshed where the refresh leaves its new frames less than `refresh_floor`
  of their contrast: a faint object (split by a border, say) is otherwise taken for noise
  and erased, and later windows cannot bring it back (docs/results/conditional.md)."""
  if not 0 < context < window:
    raise ValueError(f"context must be in 1..{window - 1} frames, got {context}")
  out = np.asarray(video, np.float32)
  while out.shape[1] < total_frames:
    n = min(context, out.shape[1])
    known = prefix(out[:, -n:], window)
    new = np.asarray(sample_window(known))
    if refresh is not None:
      redone = np.asarray(refresh(new, known))
      erased = contrast(redone[:, n:]) < refresh_floor * contrast(new[:, n:])
      new = np.where(erased[:, None, None, None, None], new, redone)
    out = np.concatenate([out, new[:, n:]], axis=1)
  return out[:, :total_frames]


def contrast(video) -> np.ndarray:
  """[B, T, H, W, C] -> [B]: each frame's spatial standard deviation, averaged."""
  return np.asarray(video, np.float32).std(axis=(2, 3)).mean(axis=(1, 2))
