"""Pose-guided generation: does the generated figure follow the given keypoints?

Per video, against the ground-truth `athletes` rendering of the same clip:
  psnr, ssim        mean over frames (`video_metrics`; PSNR is inf for identical videos)
  pose_error        mean distance, in frame heights, between the keypoints a detector
                    (`pose_detector/`) finds in the generated frames and the given
                    keypoints, over visible joints of all frames
  pck@0.05, pck@0.1 the share of those visible joints found within 0.05 / 0.1 frame heights
  *_truth           the same on the ground-truth rendering: the detector's own error,
                    the floor a perfect generator would reach
Compare a pose-guided model with the same model sampled without pose
(`report_table`: mean ± standard error, and the paired difference with the
count of videos where the pose-guided sample is better), and look at them side
by side (`side_by_side_sheet`).

Videos are [N, T, H, W, 3] uint8 or float in [0, 1]; keypoints [N, T, 17, 2]
normalised (x, y) and visibility [N, T, 17], as `athletes.labels` gives them.
A detector is any object with `predict(frames uint8 [M, H, W, 3]) -> [M, 17, 2]`.
"""
from __future__ import annotations

import os

import numpy as np

from imagen_video.eval import video_metrics
from imagen_video.pose_detector.model import _as_uint8, distances
from imagen_video.media import contact_sheet
from imagen_video.pose.render import render_skeleton
from imagen_video.pose.skeleton import NUM_KEYPOINTS

PCK_THRESHOLDS = (0.05, 0.1)
# metric -> (column title, higher is better, format of a mean, of a difference)
METRICS = {
    "psnr": ("PSNR (dB)", True, "{:.2f}", "{:+.2f}"),
    "ssim": ("SSIM", True, "{:.3f}", "{:+.3f}"),
    "pose_error": ("pose error (frame heights)", False, "{:.4f}", "{:+.4f}"),
    "pck@0.05": ("PCK@0.05", True, "{:.1%}", "{:+.1%}"),
    "pck@0.1": ("PCK@0.1", True, "{:.1%}", "{:+.1%}"),
}


def _check(generated, truth, keypoints, visibility):
  g, t = np.asarray(generated), np.asarray(truth)
  k, v = np.asarray(keypoints, np.float64), np.asarray(visibility, np.float64)
  if g.ndim != 5 or g.shape != t.shape or g.shape[-1] != 3:
    raise ValueError(f"generated {g.shape} and truth {t.shape}: expected equal [N, T, H, W, 3]")
  if k.shape != g.shape[:2] + (NUM_KEYPOINTS, 2) or v.shape != g.shape[:2] + (NUM_KEYPOINTS,):
    raise ValueError(f"keypoints {k.shape} and visibility {v.shape}: expected {g.shape[:2] + (NUM_KEYPOINTS, 2)}"
                     f" and {g.shape[:2] + (NUM_KEYPOINTS,)} for videos {g.shape}")
  return g, t, k, v > 0


def detect(detector, videos) -> np.ndarray:
  """The detector's keypoints [N, T, 17, 2] in videos [N, T, H, W, 3] (as uint8 frames)."""
  v = _as_uint8(videos)
  n, t, h, w, _ = v.shape
  out = np.asarray(detector.predict(v.reshape(n * t, h, w, 3)), np.float64)
  if out.shape != (n * t, NUM_KEYPOINTS, 2):
    raise ValueError(f"detector.predict returned {out.shape}, expected {(n * t, NUM_KEYPOINTS, 2)}")
  return out.reshape(n, t, NUM_KEYPOINTS, 2)


def keypoint_scores(found, keypoints, visible, height: int, width: int) -> dict:
  """Per video [N]: mean distance (frame heights) over visible joints and PCK at
  PCK_THRESHOLDS; NaN for a video without visible joints."""
  d = distances(found, keypoints, height, width)  # [N, T, 17]
  m = visible.astype(np.float64)
  count = m.sum(axis=(1, 2))
  with np.errstate(invalid="ignore", divide="ignore"):
    out = {"pose_error": (d * m).sum(axis=(1, 2)) / count}
    for th in PCK_THRESHOLDS:
      out[f"pck@{th:g}"] = ((d < th) * m).sum(axis=(1, 2)) / count
  return out


def pose_scores(generated, truth, keypoints, visibility, detector, *, return_keypoints: bool = False) -> dict:
  """Per-video arrays [N]: psnr, ssim (generated vs truth), pose_error and pck@0.05 /
  pck@0.1 of detector(generated) against the given keypoints, and pose_error_truth,
  pck@0.05_truth, pck@0.1_truth of detector(truth) (the floor). With
  `return_keypoints`, also the detected keypoints `found` and `found_truth` [N, T, 17, 2]."""
  g, t, k, vis = _check(generated, truth, keypoints, visibility)
  h, w = g.shape[2:4]
  out = {"psnr": video_metrics.psnr_per_frame(g, t).mean(axis=1),
         "ssim": video_metrics.ssim_per_frame(g, t).mean(axis=1)}
  found = detect(detector, g)
  found_truth = detect(detector, t)
  out.update(keypoint_scores(found, k, vis, h, w))
  out.update({f"{name}_truth": s for name, s in keypoint_scores(found_truth, k, vis, h, w).items()})
  if return_keypoints:
    out["found"], out["found_truth"] = found.astype(np.float32), found_truth.astype(np.float32)
  return out


