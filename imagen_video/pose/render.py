"""Pose sequences drawn as skeleton maps, for the network's pose input and for viewing.

    maps = render_skeleton(keypoints, visibility, 32, 32)         # uint8 [T, 32, 32, 3]
    write_side_by_side("pose.mp4", keypoints, visibility, video, fps=8)

Drawn in the OpenPose colour convention (as ControlNet's pose maps are): the 17
keypoints plus a neck (the shoulders' midpoint) make OpenPose's 18-point COCO
layout; its 17 limbs are coloured around the hue wheel, 20 degrees apart, and
each joint a dot in its own hue, on black. Sizes are fractions of the frame
height, so one sequence renders alike at every stage's resolution (anti-aliased
by supersampling; never thinner than about a pixel so low-res maps keep thin limbs).
"""
from __future__ import annotations

import colorsys
import os

import numpy as np

from imagen_video.media import contact_sheet, video_io
from imagen_video.media.raster import Canvas
from imagen_video.pose.skeleton import INDEX, NUM_KEYPOINTS

# OpenPose's COCO-18 points as COCO-17 names; "neck" is derived.
OPENPOSE_18 = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
               "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip",
               "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear")
# OpenPose's limb order (indices into OPENPOSE_18); limb i takes hue i * 20 degrees.
OPENPOSE_LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
                  (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
HUES = tuple(colorsys.hsv_to_rgb(i / 18, 1.0, 1.0) for i in range(18))
MIN_RADIUS_PX = 0.6


def _check(keypoints, visibility) -> tuple[np.ndarray, np.ndarray]:
  k = np.asarray(keypoints, np.float64)
  v = np.asarray(visibility, np.float64)
  if k.ndim != 3 or k.shape[1:] != (NUM_KEYPOINTS, 2) or v.shape != k.shape[:2]:
    raise ValueError(f"expected keypoints [T, {NUM_KEYPOINTS}, 2] and visibility [T, {NUM_KEYPOINTS}], "
                     f"got {k.shape} and {v.shape}")
  return k, v > 0


def to_openpose18(keypoints, visibility) -> tuple[np.ndarray, np.ndarray]:
  """COCO-17 [T, 17, 2], [T, 17] -> OpenPose order [T, 18, 2], [T, 18] bool (neck added)."""
  k, v = _check(keypoints, visibility)
  ls, rs = INDEX["left_shoulder"], INDEX["right_shoulder"]
  neck = (k[:, ls] + k[:, rs]) / 2
  neck_v = v[:, ls] & v[:, rs]
  order = [INDEX.get(n, -1) for n in OPENPOSE_18]
  k18 = np.stack([neck if i < 0 else k[:, i] for i in order], 1)
  v18 = np.stack([neck_v if i < 0 else v[:, i] for i in order], 1)
  return k18, v18


def render_skeleton(keypoints, visibility, height: int, width: int, *, background=None,
                    limb_radius: float = 0.015, joint_radius: float = 0.022,
                    supersample: int = 4) -> np.ndarray:
  """Skeleton maps uint8 [T, height, width, 3]; keypoints are normalised (x, y) in
  [0, 1] of this frame. `background`: uint8 frames [T, height, width, 3] to draw over
  (an overlay), else black. Limbs with a hidden end and hidden joints are not drawn."""
  k18, v18 = to_openpose18(keypoints, visibility)
  if background is not None:
    background = video_io._as_uint8_rgb(background)
    if background.shape != (len(k18), height, width, 3):
      raise ValueError(f"background: expected frames {(len(k18), height, width, 3)}, got {background.shape}")
  aspect = width / height
  pts = k18 * np.array([aspect, 1.0])  # frame-height units, as Canvas draws
  limb_r = max(limb_radius, MIN_RADIUS_PX / height)
  joint_r = max(joint_radius, 1.2 * MIN_RADIUS_PX / height)
  out = np.empty((len(k18), height, width, 3), np.uint8)
  for f, (p, v) in enumerate(zip(pts, v18)):
    canvas = Canvas(height, width, (0, 0, 0) if background is None else background[f], supersample)
    for i, (a, b) in enumerate(OPENPOSE_LIMBS):
      if v[a] and v[b]:
        canvas.capsule(p[a], p[b], limb_r, HUES[i])
    for i in np.flatnonzero(v):
      canvas.disc(p[i], joint_r, HUES[i])
    out[f] = canvas.to_uint8()
  return out


def side_by_side(*videos, gap: int = 2) -> np.ndarray:
  """Equal-sized videos [T, H, W, 3] next to each other, `gap` white columns apart."""
  videos = [video_io._as_uint8_rgb(v) for v in videos]
  if len({v.shape for v in videos}) != 1:
    raise ValueError(f"side_by_side: videos differ in shape: {[v.shape for v in videos]}")
  white = np.full(videos[0].shape[:3] + (3,), 255, np.uint8)[:, :, :gap]
  parts = [p for v in videos for p in (v, white)][:-1]
  return np.concatenate(parts, axis=2)


def write_side_by_side(path, keypoints, visibility, video=None, *, fps: float = 8.0, size=None,
                       scale: int | None = None, caption: str | None = None) -> str:
  """The skeleton sequence beside `video` (and both overlaid): an mp4 (pose | video |
  overlay per frame) or, for a .png path, a contact sheet with those three rows.
  Without a video it shows the skeleton alone, at `size` (height, width)."""
  k, v = _check(keypoints, visibility)
  if video is not None:
    video = video_io._as_uint8_rgb(video)
    if len(video) != len(k):
      raise ValueError(f"video has {len(video)} frames but the pose sequence {len(k)}; expected the same")
    size = video.shape[1:3]
  if size is None:
    raise ValueError("write_side_by_side: pass a video or size=(height, width)")
  pose = render_skeleton(k, v, *size)
  rows = [pose] if video is None else [pose, video, render_skeleton(k, v, *size, background=video)]
  scale = scale or contact_sheet.auto_scale(*size, min_size=128)
  if os.fspath(path).lower().endswith(".png"):
    names = ["pose", "video", "pose over video"][:len(rows)]
    labels = [f"{n}: {caption}" if caption else n for n in names]
    contact_sheet.contact_sheet(rows, labels, path, scale=scale)
    return os.fspath(path)
  return video_io.write_mp4(path, side_by_side(*rows), fps, scale=scale)
