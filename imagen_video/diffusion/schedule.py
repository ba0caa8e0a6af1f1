"""Noise schedules in log-SNR form, one mechanism for every stage.

z_t = alpha_t * x + sigma_t * eps with the variance-preserving choice
alpha^2 = sigmoid(log_snr), sigma^2 = sigmoid(-log_snr), t in [0, 1]
(t = 0 clean, t = 1 pure noise).

Two schedules, named by `config.diffusion.schedule` and carried to the samplers as a `spec`
tuple (`spec_from_config` / `from_spec`):
  'cosine'       continuous-time cosine, truncated to [logsnr_min, logsnr_max] (ours).
  'ddpm_cosine'  the discrete DDPM schedule DeepFloyd IF was trained with: `num_timesteps`
                 steps, betas from the cosine alpha-bar capped at 0.999 (diffusers'
                 'squaredcos_cap_v2'). Time t is the fractional step index t * N - 1, linear
                 in log-SNR between steps, so a uniform grid of S steps visits indices
                 N-1, N-1-N/S, ..., N/S-1 (diffusers' timestep_spacing='trailing') and ends
                 at index -1, the clean image (alpha-bar 1, here log-SNR `DDPM_CLEAN_LOGSNR`).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

DDPM_CLEAN_LOGSNR = 20.0  # index -1 of a discrete schedule (only ever the end of a sampling run)


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


@functools.lru_cache(maxsize=8)
def ddpm_alphas_cumprod(num_timesteps: int = 1000) -> np.ndarray:
  """alpha-bar of the discrete cosine schedule, in float32 as diffusers computes it."""
  f = lambda x: math.cos((x + 0.008) / 1.008 * math.pi / 2) ** 2
  betas = np.array([min(1 - f((i + 1) / num_timesteps) / f(i / num_timesteps), 0.999)
                    for i in range(num_timesteps)], np.float32)
  out = np.cumprod(np.float32(1.0) - betas, dtype=np.float32)
  out.flags.writeable = False
  return out


@functools.lru_cache(maxsize=8)
def ddpm_log_snr_table(num_timesteps: int = 1000) -> np.ndarray:
  """log-SNR at step indices -1 (clean), 0, ..., N-1 (float64, N + 1 entries, decreasing)."""
  abar = ddpm_alphas_cumprod(num_timesteps).astype(np.float64)
  out = np.concatenate([[DDPM_CLEAN_LOGSNR], np.log(abar) - np.log1p(-abar)])
  out.flags.writeable = False
  return out


def logsnr_schedule_ddpm(t, num_timesteps: int = 1000):
  """t in [0, 1] -> log-SNR at the fractional step index t * N - 1."""
  table = jnp.asarray(ddpm_log_snr_table(num_timesteps), jnp.float32)
  index = jnp.asarray(t, jnp.float32) * num_timesteps  # + 1: the table starts at index -1
  return jnp.interp(index, jnp.arange(num_timesteps + 1, dtype=jnp.float32), table)


def ddpm_index_from_logsnr(log_snr, num_timesteps: int = 1000):
  """The fractional step index of a log-SNR (exact at the table's values)."""
  table = jnp.asarray(ddpm_log_snr_table(num_timesteps)[::-1].copy(), jnp.float32)  # increasing
  index = jnp.arange(num_timesteps - 1, -2, -1, dtype=jnp.float32)
  return jnp.interp(jnp.asarray(log_snr, jnp.float32), table, index)


def spec_from_config(config, *, shifted: bool = True) -> tuple:
  """The hashable schedule spec of a `config.diffusion`-like ConfigDict: (logsnr_min,
  logsnr_max, shift) for 'cosine', ('ddpm_cosine', num_timesteps) for the discrete one;
  `shifted=False` ignores resolution_shift (the frames' own schedule)."""
  name = config.get("schedule", "cosine")
  shift = config.get("resolution_shift", 1.0) if shifted else 1.0
  if name == "cosine":
    return (float(config.get("logsnr_min", -20.0)), float(config.get("logsnr_max", 20.0)), float(shift))
  if name == "ddpm_cosine":
    if shift != 1.0:
      raise ValueError("diffusion.resolution_shift is not supported with schedule='ddpm_cosine'")
    return ("ddpm_cosine", int(config.get("num_timesteps", 1000)))
  raise ValueError(f"unknown schedule {name!r} (expected 'cosine' or 'ddpm_cosine')")


def from_spec(spec: tuple):
  """t -> log_snr for a spec from `spec_from_config`."""
  if spec and spec[0] == "ddpm_cosine":
    return lambda t: logsnr_schedule_ddpm(t, int(spec[1]))
  return lambda t: logsnr_schedule_cosine(t, *spec)


def schedule_from_config(config, *, shifted: bool = True):
  """t -> log_snr from a `config.diffusion`-like ConfigDict (schedule, logsnr_min, logsnr_max,
  resolution_shift, num_timesteps)."""
  return from_spec(spec_from_config(config, shifted=shifted))
