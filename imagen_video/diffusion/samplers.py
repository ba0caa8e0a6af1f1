"""DDIM, ancestral, DPM-Solver++(2M) and stochastic N-step samplers, each one jitted function around a `lax.fori_loop`.

    model_fn(state, x, log_snr, cond) -> prediction

`state` is the model's nnx.State (an argument, not a closed-over constant, so
one compiled sampler serves every checkpoint and can be given shardings);
`cond` is a dict of arrays with leading batch dim B, passed to the network as
keyword arguments (text_emb, text_mask, frame_mask, is_image, cond_video,
aug_level, ...). `nnx_model_fn(graphdef)` builds model_fn for a VideoUNet.

Classifier-free guidance: with `guided=True` each step runs ONE forward on a
2B batch, the first half with `cond`, the second with `drop_text=True` (the
network's learned null text), then `cfg_combine`. The guidance weight is a
traced [steps, B] array (from a scalar, a per-step schedule such as
`oscillating_guidance_weights`, or per step and sample), so changing it never
recompiles (`Stage.sample` runs a constant weight of 1 unguided: one more compile, half
the batch). Static (recompiling) choices: shape, steps, sampler, objective,
thresholding mode, schedule constants, guided, guidance_input, and whether a pose
guidance weight is given (then 3B: the pose-guided model's text and pose weighted apart).

A guidance-distilled student (`guidance_input=True`) takes the weight as an
input instead: one forward on B with cond["guidance_weight"] = the step's [B] weights.

Time grid: t_i = start (1 - i / steps), i = 0..steps (start = 1 unless SDEdit's `init`);
the last step returns x0_hat.

Ancestral step t -> s (Video Diffusion Models, Ho et al. 2022), with
d = log_snr_t - log_snr_s < 0:
  mean = e^d (alpha_s / alpha_t) z_t + (1 - e^d) alpha_s x0_hat
  var  = (sigma~^2_{s|t})^(1-gamma) (sigma^2_{t|s})^gamma, where
         sigma~^2_{s|t} = (1 - e^d) sigma_s^2   (posterior variance, lower bound)
         sigma^2_{t|s}  = (1 - e^d) sigma_t^2   (forward-process variance, upper bound)
  so gamma = 0 is standard DDPM, gamma = 1 the upper bound (gamma is traced).
DDIM step: z_s = alpha_s x0_hat + sigma_s eps_hat.
DPM-Solver++(2M) (Lu et al. 2022), with lambda = log_snr / 2 and h = lambda_s - lambda_t:
  z_s = (sigma_s / sigma_t) z_t - alpha_s expm1(-h) D, D = x0_hat on the first step, else
  (1 + 1/(2r)) x0_hat - 1/(2r) x0_hat_prev with r = h_prev / h (second order, multistep).
Stochastic N-step sampler (Salimans & Ho 2022, used by Imagen Video's distilled stages):
  a DDIM step from t to t - 2/N, then the forward process back up to t - 1/N
  (z_s = (alpha_s / alpha_u) z_u + sqrt(sigma_s^2 - (alpha_s / alpha_u)^2 sigma_u^2) noise).
In all, eps_hat is recomputed from the thresholded x0_hat.

Known pixels (`known` = {"x": values, "mask": 1 where known}, broadcastable to the
shape; static `conditioning`), for extension, image-to-video, interpolation and
inpainting (Video Diffusion Models, Ho et al. 2022, section 3.1):
  'replacement'     z's known part is replaced by a fresh draw of q(z_t | x_known)
                    before each step; the unknown part is only conditioned through
                    the network's view of it (the baseline: known and generated parts
                    can disagree);
  'reconstruction'  replacement, plus reconstruction guidance on the unknown part:
                    x0_hat^a -= (w_r alpha_t / 2) grad_{z^a} ||x^b - x0_hat^b(z_t)||^2,
                    one extra backward pass per step (w_r = `recon_weight`, traced).
Either way the known values are pasted into the final sample.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from imagen_video.diffusion.guidance import apply_threshold, cfg_combine, pose_text_combine
from imagen_video.diffusion.objectives import _bcast, eps_from_x0, pred_to_x0_eps
from imagen_video.diffusion.schedule import alpha_sigma, logsnr_schedule_cosine

SAMPLERS = ("ddim", "ancestral", "dpm++2m", "stochastic")
CONDITIONING = ("replacement", "reconstruction")


@functools.lru_cache(maxsize=64)
def nnx_model_fn(graphdef) -> Callable:
  """model_fn for an nnx module (cached per graphdef so the jitted sampler is reused)."""
  def model_fn(state, x, log_snr, cond):
    return nnx.merge(graphdef, state)(x, log_snr, **cond)
  return model_fn


def guided_forward(model_fn, state, z, log_snr, cond, weight, pose_weight=None):
  """Classifier-free guidance in one forward: text only on a 2B batch (cond, null text), or
  with `pose_weight` text and pose separately on 3B (cond, null text, null text and pose)."""
  b = z.shape[0]
  n = 2 if pose_weight is None else 3
  rep = lambda a: jnp.concatenate([a] * n, axis=0)
  cond_n = jax.tree.map(rep, cond)
  yes = jnp.ones((b,), bool)
  own = cond.get("drop_text", jnp.zeros((b,), bool))
  cond_n["drop_text"] = jnp.concatenate([own] + [yes] * (n - 1))
  if pose_weight is not None:
    own_pose = cond.get("drop_pose", jnp.zeros((b,), bool))
    cond_n["drop_pose"] = jnp.concatenate([own_pose, own_pose, yes])
  pred = model_fn(state, rep(z), rep(log_snr), cond_n).astype(jnp.float32)
  if pose_weight is None:
    return cfg_combine(pred[:b], pred[b:], weight)
  return pose_text_combine(pred[:b], pred[b:2 * b], pred[2 * b:], weight, pose_weight)


@functools.partial(jax.jit, static_argnames=("model_fn", "shape", "steps", "sampler", "objective",
                                             "thresholding", "schedule", "guided",
                                             "guidance_input", "conditioning"))
def _sample_loop(model_fn, state, cond, rng, noise, guidance, percentile, gamma, known, recon_weight,
                 pose_guidance=None, init=None, start=1.0, *, shape, steps, sampler, objective,
                 thresholding, schedule, guided, guidance_input=False, conditioning=None):
  sched = lambda t: logsnr_schedule_cosine(t, *schedule)
  b = shape[0]
  z0 = jax.random.normal(rng, shape, jnp.float32) if noise is None else noise.astype(jnp.float32)
  if init is not None:  # SDEdit: z at t = start drawn from q(z_start | init)
    a0, s0 = alpha_sigma(sched(start))
    z0 = a0 * init + s0 * z0
  time = lambda i: start * jnp.maximum(1.0 - i / steps, 0.0)

  def body(i, carry):
    z, key, x0_prev, h_prev = carry
    key, k_noise = jax.random.split(key)
    ls_t = jnp.full((b,), sched(time(i)))
    ls_s = jnp.full((b,), sched(time(i + 1)))

    def predict_x0(z):
      if guidance_input:
        pred = model_fn(state, z, ls_t, dict(cond, guidance_weight=guidance[i])).astype(jnp.float32)
      elif guided or pose_guidance is not None:
        pred = guided_forward(model_fn, state, z, ls_t, cond, guidance[i],
                               None if pose_guidance is None else pose_guidance[i])
      else:
        pred = model_fn(state, z, ls_t, cond).astype(jnp.float32)
      return pred_to_x0_eps(pred, z, ls_t, objective)[0]

    if conditioning is None:
      x0 = predict_x0(z)
    else:
      mask = known["mask"]
      alpha, sigma = alpha_sigma(ls_t)
      z_known = _bcast(alpha, z) * known["x"] + _bcast(sigma, z) * jax.random.normal(
          jax.random.fold_in(k_noise, 1), z.shape)
      z = mask * z_known + (1 - mask) * z
      if conditioning == "replacement":
        x0 = predict_x0(z)
      else:
        x0, pullback = jax.vjp(predict_x0, z)
        grad = pullback(2 * mask * (x0 - known["x"]))[0]
        x0 = x0 - (1 - mask) * _bcast(recon_weight * alpha / 2, z) * grad
    x0 = apply_threshold(x0, thresholding, percentile)
    (alpha_t, sigma_t), (alpha_s, sigma_s) = alpha_sigma(ls_t), alpha_sigma(ls_s)
    h = (ls_s - ls_t) / 2
    if sampler == "ddim":
      eps = eps_from_x0(z, x0, ls_t)
      z_s = _bcast(alpha_s, z) * x0 + _bcast(sigma_s, z) * eps
    elif sampler == "dpm++2m":
      half_over_r = _bcast(jnp.where(i > 0, h / (2 * h_prev), 0.0), z)
      d = (1 + half_over_r) * x0 - half_over_r * x0_prev
      z_s = _bcast(sigma_s / sigma_t, z) * z - _bcast(alpha_s * jnp.expm1(-h), z) * d
    elif sampler == "stochastic":
      ls_u = jnp.full((b,), sched(time(i + 2)))
      alpha_u, sigma_u = alpha_sigma(ls_u)
      z_u = _bcast(alpha_u, z) * x0 + _bcast(sigma_u, z) * eps_from_x0(z, x0, ls_t)
      a = alpha_s / alpha_u
      std = jnp.sqrt(jnp.maximum(sigma_s ** 2 - (a * sigma_u) ** 2, 0.0))
      z_s = _bcast(a, z) * z_u + _bcast(std, z) * jax.random.normal(k_noise, z.shape, z.dtype)
    else:
      d = ls_t - ls_s
      one_minus = -jnp.expm1(d)
      mean = _bcast(jnp.exp(d) * alpha_s / alpha_t, z) * z + _bcast(one_minus * alpha_s, z) * x0
      log_var = (jnp.log(one_minus) + (1 - gamma) * 2 * jnp.log(sigma_s) + gamma * 2 * jnp.log(sigma_t))
      z_s = mean + _bcast(jnp.exp(0.5 * log_var), z) * jax.random.normal(k_noise, z.shape, z.dtype)
    return jnp.where(i == steps - 1, x0, z_s), key, x0, h

  init = (z0, rng, jnp.zeros(shape, jnp.float32), jnp.ones((b,), jnp.float32))
  out = jax.lax.fori_loop(0, steps, body, init)[0]
  if conditioning is not None:
    out = known["mask"] * known["x"] + (1 - known["mask"]) * out
  return out


def sdedit_steps(steps: int, start: float) -> int:
  """Steps for re-denoising from time `start`: the share of a `steps`-step run from pure
  noise that lies below `start`, so a refresh costs what that part of a full sample does."""
  return max(1, round(steps * float(start)))


def sample(model_fn: Callable, state, cond: dict, rng, *, shape, steps: int, sampler: str = "ddim",
           guidance=1.0, guided: bool = True, objective: str = "v", thresholding: str = "dynamic",
           percentile=99.5, gamma=0.0, logsnr_min: float = -20.0, logsnr_max: float = 20.0,
           resolution_shift: float = 1.0, noise=None, guidance_input: bool = False,
           known: dict | None = None, conditioning: str = "reconstruction", recon_weight=4.0,
           pose_guidance=None, init=None, start=1.0):
  """Draws samples of `shape` ([B, T, H, W, C]) from pure noise (or from `noise`).

  guidance: scalar, [steps] (per-step schedule) or [steps, B]; always traced.
  guided=False: no unconditional half (unguided or unconditional models).
  guidance_input=True: a guidance-distilled model gets the weight as cond["guidance_weight"].
  thresholding: 'dynamic' (percentile, traced) | 'static' (clip to [-1, 1]) | 'none'.
  gamma: ancestral variance interpolation in [0, 1] (traced); used by 'ancestral' only.
  known: {"x": [B, T, H, W, C] values in the diffused space, "mask": 1 = known, broadcastable
    to the shape} conditions the sample on them by `conditioning` (see the module doc).
  pose_guidance: None, or a pose guidance weight shaped like `guidance` for a pose-guided
    model (cond has pose_maps): three forwards per step, text and pose weighted apart
    (`guidance.pose_text_combine`).
  """
  if sampler not in SAMPLERS:
    raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
  shape = tuple(int(s) for s in shape)
  if known is not None:
    if conditioning not in CONDITIONING:
      raise ValueError(f"conditioning must be one of {CONDITIONING}, got {conditioning!r}")
    known = {"x": jnp.broadcast_to(jnp.asarray(known["x"], jnp.float32), shape),
             "mask": jnp.broadcast_to(jnp.asarray(known["mask"], jnp.float32), shape)}
  if not 0.0 < float(start) <= 1.0 or (init is None and float(start) != 1.0):
    raise ValueError(f"start={start}: expected a time in (0, 1], below 1 only with an init to noise")
  if pose_guidance is not None and "pose_maps" not in cond:
    raise ValueError("pose_guidance needs a pose-guided model's cond['pose_maps']")
  w = _per_step(guidance, steps, shape[0])
  pose_w = None if pose_guidance is None else _per_step(pose_guidance, steps, shape[0])
  return _sample_loop(model_fn, state, dict(cond), rng, noise, w, jnp.float32(percentile),
                      jnp.float32(gamma), known, jnp.float32(recon_weight), pose_w,
                      None if init is None else jnp.broadcast_to(jnp.asarray(init, jnp.float32), shape),
                      jnp.float32(start), shape=shape, steps=int(steps),
                      sampler=sampler,
                      objective=objective, thresholding=thresholding,
                      schedule=(float(logsnr_min), float(logsnr_max), float(resolution_shift)),
                      guided=guided, guidance_input=guidance_input,
                      conditioning=None if known is None else conditioning)


def _per_step(weight, steps: int, batch: int):
  """A scalar, [steps] or [steps, B] weight as [steps, B]: one shape for every kind, no recompiles."""
  w = jnp.asarray(weight, jnp.float32)
  if w.ndim == 1:
    w = w[:, None]
  return jnp.broadcast_to(w, (steps, batch))
