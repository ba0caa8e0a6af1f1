"""CLIP's image preprocessing (HF `CLIPImageProcessor`): resize the shortest side with
antialiased bicubic, centre-crop, scale to [0, 1], normalise with the processor's mean/std.

The resize is PIL's algorithm as separable matrices: Keys cubic (a = -0.5) stretched by the
downscale factor, weights renormalised at the borders, horizontal pass then vertical. For
uint8 input it reproduces PIL's 8-bit path bit for bit (22-bit fixed-point weights, each pass
rounded and clipped to 0..255), which is what HF's PIL backend runs.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

PRECISION_BITS = 22  # PIL's 8-bit resampling: 32 - 8 - 2
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
  x = np.abs(x)
  near = ((a + 2) * x - (a + 3)) * x * x + 1
  far = (((x - 5) * x + 8) * x - 4) * a
  return np.where(x < 1, near, np.where(x < 2, far, 0.0))


@functools.lru_cache(maxsize=32)
def resize_matrix(n_in: int, n_out: int, fixed_point: bool) -> np.ndarray:
  """[n_out, n_in] PIL bicubic weights (integers scaled by 2^22 when `fixed_point`)."""
  scale = n_in / n_out
  stretch = max(scale, 1.0)
  support = 2.0 * stretch
  m = np.zeros((n_out, n_in), np.float64)
  for i in range(n_out):
    center = (i + 0.5) * scale
    lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), n_in)
    w = _cubic((np.arange(lo, hi) - center + 0.5) / stretch)
    m[i, lo:hi] = w / w.sum() if w.sum() != 0 else w
  if fixed_point:  # C's (int) truncation after adding +-0.5
    m = np.trunc(m * (1 << PRECISION_BITS) + np.where(m < 0, -0.5, 0.5))
  return m


def _pass(x: np.ndarray, m: np.ndarray, axis: int, fixed_point: bool) -> np.ndarray:
  y = np.moveaxis(np.tensordot(x, m, axes=([axis], [1])), -1, axis)
  if fixed_point:  # exact in float64: |sum| < 255 * 2^22 * taps << 2^53
    y = np.clip(np.floor((y + (1 << (PRECISION_BITS - 1))) / (1 << PRECISION_BITS)), 0, 255)
  return y


def resize_shortest(frames: np.ndarray, size: int) -> np.ndarray:
  """[N, H, W, 3] -> shortest side `size`, the other int(size * long / short), as HF."""
  h, w = frames.shape[1:3]
  short, long = min(h, w), max(h, w)
  new_long = int(size * long / short)
  nh, nw = (size, new_long) if h <= w else (new_long, size)
  fixed = frames.dtype == np.uint8
  x = frames.astype(np.float64)
  if nw != w:  # PIL skips a pass whose size does not change
    x = _pass(x, resize_matrix(w, nw, fixed), 2, fixed)
  if nh != h:
    x = _pass(x, resize_matrix(h, nh, fixed), 1, fixed)
  return x


def center_crop(frames: np.ndarray, size: int) -> np.ndarray:
  h, w = frames.shape[1:3]
  if h < size or w < size:
    raise ValueError(f"CLIP preprocessing: {h}x{w} frames are smaller than the {size}px crop")
  top, left = (h - size) // 2, (w - size) // 2
  return frames[:, top:top + size, left:left + size]


@dataclasses.dataclass(frozen=True)
class Preprocess:
  """Settings of `preprocessor_config.json`; `None` skips a step."""
  resize: int | None = 224  # shortest edge
  crop: int | None = 224
  mean: tuple[float, ...] = OPENAI_MEAN
  std: tuple[float, ...] = OPENAI_STD
  rescale: float = 1 / 255
  normalize: bool = True

  def __call__(self, frames) -> np.ndarray:
    """Frames [N, H, W, 3] (uint8, or float on the 0..255 scale) -> float32 [N, S, S, 3]."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
      raise ValueError(f"CLIP preprocessing: expected frames [N, height, width, 3], got {frames.shape}")
    x = resize_shortest(frames, self.resize) if self.resize else frames.astype(np.float64)
    if self.crop:
      x = center_crop(x, self.crop)
    x = x * self.rescale
    if self.normalize:
      x = (x - np.asarray(self.mean)) / np.asarray(self.std)
    return x.astype(np.float32)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict) -> "Preprocess":
    return cls(**{**d, "mean": tuple(d["mean"]), "std": tuple(d["std"])})
