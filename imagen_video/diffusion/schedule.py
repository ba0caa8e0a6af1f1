"""Continuous-time noise schedules in log-SNR form.

z_t = alpha_t * x + sigma_t * eps with the variance-preserving choice
alpha^2 = sigmoid(log_snr), sigma^2 = sigmoid(-log_snr), t in [0, 1]
(t = 0 clean, t = 1 pure noise).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def logsnr_schedule_cosine(t, logsnr_min: float = -20.0, logsnr_max: float = 20.0,
                           shift: float = 1.0):
  """Cosine schedule (Nichol & Dhariwal) as log-SNR, truncated to [logsnr_min, logsnr_max].

  log_snr(t) = -2 log tan(a t + b), with a, b chosen so that log_snr(0) = logsnr_max
  and log_snr(1) = logsnr_min (monotone decreasing).

  `shift` is the resolution shift of "simple diffusion" (Hoogeboom et al. 2023):
  shift = base_res / res, and the whole curve moves by 2 * log(shift), i.e.
  log_snr_res(t) = log_snr_base(t) + 2 log(base_res / res). shift < 1 (a stage
  at a higher resolution than the schedule's reference) puts more noise at every
  t; the endpoints move with the curve (no re-clipping).
  """
  b = math.atan(math.exp(-0.5 * logsnr_max))
  a = math.atan(math.exp(-0.5 * logsnr_min)) - b
  t = jnp.asarray(t, jnp.float32)
  return -2.0 * jnp.log(jnp.tan(a * t + b)) + 2.0 * math.log(shift)


def t_from_logsnr_cosine(log_snr, logsnr_min: float = -20.0, logsnr_max: float = 20.0,
                         shift: float = 1.0):
  """Inverse of `logsnr_schedule_cosine`."""
  b = math.atan(math.exp(-0.5 * logsnr_max))
  a = math.atan(math.exp(-0.5 * logsnr_min)) - b
  unshifted = jnp.asarray(log_snr, jnp.float32) - 2.0 * math.log(shift)
  return (jnp.arctan(jnp.exp(-0.5 * unshifted)) - b) / a


def alpha_sigma(log_snr):
  """(alpha, sigma) with alpha^2 + sigma^2 = 1 and alpha^2 / sigma^2 = exp(log_snr)."""
  log_snr = jnp.asarray(log_snr, jnp.float32)
  return jnp.sqrt(jax.nn.sigmoid(log_snr)), jnp.sqrt(jax.nn.sigmoid(-log_snr))


def schedule_from_config(config, *, shifted: bool = True):
  """t -> log_snr from a `config.diffusion`-like ConfigDict
  (schedule='cosine', logsnr_min, logsnr_max, resolution_shift); `shifted=False`
  ignores resolution_shift (the frames' own schedule)."""
  name = config.get("schedule", "cosine")
  if name != "cosine":
    raise ValueError(f"unknown schedule {name!r} (only 'cosine')")
  lo, hi = config.get("logsnr_min", -20.0), config.get("logsnr_max", 20.0)
  shift = config.get("resolution_shift", 1.0) if shifted else 1.0
  return lambda t: logsnr_schedule_cosine(t, lo, hi, shift)
