"""Anti-aliased drawing of capsules, discs and convex polygons by supersampling.

Coordinates are in units of the frame height (x in [0, width/height], y in [0, 1],
y downwards), so one drawing renders at any size. Shapes are painted with hard
edges on a grid `supersample` times finer than the pixels, then each pixel is the
mean of its sub-pixels: the exact area coverage up to the sub-pixel grid, so a
low-res rendering is (nearly) the area-downsample of a high-res one.

    canvas = Canvas(32, 48, background=(0, 0, 0))
    canvas.capsule((0.2, 0.3), (0.8, 0.6), 0.05, (1, 0, 0))
    frame = canvas.to_uint8()   # [32, 48, 3]
"""
from __future__ import annotations

import numpy as np


class Canvas:
  """One frame being painted (painter's algorithm: later shapes cover earlier ones)."""

  def __init__(self, height: int, width: int, background=(0.0, 0.0, 0.0), supersample: int = 4):
    """background: an RGB triple in [0, 1], a float image [height * ss, width * ss, 3]
    (already supersampled), or a uint8 image [height, width, 3] (repeated per sub-pixel)."""
    self.height, self.width, self.ss = height, width, supersample
    shape = (height * supersample, width * supersample, 3)
    bg = np.asarray(background)
    if bg.dtype == np.uint8:
      bg = np.repeat(np.repeat(bg.astype(np.float32) / 255.0, supersample, 0), supersample, 1)
    self.pixels = np.broadcast_to(bg.astype(np.float32), shape).copy()
    # Sub-pixel centres in frame-height units.
    self.xs = (np.arange(shape[1]) + 0.5) / shape[0]
    self.ys = (np.arange(shape[0]) + 0.5) / shape[0]

  def _window(self, lo, hi):
    """Sub-pixel index slices covering the box [lo, hi] (frame-height units), or None."""
    n = self.pixels.shape[0]
    x0, y0 = (max(0, int(np.floor(v * n))) for v in lo)
    x1 = min(self.pixels.shape[1], int(np.ceil(hi[0] * n)) + 1)
    y1 = min(self.pixels.shape[0], int(np.ceil(hi[1] * n)) + 1)
    if x0 >= x1 or y0 >= y1:
      return None
    return slice(y0, y1), slice(x0, x1)

  def _paint(self, window, mask, rgb):
    region = self.pixels[window]
    region[mask] = np.asarray(rgb, np.float32)

  def capsule(self, a, b, radius: float, rgb) -> None:
    """The set of points within `radius` of the segment a-b (a disc when a == b)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    window = self._window(np.minimum(a, b) - radius, np.maximum(a, b) + radius)
    if window is None or radius <= 0:
      return
    px = self.xs[window[1]][None, :] - a[0]
    py = self.ys[window[0]][:, None] - a[1]
    d = b - a
    length2 = float(d @ d)
    t = np.clip((px * d[0] + py * d[1]) / length2, 0.0, 1.0) if length2 > 0 else 0.0
    self._paint(window, (px - t * d[0]) ** 2 + (py - t * d[1]) ** 2 <= radius * radius, rgb)

  def disc(self, center, radius: float, rgb) -> None:
    self.capsule(center, center, radius, rgb)

  def polygon(self, points, rgb) -> None:
    """A convex polygon (vertices in either winding order)."""
    p = np.asarray(points, np.float64)
    window = self._window(p.min(0), p.max(0))
    if window is None:
      return
    px = self.xs[window[1]][None, :]
    py = self.ys[window[0]][:, None]
    signs = []
    for (x0, y0), (x1, y1) in zip(p, np.roll(p, -1, axis=0)):
      signs.append((x1 - x0) * (py - y0) - (y1 - y0) * (px - x0))
    signs = np.stack(signs)
    self._paint(window, (signs >= 0).all(0) | (signs <= 0).all(0), rgb)

  def to_uint8(self) -> np.ndarray:
    """The frame [height, width, 3]: each pixel the mean of its sub-pixels."""
    ss = self.ss
    mean = self.pixels.reshape(self.height, ss, self.width, ss, 3).mean(axis=(1, 3))
    return np.round(np.clip(mean, 0.0, 1.0) * 255.0).astype(np.uint8)
