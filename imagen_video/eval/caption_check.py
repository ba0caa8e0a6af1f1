"""Reads color, shape and direction of a `moving_shapes` clip from its pixels.

The same rules that define the grammar (pure RGB primaries and mixes; constant
motion along one axis; the three shapes as `moving_shapes` renders them) are
applied to a video, so the check works on dataset clips and on generated samples
alike. The shape is the rendered template (at the frame's centroid, with the
frame's foreground mass) closest to the frame: at 16x16 the older bounding-box
fill ratio read only 76% of the dataset's own shapes, templates read them all.
"""
from __future__ import annotations

import collections

import numpy as np

from imagen_video.data import moving_shapes as ms

# Area of each shape in units of its circumradius squared (moving_shapes._inside).
_AREA = {"circle": np.pi, "square": 2.0, "triangle": 3 * np.sqrt(3) / 4}
_PERIMETER = {"circle": 2 * np.pi, "square": 4 * np.sqrt(2), "triangle": 3 * np.sqrt(3)}


def _as_unit(video: np.ndarray) -> np.ndarray:
  video = np.asarray(video)
  if video.dtype == np.uint8:
    return video.astype(np.float32) / 255.0
  return np.clip(video.astype(np.float32), 0.0, 1.0)


def classify(video: np.ndarray, threshold: float = 0.35) -> dict:
  """Predicted labels of one clip [T, H, W, 3] (uint8, or float in [0, 1]).

  Returns color, shape, direction (None where nothing is visible), the
  per-frame foreground centroids (normalised x, y; NaN for empty frames) and two
  cleanliness figures averaged over frames: `background`, the mean grey level
  (0-255, brightest channel) more than 2 pixels outside the fitted shape, and
  `edge_px`, the width in pixels of the band between 10% and 90% of the shape's
  level (pixels in it / the shape's perimeter; speckle inside the shape widens it).
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
  votes, background, edge = [], [], []
  error = dict.fromkeys(ms.SHAPES, 0.0)
  for f in np.flatnonzero(ok):
    vote, fit = template_shape(weight[f])
    votes.append(vote)
    background.append(fit["background"])
    edge.append(fit["edge_px"])
    error = {k: error[k] + fit["errors"][k] for k in ms.SHAPES}
  if votes:
    # The most frames' shape; a tie goes to the smaller template error over all frames (not
    # to the order of a set of strings, which changes with each process's hash seed).
    top = max(map(votes.count, ms.SHAPES))
    shape = min((k for k in ms.SHAPES if votes.count(k) == top), key=error.get)
  return {"color": color, "shape": shape, "direction": direction,
          "centroids": np.stack([cx, cy], -1),
          "background": float(np.mean(background)) if background else float("nan"),
          "edge_px": float(np.mean(edge)) if edge else float("nan")}


def template(shape: str, height: int, width: int, cx: float, cy: float, radius: float) -> np.ndarray:
  """Coverage [H, W] in [0, 1] of `shape` centred at (cx, cy) (normalised x, y)
  with circumradius `radius` in frame-height units, anti-aliased like `render`."""
  return ms.coverage(shape, height, width, cx * width / height, cy, radius)


def template_shape(weight: np.ndarray) -> tuple[str, dict]:
  """The shape whose template, at the foreground's centroid and with its
  area, is closest (least squares) to the frame's normalised foreground `weight`,
  and the frame's cleanliness figures against that template (see `classify`)."""
  height, width = weight.shape
  level = np.percentile(weight[weight > 0.5 * weight.max()], 75)
  w = np.clip(weight / max(level, 1e-6), 0.0, 1.0)
  w = np.where(w > 0.2, w, 0.0)  # background grain would otherwise add area everywhere
  area = w.sum() / height ** 2  # frame-height units
  # The centroid of what is left: grain pulls the whole frame's towards the middle.
  cx = float((w.sum(0) * (np.arange(width) + 0.5)).sum() / w.sum() / width)
  cy = float((w.sum(1) * (np.arange(height) + 0.5)).sum() / w.sum() / height)
  errors, radius = {}, {}
  for shape, unit in _AREA.items():
    radius[shape] = float(np.sqrt(area / unit))
    t = template(shape, height, width, cx, cy, radius[shape])
    errors[shape] = float(((w - t) ** 2).sum())
  best = min(errors, key=errors.get)
  r = radius[best]
  near = template(best, height, width, cx, cy, r + 2.0 / height) > 0
  far = weight[~near]
  band = ((w > 0.1) & (w < 0.9)).sum()
  return best, {"background": float(far.mean() * 255) if far.size else float("nan"),
                "edge_px": float(band / (_PERIMETER[best] * r * height)), "errors": errors}


def score(videos, captions) -> dict:
  """Accuracy of color, shape, direction, color+direction and all three.

  `videos` is an iterable of [T, H, W, 3] clips, `captions` their prompts.
  Also returns per-prompt rows for tables (with each clip's cleanliness figures).
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
    row["background"], row["edge_px"] = pred["background"], pred["edge_px"]
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


def cleanliness(result: dict) -> tuple[float, float]:
  """Mean background grey level and edge width (px) over the clips of a `score` result."""
  rows = result["rows"]
  return (float(np.nanmean([r["background"] for r in rows])),
          float(np.nanmean([r["edge_px"] for r in rows])))
