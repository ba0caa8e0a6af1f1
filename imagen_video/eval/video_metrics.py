"""Per-frame PSNR / SSIM against ground truth, temporal colour shift, sample diversity.

Videos are [N, T, H, W, C] in [0, 1] (uint8 is rescaled). SSIM is Wang et al.'s
(2004): Gaussian window sigma 1.5 truncated at 3.5 sigma (11 taps), K1 0.01, K2
0.03, population covariances, the mean over the interior of each frame and over
channels; the same numbers as scikit-image's `structural_similarity(...,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)`.
"""
from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage

SIGMA, TRUNCATE, K1, K2 = 1.5, 3.5, 0.01, 0.03


def as_unit(video) -> np.ndarray:
  v = np.asarray(video)
  return v.astype(np.float64) / 255.0 if v.dtype == np.uint8 else v.astype(np.float64)


def _check(a, b):
  if a.shape != b.shape or a.ndim != 5:
    raise ValueError(f"videos of shapes {a.shape} and {b.shape}: expected equal [N, T, H, W, C]")


def psnr_per_frame(a, b) -> np.ndarray:
  """[N, T] PSNR in dB of each frame of `a` against `b` (inf where equal)."""
  a, b = as_unit(a), as_unit(b)
  _check(a, b)
  mse = ((a - b) ** 2).mean(axis=(2, 3, 4))
  with np.errstate(divide="ignore"):
    return 10 * np.log10(1.0 / mse)


def ssim_per_frame(a, b) -> np.ndarray:
  """[N, T] SSIM of each frame of `a` against `b` (module docstring)."""
  a, b = as_unit(a), as_unit(b)
  _check(a, b)
  radius = int(TRUNCATE * SIGMA + 0.5)
  if min(a.shape[2:4]) <= 2 * radius:
    raise ValueError(f"frames of {a.shape[2]}x{a.shape[3]}: SSIM's {2 * radius + 1}-tap window "
                     "needs frames larger than that")
  blur = lambda x: ndimage.gaussian_filter(x, sigma=(0, 0, SIGMA, SIGMA, 0), truncate=TRUNCATE,
                                           mode="reflect")
  mu_a, mu_b = blur(a), blur(b)
  var_a = blur(a * a) - mu_a ** 2
  var_b = blur(b * b) - mu_b ** 2
  cov = blur(a * b) - mu_a * mu_b
  c1, c2 = K1 ** 2, K2 ** 2
  s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
  return s[:, :, radius:-radius, radius:-radius].mean(axis=(2, 3, 4))


def frame_scores(a, b) -> dict:
  """Mean per-frame PSNR and SSIM (frames first averaged per video, then over videos)."""
  p, s = psnr_per_frame(a, b), ssim_per_frame(a, b)
  return {"psnr": float(np.mean(p.mean(1))), "ssim": float(np.mean(s.mean(1))),
          "psnr_per_frame": p.mean(0).tolist(), "ssim_per_frame": s.mean(0).tolist()}


def color_shift(videos) -> float:
  """Temporal colour shift: std over frames of each frame's mean colour, averaged over
  channels and videos, in 0-255 levels (the drift that eps-prediction shows in the paper).
  Motion changes it a little too: compare with the same number on real clips."""
  v = as_unit(videos)
  return float(v.mean(axis=(2, 3)).std(axis=1).mean() * 255)


def diversity(videos, groups) -> float:
  """Mean RMS difference (0-255 levels) between samples of the same prompt: `groups` gives
  each video's prompt; groups of one video are skipped."""
  v = as_unit(videos)
  by = {}
  for i, g in enumerate(groups):
    by.setdefault(g, []).append(i)
  dists = [np.sqrt(((v[i] - v[j]) ** 2).mean()) * 255
           for idx in by.values() for i, j in itertools.combinations(idx, 2)]
  if not dists:
    raise ValueError("diversity needs at least two samples of one prompt")
  return float(np.mean(dists))
