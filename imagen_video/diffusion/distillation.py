"""Distillation losses: guidance distillation and progressive (step-halving) distillation.

Both compare x0-predictions, weighted per sample by lambda(SNR) (`objectives.loss_weight`
with the x0 objective; 'truncated_snr' = max(1, alpha^2 / sigma^2) as Salimans & Ho 2022).

    student_fn(z, log_snr, w) -> prediction      (the objective's: v / eps / x0)
    teacher_fn(z, log_snr, w) -> prediction      (already guided by w, or w ignored)

Guidance distillation (Meng et al. 2023): w ~ U[w_min, w_max] per sample, t continuous;
the student, given w as an input, matches the teacher's classifier-free-guided prediction.

Progressive distillation (Salimans & Ho 2022): a student with N steps learns to do in one
DDIM step what the teacher does in two. On the sampler's grid (t_i = 1 - i / N), the
student step t -> t'' = t - 1/N replaces the teacher's t -> t' = t - 1/(2N) -> t''. With
z'' the teacher's result, the student's x0 target solves z'' = DDIM(z_t, x~; t -> t''):
    x~ = (z'' - (sigma''/sigma) z_t) / (alpha'' - (sigma''/sigma) alpha_t)
       = (sigma z'' - sigma'' z_t) / (alpha'' sigma - sigma'' alpha_t)
(the denominator is > 0 since SNR'' > SNR). At the last step (t'' = 0) the sampler returns
x0_hat itself, so the target is the teacher's x0 at t'. The teacher's x0 is thresholded as
in the sampler, so the student reproduces the teacher's sampler as it is run.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from imagen_video.diffusion.guidance import apply_threshold
from imagen_video.diffusion.objectives import _bcast, eps_from_x0, loss_weight, pred_to_x0_eps
from imagen_video.diffusion.schedule import alpha_sigma, schedule_from_config


def ddim_step(z, x0, log_snr_t, log_snr_s):
  """z_s = alpha_s x0 + sigma_s eps_hat, eps_hat from (z_t, x0) (the sampler's DDIM step)."""
  alpha_s, sigma_s = alpha_sigma(log_snr_s)
  return _bcast(alpha_s, z) * x0 + _bcast(sigma_s, z) * eps_from_x0(z, x0, log_snr_t)


def halving_target(teacher_x0, z, log_snr_t, log_snr_mid, log_snr_end, final):
  """x0 target of the student's one step t -> t'' from the teacher's two DDIM steps.

  teacher_x0(z, log_snr) -> thresholded x0; log_snrs [B]; final [B] bool (t'' = 0)."""
  x_a = teacher_x0(z, log_snr_t)
  z_mid = ddim_step(z, x_a, log_snr_t, log_snr_mid)
  x_b = teacher_x0(z_mid, log_snr_mid)
  z_end = ddim_step(z_mid, x_b, log_snr_mid, log_snr_end)
  (alpha, sigma), (alpha_e, sigma_e) = alpha_sigma(log_snr_t), alpha_sigma(log_snr_end)
  num = _bcast(sigma, z) * z_end - _bcast(sigma_e, z) * z
  x_tilde = num / _bcast(alpha_e * sigma - sigma_e * alpha, z)
  return jnp.where(_bcast(final, z), x_b, x_tilde)


def student_grid(rng, batch: int, steps: int):
  """(t, t', t'', final) [B] on the student's grid of `steps`: t = 1 - i/steps, i uniform
  (as the sampler computes it), t'' = 0 exactly at the last step (final)."""
  i = jax.random.randint(rng, (batch,), 0, steps)
  return 1.0 - i / steps, 1.0 - (2 * i + 1) / (2 * steps), 1.0 - (i + 1) / steps, i == steps - 1


def masked_x0_loss(x0_hat, target, weight, frame_mask=None):
  """(mean loss, per-sample loss): weight * per-sample mean over real frames of the sq. error."""
  err = jnp.square(x0_hat.astype(jnp.float32) - jax.lax.stop_gradient(target))
  mask = (jnp.ones(err.shape[:2], jnp.float32) if frame_mask is None
          else jnp.asarray(frame_mask, jnp.float32))
  elems = mask.sum(1) * err[0, 0].size
  per_sample = (err.reshape(*err.shape[:2], -1).sum(-1) * mask).sum(1) / jnp.maximum(elems, 1.0)
  per_sample = weight * per_sample
  return per_sample.mean(), per_sample


def distill_loss(student_fn, teacher_fn, x0, rng, diffusion, distill, *, thresholding="none",
                 percentile=99.5, frame_mask=None):
  """One Monte-Carlo estimate of the distillation loss; returns (loss, aux).

  diffusion: `config.diffusion` (objective, schedule); distill: `config.distill` (phase
  'guidance' | 'halving', steps, guidance_min, guidance_max, weighting)."""
  b = x0.shape[0]
  k_t, k_eps, k_w = jax.random.split(rng, 3)
  schedule = schedule_from_config(diffusion)
  objective = diffusion.get("objective", "v")
  w = jax.random.uniform(k_w, (b,), minval=distill.guidance_min, maxval=distill.guidance_max)
  if distill.phase == "guidance":  # continuous t, stratified over the batch as in training
    t = jnp.mod(jax.random.uniform(k_t, ()) + jnp.arange(b) / b, 1.0)
  elif distill.phase == "halving":
    t, t_mid, t_end, final = student_grid(k_t, b, int(distill.steps))
  else:
    raise ValueError(f"config.distill.phase={distill.phase!r}: expected 'guidance' or 'halving'")
  log_snr = schedule(t)
  alpha, sigma = alpha_sigma(log_snr)
  z = _bcast(alpha, x0) * x0 + _bcast(sigma, x0) * jax.random.normal(k_eps, x0.shape, jnp.float32)

  def teacher_x0(zz, ls, threshold=True):
    pred = jax.lax.stop_gradient(teacher_fn(zz, ls, w).astype(jnp.float32))
    x = pred_to_x0_eps(pred, zz, ls, objective)[0]
    return apply_threshold(x, thresholding, percentile) if threshold else x

  if distill.phase == "guidance":  # the sampler thresholds the student's x0 as the teacher's
    target = teacher_x0(z, log_snr, threshold=False)
  else:
    target = halving_target(teacher_x0, z, log_snr, schedule(t_mid), schedule(t_end), final)
  x0_hat = pred_to_x0_eps(student_fn(z, log_snr, w).astype(jnp.float32), z, log_snr, objective)[0]
  weight = loss_weight(log_snr, "x0", distill.get("weighting", "truncated_snr"))
  loss, per_sample = masked_x0_loss(x0_hat, target, weight, frame_mask)
  return loss, {"loss_per_sample": per_sample, "t": t, "log_snr": log_snr, "weight": weight,
                "guidance_weight": w}
