"""Prediction targets, conversions between x0 / eps / v, loss weights, the loss.

With z = alpha x0 + sigma eps (alpha^2 + sigma^2 = 1):
  v   = alpha eps - sigma x0
  x0  = alpha z - sigma v = (z - sigma eps) / alpha
  eps = sigma z + alpha v = (z - alpha x0) / sigma

`config.diffusion` fields read here (defaults in `default_diffusion_config()`):
  objective      'v' (default, as in Imagen Video) | 'eps' | 'x0'
  weighting      weight lambda(SNR) on the x0-space error ||x0_hat - x0||^2; the same
                 name means the same weighting whatever the objective:
                   'snr+1'          SNR + 1 (= plain v-MSE; the default)
                   'snr'            SNR (= plain eps-MSE)
                   'truncated_snr'  max(SNR, 1) (Salimans & Ho 2022)
                   'min_snr'        min(SNR, min_snr_gamma) (Hang et al. 2023)
                   'none'           plain MSE on the objective's own target
  min_snr_gamma  gamma for 'min_snr' (5.0).
  schedule, logsnr_min, logsnr_max, resolution_shift: see `schedule.py`.
  cond_drop_prob probability of dropping the text in training (classifier-free guidance).
  offset_noise   (optional, default 0) std of a per-video, per-channel constant added to the
                 training noise (Guttenberg 2023's "offset noise"): iid noise barely moves a
                 clip's mean colour, so the network learns to keep whatever mean z has and
                 cannot pull a drifted background back to black while sampling.
  learned_variance  (optional, default False) the network outputs 2C channels, the second half
                 a variance interpolation (DeepFloyd IF); the loss reads the first half only, so
                 fine-tuning leaves the variance head to the trunk (IF trained it with its VLB term).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections

from imagen_video.diffusion.schedule import alpha_sigma, schedule_from_config

OBJECTIVES = ("v", "eps", "x0")
WEIGHTINGS = ("snr+1", "snr", "truncated_snr", "min_snr", "none")


def default_diffusion_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      objective="v", weighting="snr+1", min_snr_gamma=5.0, schedule="cosine",
      logsnr_min=-20.0, logsnr_max=20.0, resolution_shift=1.0, cond_drop_prob=0.1))


def _bcast(a, x):
  return jnp.reshape(a, a.shape + (1,) * (x.ndim - a.ndim))


def v_target(x0, eps, alpha, sigma):
  return _bcast(alpha, x0) * eps - _bcast(sigma, x0) * x0


def target(x0, eps, log_snr, objective: str):
  alpha, sigma = alpha_sigma(log_snr)
  if objective == "v":
    return v_target(x0, eps, alpha, sigma)
  if objective == "eps":
    return eps
  if objective == "x0":
    return x0
  raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")


def pred_to_x0_eps(pred, z, log_snr, objective: str):
  """Model output -> (x0_hat, eps_hat)."""
  alpha, sigma = alpha_sigma(log_snr)
  a, s = _bcast(alpha, z), _bcast(sigma, z)
  if objective == "v":
    return a * z - s * pred, s * z + a * pred
  if objective == "eps":
    return (z - s * pred) / a, pred
  if objective == "x0":
    return pred, (z - a * pred) / s
  raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")


def x0_eps_to_pred(x0, eps, log_snr, objective: str):
  """(x0, eps) -> what a model with this objective outputs (inverse of pred_to_x0_eps)."""
  return target(x0, eps, log_snr, objective)


def eps_from_x0(z, x0, log_snr):
  alpha, sigma = alpha_sigma(log_snr)
  return (z - _bcast(alpha, z) * x0) / _bcast(sigma, z)


def loss_weight(log_snr, objective: str, weighting: str, min_snr_gamma: float = 5.0):
  """Per-sample factor on ||pred - target||^2 that realises lambda(SNR) on the x0 error.

  ||eps_hat - eps||^2 = SNR ||x0_hat - x0||^2 and ||v_hat - v||^2 = (SNR+1) ||x0_hat - x0||^2,
  so the factor is lambda / c_objective, computed in log space for stability.
  """
  ls = jnp.asarray(log_snr, jnp.float32)
  if weighting == "none":
    return jnp.ones_like(ls)
  log_lambda = {"snr+1": lambda: jax.nn.softplus(ls), "snr": lambda: ls,
                "truncated_snr": lambda: jnp.maximum(ls, 0.0),
                "min_snr": lambda: jnp.minimum(ls, jnp.log(min_snr_gamma))}
  log_c = {"v": lambda: jax.nn.softplus(ls), "eps": lambda: ls, "x0": lambda: jnp.zeros_like(ls)}
  if weighting not in log_lambda:
    raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
  if objective not in log_c:
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
  return jnp.exp(log_lambda[weighting]() - log_c[objective]())


def diffusion_loss(model_fn: Callable, x0, rng, config, *, frame_mask=None):
  """One Monte-Carlo estimate of the weighted denoising loss.

  model_fn(z, log_snr) -> prediction (closes over params, text, drop_text, dropout key).
  x0 [B, T, H, W, C]; frame_mask [B, T] bool, False frames (padding) carry no loss.
  Each sample's loss is the mean over its real elements; the batch loss their mean.
  t is drawn low-discrepancy (stratified over the batch, one shared offset, as in VDM).
  Returns (loss, aux) with per-sample `loss_per_sample`, `t`, `log_snr`, `weight`.
  """
  b = x0.shape[0]
  k_t, k_eps = jax.random.split(rng)
  t = jnp.mod(jax.random.uniform(k_t, ()) + jnp.arange(b) / b, 1.0)
  log_snr = schedule_from_config(config)(t)
  eps = jax.random.normal(k_eps, x0.shape, jnp.float32)
  offset = float(config.get("offset_noise", 0.0))
  if offset:
    shape = (b,) + (1,) * (x0.ndim - 2) + x0.shape[-1:]
    eps = eps + offset * jax.random.normal(jax.random.fold_in(k_eps, 1), shape, jnp.float32)
  alpha, sigma = alpha_sigma(log_snr)
  z = _bcast(alpha, x0) * x0 + _bcast(sigma, x0) * eps
  pred = model_fn(z, log_snr).astype(jnp.float32)
  if config.get("learned_variance", False):
    pred = pred[..., :x0.shape[-1]]
  objective = config.get("objective", "v")
  err = jnp.square(pred - target(x0, eps, log_snr, objective))
  mask = (jnp.ones(x0.shape[:2], jnp.float32) if frame_mask is None
          else jnp.asarray(frame_mask, jnp.float32))
  elems = mask.sum(1) * (err[0, 0].size)
  per_sample = (err.reshape(*x0.shape[:2], -1).sum(-1) * mask).sum(1) / jnp.maximum(elems, 1.0)
  weight = loss_weight(log_snr, objective, config.get("weighting", "snr+1"),
                       config.get("min_snr_gamma", 5.0))
  loss_per_sample = weight * per_sample
  return loss_per_sample.mean(), {"loss_per_sample": loss_per_sample, "t": t, "log_snr": log_snr,
                                  "weight": weight}
