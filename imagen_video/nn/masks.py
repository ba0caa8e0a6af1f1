"""Which frames may exchange information in the temporal layers.

Semantics (used by temporal attention and temporal convolution alike):

* `frame_mask` [B, T] bool, True = real frame, False = padding. Padding frames
  never influence real frames; their own outputs are unspecified (the loss
  masks them).
* `is_image` [B] or [B, T] bool, True = the frame is an independent image.
  Image frames mix with nothing but themselves. A [B] flag marks a whole
  sample as a stack of T independent images (an image batch element in joint
  image-video training); a [B, T] flag supports Video Diffusion Models' scheme
  of appending independent images after a video's frames.
* All other real frames of a sample form one video and mix with each other.

Result: allowed[b, i, j] = (i == j) or (video[b, i] and video[b, j]) with
video = frame_mask & ~is_image. The diagonal is always allowed, so no
attention row is empty.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def temporal_allowed(batch: int, frames: int, frame_mask=None, is_image=None) -> jax.Array:
  """-> [B, T, T] bool, True where frame i may read frame j."""
  video = jnp.ones((batch, frames), bool)
  if frame_mask is not None:
    video = video & jnp.asarray(frame_mask, bool)
  if is_image is not None:
    is_image = jnp.asarray(is_image, bool)
    if is_image.ndim == 1:
      is_image = is_image[:, None]
    video = video & ~is_image
  eye = jnp.eye(frames, dtype=bool)[None]
  return eye | (video[:, :, None] & video[:, None, :])


def mixing_frames(allowed) -> jax.Array:
  """[B, T, T] `temporal_allowed` -> [B, T] bool: frames of a video (not an image or a lone frame)."""
  return allowed.sum(-1) > 1