# -- report -----------------------------------------------------------------------------------
def mean_se(values) -> tuple[float, float]:
  """Mean and standard error (sample std / sqrt(n)) over the finite-or-inf values; NaNs
  are dropped; SE is NaN for fewer than two values (or with infinities)."""
  x = np.asarray(values, np.float64)
  x = x[~np.isnan(x)]
  if not len(x):
    return float("nan"), float("nan")
  mean = float(x.mean())
  with np.errstate(invalid="ignore"):
    se = float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 and np.isfinite(x).all() else float("nan")
  return mean, se


def paired(a, b, higher_is_better: bool) -> dict:
  """a - b per example: mean, its standard error, and how many examples a is better on."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape or a.ndim != 1:
    raise ValueError(f"paired: per-example arrays of equal length expected, got {a.shape} and {b.shape}")
  d = a - b
  ok = ~np.isnan(d)
  mean, se = mean_se(d[ok])
  better = (d > 0) if higher_is_better else (d < 0)
  return {"delta": mean, "delta_se": se, "better": int(better[ok].sum()), "n": int(ok.sum())}


def _cell(fmt: str, mean: float, se: float) -> str:
  if np.isnan(mean):
    return "-"
  if np.isinf(mean):
    return "inf" if mean > 0 else "-inf"
  s = fmt.format(mean)
  return s if np.isnan(se) else f"{s} ± {fmt.replace('+', '').format(se)}"


def report_table(results: dict, paired_names: tuple[str, str] | None = None) -> str:
  """Markdown: per model (results: name -> `pose_scores`), mean ± standard error over
  videos of every metric; a row for the detector on the ground truth (the floor); and
  the paired difference of the first two models (or `paired_names` = (with pose,
  without pose)): first minus second, ± paired SE, and on how many videos the first
  is better (lower pose error, higher otherwise)."""
  if not results:
    raise ValueError("report_table: no results")
  names = list(results)
  cols = [m for m in METRICS if all(m in r for r in results.values())]
  lines = ["| model | videos | " + " | ".join(METRICS[m][0] for m in cols) + " |",
           "|---|---|" + "---|" * len(cols)]
  for name, r in results.items():
    cells = [_cell(METRICS[m][2], *mean_se(r[m])) for m in cols]
    lines.append(f"| {name} | {len(np.asarray(r[cols[0]]))} | " + " | ".join(cells) + " |")
  first = results[names[0]]
  if "pose_error_truth" in first:
    cells = [_cell(METRICS[m][2], *mean_se(first[f"{m}_truth"])) if f"{m}_truth" in first else "-"
             for m in cols]
    lines.append(f"| ground truth (detector floor) | {len(np.asarray(first['pose_error_truth']))} | "
                 + " | ".join(cells) + " |")
  if paired_names is None and len(names) >= 2:
    paired_names = (names[0], names[1])
  if paired_names:
    a, b = paired_names
    for n in (a, b):
      if n not in results:
        raise ValueError(f"report_table: paired name {n!r} not in results {names}")
    cells = []
    for m in cols:
      _, higher, _, fmt = METRICS[m]
      p = paired(results[a][m], results[b][m], higher)
      delta = _cell(fmt, p["delta"], p["delta_se"])
      cells.append(f"{delta} ({p['better']}/{p['n']} better)" if p["n"] else "-")
    lines.append(f"| {a} − {b} (paired) | {len(np.asarray(results[a][cols[0]]))} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def side_by_side_sheet(path, keypoints, visibility, rows: dict, captions=None, *, scale: int | None = None,
                       max_frames: int = 16, title: str | None = None) -> str:
  """A contact sheet PNG at `path`: per example i, the skeleton maps of keypoints[i]
  rendered at the videos' size, then each of `rows` (name -> videos [N, T, H, W, 3],
  e.g. generated (pose), generated (no pose), ground truth) in order. `captions`
  (one per example) go above the pose row."""
  if not rows:
    raise ValueError("side_by_side_sheet: no rows to show")
  k = np.asarray(keypoints, np.float64)
  v = np.asarray(visibility, np.float64)
  videos = {name: np.asarray(x) for name, x in rows.items()}
  n, t = k.shape[:2]
  for name, x in videos.items():
    if x.ndim != 5 or x.shape[:2] != (n, t):
      raise ValueError(f"row {name!r}: videos {x.shape}, expected [{n}, {t}, H, W, 3] "
                       f"for keypoints {k.shape}")
  sizes = {x.shape[2:4] for x in videos.values()}
  if len(sizes) != 1:
    raise ValueError(f"side_by_side_sheet: rows differ in frame size: {sorted(sizes)}")
  h, w = sizes.pop()
  if captions is not None and len(captions) != n:
    raise ValueError(f"side_by_side_sheet: {len(captions)} captions for {n} examples")
  scale = scale or contact_sheet.auto_scale(h, w, min_size=64)
  sheet, labels = [], []
  for i in range(n):
    sheet.append(render_skeleton(k[i], v[i], h, w))
    labels.append(f"#{i} pose" + (f": {captions[i]}" if captions is not None else ""))
    for name, x in videos.items():
      sheet.append(x[i])
      labels.append(f"#{i} {name}")
  contact_sheet.contact_sheet(sheet, labels, path, scale=scale, max_frames=max_frames, title=title)
  return os.fspath(path)
