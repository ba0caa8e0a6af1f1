"""Reads color, shape and direction of a `moving_shapes` clip from its pixels.

The same rules that define the grammar (pure RGB primaries and mixes; constant
motion along one axis; shape fill ratio of its bounding box) are applied to a
video, so the check works on dataset clips and on generated samples alike.
"""
from __future__ import annotations

import collections

import numpy as np

from imagen_video.data import moving_shapes as ms

_FILL = {"circle": np.pi / 4, "square": 1.0, "triangle": 0.5}


def _as_unit(video: np.ndarray) -> np.ndarray:
  video = np.asarray(video)
  if video.dtype == np.uint8:
    return video.astype(np.float32) / 255.0
  return np.clip(video.astype(np.float32), 0.0, 1.0)


def classify(video: np.ndarray, threshold: float = 0.35) -> dict:
  """Predicted labels of one clip [T, H, W, 3] (uint8, or float in [0, 1]).

  Returns color, shape, direction (None where nothing is visible) and the
  per-frame foreground centroids (normalised x, y; NaN for empty frames).
  """
  v = _as_unit(video)
  frames, height, width, _ = v.shape
  weight = v.max(axis=-1)
  fg = weight > threshold
  color = shape = direction = None
  if fg.any():
    mean_rgb = v[fg].mean(axis=0)
    bits = tuple(int(c > 0.5 * mean_rgb.max()) for c in mean_rgb)
    color = {rgb: name for name, rgb in ms.COLORS.items()}.get(bits)
  ys, xs = (np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width
  mass = weight.sum(axis=(1, 2))
  with np.errstate(invalid="ignore", divide="ignore"):
    cx = (weight.sum(axis=1) * xs).sum(axis=1) / mass
    cy = (weight.sum(axis=2) * ys).sum(axis=1) / mass
  cx[~fg.any(axis=(1, 2))] = np.nan
  cy[~fg.any(axis=(1, 2))] = np.nan
  ok = ~np.isnan(cx)
  if ok.sum() >= 2:
    t = np.arange(frames)[ok]
    # Least-squares slopes in frame-height units, so both axes compare fairly.
    vx = np.polyfit(t, cx[ok] * width / height, 1)[0]
    vy = np.polyfit(t, cy[ok], 1)[0]
    if max(abs(vx), abs(vy)) * frames > 0.02:
      if abs(vx) >= abs(vy):
        direction = "right" if vx > 0 else "left"
      else:
        direction = "down" if vy > 0 else "up"
  fill = []
  for f in np.flatnonzero(fg.any(axis=(1, 2))):
    rows, cols = np.flatnonzero(fg[f].any(1)), np.flatnonzero(fg[f].any(0))
    box = (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
    fill.append(fg[f].sum() / box)
  if fill:
    med = float(np.median(fill))
    shape = min(_FILL, key=lambda s: abs(_FILL[s] - med))
  return {"color": color, "shape": shape, "direction": direction,
          "centroids": np.stack([cx, cy], -1)}


def score(videos, captions) -> dict:
  """Accuracy of color, shape, direction, color+direction and all three.

  `videos` is an iterable of [T, H, W, 3] clips, `captions` their prompts.
  Also returns per-prompt rows for tables.
  """
  hits = collections.Counter()
  rows = []
  n = 0
  for video, text in zip(videos, captions):
    color, shape, direction = ms.parse_caption(text)
    pred = classify(video)
    row = {
        "caption": text,
        "pred_color": pred["color"], "pred_shape": pred["shape"], "pred_direction": pred["direction"],
        "color": pred["color"] == color,
        "shape": pred["shape"] == shape,
        "direction": pred["direction"] == direction,
    }
    row["color_direction"] = row["color"] and row["direction"]
    row["all"] = row["color_direction"] and row["shape"]
    for key in ("color", "shape", "direction", "color_direction", "all"):
      hits[key] += row[key]
    rows.append(row)
    n += 1
  if n == 0:
    raise ValueError("caption check got no videos")
  acc = {key: hits[key] / n for key in ("color", "shape", "direction", "color_direction", "all")}
  return {"accuracy": acc, "count": n, "rows": rows}
