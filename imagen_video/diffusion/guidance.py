"""Classifier-free guidance, its weight schedules, and x0 thresholding.

Guidance convention (Imagen): pred = uncond + w * (cond - uncond); w = 1 is the
plain conditional model, w > 1 guides. The combination is applied to the raw
prediction: x0, eps and v are all affine in the prediction for a fixed z, so
the result is the same in every parameterisation.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def cfg_combine(pred_cond, pred_uncond, weight):
  """uncond + w (cond - uncond); `weight` a scalar or [B] array (traced is fine)."""
  w = jnp.asarray(weight, pred_cond.dtype)
  w = jnp.reshape(w, w.shape + (1,) * (pred_cond.ndim - w.ndim))
  return pred_uncond + w * (pred_cond - pred_uncond)


def pose_text_combine(pred_full, pred_pose, pred_none, text_weight, pose_weight):
  """Separate pose and text guidance (InstructPix2Pix-style, pose first):
  none + w_p (pose - none) + w_t (full - pose), where `pose` drops the text and `none`
  drops both; w_p = 1 is plain text guidance of the pose-conditional model."""
  return cfg_combine(pred_pose, pred_none, pose_weight) + (
      cfg_combine(pred_full, pred_pose, text_weight) - pred_pose)


def condition_dropout(rng, batch: int, prob: float) -> jax.Array:
  """[B] bool: which samples train with the learned null text (`drop_text`)."""
  return jax.random.bernoulli(rng, prob, (batch,))


def oscillating_guidance_weights(steps: int, high: float = 15.0, low: float = 1.0,
                                 constant_fraction: float = 0.0, oscillate_until: float = 1.0,
                                 final: float | None = None) -> np.ndarray:
  """Per-step guidance weights for Imagen Video's oscillating guidance.

  Steps are in sampling order (noisiest first). The first `constant_fraction` of
  the steps use `high`; then the weight alternates high, low, high, ... until
  `oscillate_until` (a fraction of the steps); later steps use `final`
  (default: `high`). E.g. (steps=8, constant_fraction=0.25, oscillate_until=0.75, final=5):
  [15, 15, 15, 1, 15, 1, 5, 5]. The result is an array to pass as the
  sampler's traced `guidance`, so switching schedules does not recompile.
  """
  final = high if final is None else final
  n_const = int(round(constant_fraction * steps))
  n_osc_end = int(round(oscillate_until * steps))
  w = np.full((steps,), final, np.float32)
  for i in range(steps):
    if i < n_const:
      w[i] = high
    elif i < n_osc_end:
      w[i] = high if (i - n_const) % 2 == 0 else low
  return w


def interval_guidance_weights(steps: int, weight: float, start: float = 0.0, end: float = 1.0) -> np.ndarray:
  """Per-step weights guiding only over a fraction [start, end) of the steps (noisiest
  first), w = 1 elsewhere: guidance in a limited interval (Kynkaenniemi et al. 2024). The
  demo's base guides its first three quarters: the prompt is decided at high noise, and
  unguided last steps leave less haze on the black background (docs/results/demo_quality.md)."""
  if not 0.0 <= start <= end <= 1.0:
    raise ValueError(f"guidance interval [{start}, {end}): expected 0 <= start <= end <= 1")
  w = np.ones((steps,), np.float32)
  w[int(round(start * steps)):int(round(end * steps))] = weight
  return w


def parse_spec(text: str):
  """'3' -> 3.0; '3@0-0.75' -> {kind: interval, weight 3, start 0, end 0.75}."""
  weight, _, span = text.partition("@")
  if not span:
    return float(weight)
  start, _, end = span.partition("-")
  return {"kind": "interval", "weight": float(weight), "start": float(start), "end": float(end)}


def _kth_smallest(bits, k):
  """The k-th smallest (0-based, per row) of non-negative int32 `bits` [R, n], k [R]: the least
  m with count(bits <= m) > k, by bisection over [0, 2^31): 31 compare-and-count passes."""
  def halve(_, bounds):
    lo, hi = bounds
    mid = lo + (hi - lo) // 2
    enough = jnp.sum(bits <= mid[:, None], axis=1, dtype=jnp.int32) > k
    return jnp.where(enough, lo, mid + 1), jnp.where(enough, mid, hi)
  r = bits.shape[0]
  lo, _ = jax.lax.fori_loop(0, 31, halve, (jnp.zeros((r,), jnp.int32),
                                           jnp.full((r,), np.iinfo(np.int32).max, jnp.int32)))
  return lo


def row_percentile(flat, percentile):
  """jnp.percentile(flat, percentile, axis=1) (linear interpolation) for non-negative float32
  rows, without sorting: a non-negative float orders as its bit pattern does, so the two
  ranks the interpolation needs are found by bisection over the bits (`_kth_smallest`) and
  the next value up by one masked min. Sorting a row is O(n log n) and serial on CPU and costly
  on TPU; this is 32 passes that parallelise (23-44x faster on CPU, bench/RESULTS.md). The
  ranks' values are exact (tests/test_diffusion.py checks them against NumPy's sort) and the
  interpolation is jnp.percentile's (results within 1e-6); a row with a NaN gives NaN."""
  n = flat.shape[1]
  q = jnp.true_divide(jnp.asarray(percentile, jnp.float32), 100.0) * (n - 1)
  low, high = jnp.floor(q), jnp.ceil(q)
  high_w = q - low
  low_w = 1.0 - high_w
  low_i = jnp.clip(low, 0, n - 1).astype(jnp.int32)
  high_i = jnp.clip(high, 0, n - 1).astype(jnp.int32)
  bits = jax.lax.bitcast_convert_type(flat, jnp.int32)
  lo_bits = _kth_smallest(bits, jnp.broadcast_to(low_i, flat.shape[:1]))
  # the next rank is the same value while it repeats, else the least value above it
  at_most = jnp.sum(bits <= lo_bits[:, None], axis=1, dtype=jnp.int32)
  above = jnp.min(jnp.where(bits > lo_bits[:, None], bits, np.iinfo(np.int32).max), axis=1)
  hi_bits = jnp.where(at_most > high_i, lo_bits, above)
  as_float = lambda b: jax.lax.bitcast_convert_type(b, jnp.float32)
  out = as_float(lo_bits) * low_w + as_float(hi_bits) * high_w
  return jnp.where(jnp.any(jnp.isnan(flat), axis=1), jnp.nan, out)


