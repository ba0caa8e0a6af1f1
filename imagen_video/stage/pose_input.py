"""A pose sequence as a stage's pose input: skeleton maps at the stage's frames and size.

    maps = pose_maps(keypoints, visibility, (B, T, H, W, 3))   # float32 [B, T, H, W, 3] in [-1, 1]

The sequence is given at the cascade's final frame rate; a stage with k times fewer
frames takes every k-th pose (as its training clips do: frame i of a k-times shorter
clip is frame i*k of the full one). Maps are drawn as the data pipeline draws them
(`pose.render.render_skeleton`), scaled to [-1, 1] like the videos.
"""
from __future__ import annotations

import numpy as np

from imagen_video.pose import render
from imagen_video.pose.skeleton import NUM_KEYPOINTS


def pose_maps(keypoints, visibility, shape) -> np.ndarray:
  """keypoints [T, 17, 2] or [B, T, 17, 2] (one sequence for the whole batch, or one each),
  visibility [T, 17] or [B, T, 17] -> float32 [B, frames, H, W, 3] for `shape` [B, frames, H, W, C]."""
  b, frames, height, width = (int(s) for s in shape[:4])
  k, v = np.asarray(keypoints, np.float32), np.asarray(visibility, np.float32)
  if k.ndim == 3:
    k, v = k[None], v[None]
  if k.ndim != 4 or k.shape[2:] != (NUM_KEYPOINTS, 2) or v.shape != k.shape[:3]:
    raise ValueError(f"pose: expected keypoints [T, {NUM_KEYPOINTS}, 2] or [B, T, {NUM_KEYPOINTS}, 2] "
                     f"with visibility to match, got {k.shape} and {v.shape}")
  if k.shape[0] not in (1, b):
    raise ValueError(f"pose: {k.shape[0]} sequences for a batch of {b}; expected 1 or {b}")
  total = k.shape[1]
  if total % frames:
    raise ValueError(f"pose: {total} frames cannot feed a {frames}-frame stage; expected a "
                     f"multiple of {frames} (the stage takes every k-th pose)")
  stride = total // frames
  maps = np.stack([render.render_skeleton(ki[::stride], vi[::stride], height, width)
                   for ki, vi in zip(k, v)])
  maps = np.broadcast_to(maps, (b,) + maps.shape[1:])
  return maps.astype(np.float32) / 127.5 - 1.0
