"""`texture_pans`: camera pans and zooms over photographs bundled with scikit-image.

A clip is a constant-speed camera path over one photo: the view centre moves
linearly, the view height changes geometrically (a steady zoom). Its parameters
depend only on (seed, split, index), never on the resolution. Each pixel is the
exact area average of the (piecewise-constant) photo over the pixel's footprint,
read from a summed-area table, so a low-res rendering is the area-downsample of
a high-res one (up to uint8 rounding) and TSR/SSR stages get consistent pairs.
Train and test clips use disjoint photos.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import zlib

import numpy as np

# name -> (file inside skimage/data, subject for the caption); all ship in the wheel.
PHOTOS = {
    "astronaut": ("astronaut.png", "an astronaut"),
    "coffee": ("coffee.png", "a cup of coffee"),
    "chelsea": ("chelsea.png", "a cat"),
    "rocket": ("rocket.jpg", "a rocket"),
    "immunohistochemistry": ("ihc.png", "stained tissue"),
    "camera": ("camera.png", "a cameraman"),
    "brick": ("brick.png", "a brick wall"),
    "grass": ("grass.png", "grass"),
    "gravel": ("gravel.png", "gravel"),
    "motorcycle": ("motorcycle_left.png", "a motorcycle"),
    "coins": ("coins.png", "coins"),
    "moon": ("moon.png", "the moon"),
    "retina": ("retina.jpg", "a retina"),
    "hubble": ("hubble_deep_field.jpg", "galaxies"),
    "cell": ("cell.png", "cells"),
    "clock": ("clock_motion.png", "a clock"),
}
SPLIT_PHOTOS = {
    "train": ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "camera",
              "brick", "grass", "gravel"),
    "test": ("motorcycle", "coins", "moon"),
    "validation": ("retina", "hubble", "cell", "clock"),  # for choosing settings, not the test
}
SPLITS = tuple(SPLIT_PHOTOS)
MOTIONS = ("pan", "zoom", "pan_zoom")
# Camera directions (image coordinates: y grows downwards).
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
VIEW_RANGE = (0.45, 0.85)  # view height as a fraction of the largest view that fits
ZOOM_RANGE = (1.3, 1.8)  # ratio of the view heights at the two ends of the clip
PAN_RANGE = (0.3, 0.6)  # travel of the view centre, in view heights


@functools.cache
def load_photo(name: str) -> np.ndarray:
  """The photo `name` as float64 RGB [H, W, 3] in [0, 1] (grey photos as RGB)."""
  if name not in PHOTOS:
    raise ValueError(f"photo {name!r}: expected one of {sorted(PHOTOS)}")
  import skimage.data
  from PIL import Image
  path = os.path.join(os.path.dirname(skimage.data.__file__), PHOTOS[name][0])
  image = np.asarray(Image.open(path).convert("RGB"), np.float64) / 255.0
  image.setflags(write=False)
  return image


@functools.cache
def _integral(name: str) -> np.ndarray:
  """Summed-area table [H+1, W+1, 3]: S[y, x] = sum of photo[:y, :x]."""
  photo = load_photo(name)
  s = np.zeros((photo.shape[0] + 1, photo.shape[1] + 1, 3))
  s[1:, 1:] = photo.cumsum(0).cumsum(1)
  s.setflags(write=False)
  return s


def _integral_at(s: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
  """The photo's integral over [0, y] x [0, x] for real y, x (bilinear in the table: exact
  for a piecewise-constant photo). y [N, 1], x [1, M] -> [N, M, 3]."""
  y0 = np.clip(np.floor(y).astype(int), 0, s.shape[0] - 2)
  x0 = np.clip(np.floor(x).astype(int), 0, s.shape[1] - 2)
  fy, fx = (y - y0)[..., None], (x - x0)[..., None]
  return ((1 - fy) * ((1 - fx) * s[y0, x0] + fx * s[y0, x0 + 1])
          + fy * ((1 - fx) * s[y0 + 1, x0] + fx * s[y0 + 1, x0 + 1]))


@dataclasses.dataclass(frozen=True)
class Clip:
  """Resolution-free camera path over `photo`, in photo pixels.

  At clip time t in [0, 1) the view is centred at center + t * velocity and is
  view_height * zoom**t pixels high (view_height * aspect wide).
  """
  photo: str
  motion: str  # one of MOTIONS
  pan: str  # nearest camera direction of the pan ("" without a pan)
  zoom_dir: str  # "in" | "out" | "" (no zoom)
  center: tuple[float, float]  # (x, y)
  velocity: tuple[float, float]
  view_height: float
  zoom: float
  aspect: float

  @property
  def caption(self) -> str:
    move = {"pan": f"pan {self.pan}", "zoom": f"zoom {self.zoom_dir}",
            "pan_zoom": f"zoom {self.zoom_dir} and pan {self.pan}"}[self.motion]
    return f"a {move} over a photograph of {PHOTOS[self.photo][1]}"

  def views(self, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """View centres [frames, 2] (x, y) and heights [frames] at t = arange(frames) / frames."""
    t = np.arange(frames) / frames
    centers = np.asarray(self.center)[None] + t[:, None] * np.asarray(self.velocity)[None]
    return centers, self.view_height * self.zoom ** t


def sample_clip(seed: int, split: str, index: int, aspect: float = 1.0) -> Clip:
  """The clip `index` of `split` for `seed`; independent of frames and size."""
  if split not in SPLIT_PHOTOS:
    raise ValueError(f"split {split!r}: expected one of {SPLITS}")
  rng = np.random.default_rng([seed, zlib.crc32(split.encode()), index])
  photo = SPLIT_PHOTOS[split][rng.integers(len(SPLIT_PHOTOS[split]))]
  ph, pw = load_photo(photo).shape[:2]
  motion = MOTIONS[rng.integers(len(MOTIONS))]
  largest = min(ph, pw / aspect)  # tallest view inside the photo
  zoom_dir, zoom = "", 1.0
  if motion != "pan":
    zoom_dir = ("in", "out")[rng.integers(2)]
    ratio = rng.uniform(*ZOOM_RANGE)
    zoom = 1 / ratio if zoom_dir == "in" else ratio
  pan, angle = "", 0.0
  if motion != "zoom":
    angle = rng.uniform(0, 2 * np.pi)
    dx, dy = np.cos(angle), np.sin(angle)
    pan = ("right" if dx > 0 else "left") if abs(dx) >= abs(dy) else ("down" if dy > 0 else "up")
  frac, travel, pos = rng.uniform(*VIEW_RANGE), rng.uniform(*PAN_RANGE), rng.uniform(size=2)
  # The largest view of the path fills `frac` of the largest that fits (room for the pan).
  h0 = frac * largest / max(1.0, zoom)
  h1 = h0 * zoom
  v = np.array([np.cos(angle), np.sin(angle)]) * travel * max(h0, h1) if pan else np.zeros(2)
  # Window inside the photo at t=0 and t=1 (edges are monotone in t, so also between).
  half0, half1 = np.array([h0 * aspect, h0]) / 2, np.array([h1 * aspect, h1]) / 2
  size = np.array([pw, ph], np.float64)
  lo = np.maximum(half0, half1 - v)
  hi = np.minimum(size - half0, size - half1 - v)
  while np.any(hi < lo):  # pan too long for this photo: shorten it (rare)
    v = v * 0.8
    lo, hi = np.maximum(half0, half1 - v), np.minimum(size - half0, size - half1 - v)
  center = lo + pos * (hi - lo)
  return Clip(photo, motion, pan, zoom_dir, (float(center[0]), float(center[1])),
              (float(v[0]), float(v[1])), float(h0), float(zoom), float(aspect))


def render(clip: Clip, frames: int, height: int, width: int) -> np.ndarray:
  """Render `clip` as uint8 [frames, height, width, 3] (exact area averages)."""
  if abs(width / height - clip.aspect) > 1e-6:
    raise ValueError(f"render size {width}x{height} has aspect {width / height:.4f}, "
                     f"but the clip was sampled for aspect {clip.aspect:.4f}")
  s = _integral(clip.photo)
  centers, heights = clip.views(frames)
  out = np.empty((frames, height, width, 3), np.uint8)
  for f in range(frames):
    px = heights[f] / height  # photo pixels per output pixel
    ys = centers[f, 1] - heights[f] / 2 + np.arange(height + 1) * px
    xs = centers[f, 0] - heights[f] * clip.aspect / 2 + np.arange(width + 1) * px
    corners = _integral_at(s, ys[:, None], xs[None, :])
    area = corners[1:, 1:] - corners[:-1, 1:] - corners[1:, :-1] + corners[:-1, :-1]
    out[f] = np.round(np.clip(area / (px * px), 0, 1) * 255).astype(np.uint8)
  return out


def labels(clip: Clip) -> dict:
  """Structured labels stored beside the caption."""
  return {
      "caption": clip.caption,
      "photo": clip.photo,
      "motion": clip.motion,
      "center": np.asarray(clip.center, np.float32),
      "velocity": np.asarray(clip.velocity, np.float32),
      "view_height": np.float32(clip.view_height),
      "zoom": np.float32(clip.zoom),
  }