def dynamic_threshold(x0, percentile: float = 99.5, max_value=jnp.inf, *, per_frame: bool = False):
  """Imagen's dynamic thresholding: per sample s = max(percentile(|x0|), 1) (at most
  `max_value`, as DeepFloyd IF caps it); clip to [-s, s] and divide by s, so saturated
  pixels are pushed inwards instead of clipped to a flat colour. `per_frame`: s per frame of
  [B, T, ...] (an image model's thresholding applied to each frame). `percentile` and
  `max_value` may be traced."""
  lead = x0.shape[:2] if per_frame else x0.shape[:1]
  flat = jnp.abs(x0.reshape(math.prod(lead), -1)).astype(jnp.float32)
  s = jnp.minimum(jnp.maximum(row_percentile(flat, percentile), 1.0), max_value)
  s = s.reshape(lead + (1,) * (x0.ndim - len(lead))).astype(x0.dtype)
  return jnp.clip(x0, -s, s) / s


def static_threshold(x0):
  return jnp.clip(x0, -1.0, 1.0)


THRESHOLDING = ("dynamic", "dynamic_per_frame", "static", "none")


def apply_threshold(x0, mode: str, percentile=99.5, max_value=jnp.inf):
  if mode in ("dynamic", "dynamic_per_frame"):
    return dynamic_threshold(x0, percentile, max_value, per_frame=mode == "dynamic_per_frame")
  if mode == "static":
    return static_threshold(x0)
  if mode == "none":
    return x0
  raise ValueError(f"thresholding must be one of {THRESHOLDING}, got {mode!r}")


def weights(spec, steps: int):
  """A guidance spec as the sampler's weight: a number, a per-step array, or a dict
  {kind: "oscillating", high, low, constant_fraction, oscillate_until, final},
  {kind: "interval", weight, start, end} or {kind: "constant", weight}."""
  if isinstance(spec, (int, float, np.number)):
    if not np.isfinite(spec):
      raise ValueError(f"guidance weight {spec}: expected a finite number")
    return float(spec)
  if hasattr(spec, "keys"):
    spec = dict(spec)
    kind = spec.pop("kind", "constant")
    if kind == "oscillating":
      return oscillating_guidance_weights(steps, **spec)
    if kind == "interval":
      return interval_guidance_weights(steps, **spec)
    if kind == "constant":
      return weights(float(spec["weight"]), steps)
    raise ValueError(f"guidance kind {kind!r}: expected 'oscillating', 'interval' or 'constant'")
  w = np.asarray(spec, np.float32)
  if w.ndim == 0:
    return weights(float(w), steps)
  if w.shape[0] != steps or not np.all(np.isfinite(w)):
    raise ValueError(f"guidance weights {w.shape}: expected {steps} finite per-step weights")
  return w
