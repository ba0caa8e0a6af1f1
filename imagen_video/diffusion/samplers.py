"""DDIM, ancestral, DPM-Solver++(2M) and stochastic N-step samplers: one step function each,
run by one jitted `lax.fori_loop`.

    model_fn(state, x, log_snr, cond) -> prediction
    out = sample(model_fn, state, cond, seed_keys(seeds), Plan(shape, steps, Sampler.DDIM),
                 Controls(guidance=3.0))

`state` is the model's nnx.State (an argument, not a closed-over constant, so one
compiled sampler serves every checkpoint and can be given shardings); `cond` is a dict
of arrays with leading batch dim B, passed to the network as keyword arguments.

What compiles is the `Plan` (shape, steps, sampler, objective, thresholding, schedule,
whether guided, how known pixels condition); the `Controls` (guidance weights,
percentile, gamma, reconstruction weight) are traced, so changing them never recompiles.

Seeds: every random draw of sample b comes from its own key `keys[b]` (`seed_keys`, the
project's one seed rule), so a sample is a function of its seed and settings only, not
of the batch it was drawn in.

Classifier-free guidance: with `guided=True` each step runs ONE forward on a 2B batch,
the first half with `cond`, the second with `drop_text=True` (the network's learned null
text), then `cfg_combine`. The weight is a [steps, B] array (from a scalar, a per-step
schedule such as `oscillating_guidance_weights`, or per step and sample). With a
`pose_guidance` weight a pose-guided model runs on 3B (text and pose weighted apart). A
guidance-distilled student (`guidance_input=True`) takes the weight as an input instead.

Time grid: t_i = start (1 - i / steps), i = 0..steps (start = 1 unless SDEdit's `init`);
the last step returns x0_hat. With lambda = log_snr / 2, d = log_snr_t - log_snr_s < 0:
  ddim        z_s = alpha_s x0_hat + sigma_s eps_hat
  ancestral   (Ho et al. 2022) mean = e^d (alpha_s / alpha_t) z_t + (1 - e^d) alpha_s x0_hat,
              var = (sigma~^2_{s|t})^(1-gamma) (sigma^2_{t|s})^gamma with
              sigma~^2_{s|t} = (1 - e^d) sigma_s^2, sigma^2_{t|s} = (1 - e^d) sigma_t^2
  dpm++2m     (Lu et al. 2022) h = lambda_s - lambda_t, z_s = (sigma_s / sigma_t) z_t -
              alpha_s expm1(-h) D, D = x0_hat first, else (1 + 1/(2r)) x0_hat - x0_prev/(2r),
              r = h_prev / h
  stochastic  (Salimans & Ho 2022, Imagen Video's distilled stages) a DDIM step to
              t - 2/N, then the forward process back up to t - 1/N
In all, eps_hat is recomputed from the thresholded x0_hat.
A learned variance (`Plan.learned_variance`: the model's output has 2C channels, DeepFloyd IF)
sets the ancestral gamma per element to (v + 1) / 2 of its second half: the same log-space
interpolation between the posterior variance and beta as diffusers' 'learned_range'; the
other samplers drop that half. Guidance combines the first half only.

Known pixels (`known` = {"x": values, "mask": 1 where known}, broadcastable to the shape),
for extension, image-to-video, interpolation and inpainting (Video Diffusion Models, 3.1):
  replacement     z's known part is replaced by a fresh draw of q(z_t | x_known) each step
  reconstruction  replacement plus reconstruction guidance on the unknown part:
                  x0_hat^a -= (w_r alpha_t / 2) grad_{z^a} ||x^b - x0_hat^b(z_t)||^2
Either way the known values are pasted into the final sample.
"""
from __future__ import annotations

import dataclasses
import enum
import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from imagen_video.diffusion.guidance import apply_threshold, cfg_combine, pose_text_combine
from imagen_video.diffusion.objectives import _bcast, eps_from_x0, pred_to_x0_eps
from imagen_video.diffusion.schedule import alpha_sigma, from_spec


class Sampler(str, enum.Enum):
  DDIM = "ddim"
  ANCESTRAL = "ancestral"
  DPM2M = "dpm++2m"
  STOCHASTIC = "stochastic"

  @classmethod
  def parse(cls, value) -> "Sampler":
    try:
      return cls(value)
    except ValueError:
      raise ValueError(f"sampler {value!r}: expected one of {SAMPLERS}") from None


SAMPLERS = tuple(s.value for s in Sampler)
CONDITIONING = ("replacement", "reconstruction")
MAX_SEED = 2 ** 31 - 1


def seed_keys(seeds, *path) -> jax.Array:
  """The one seed rule: sample b's key is key(seeds[b]) folded with `path` (e.g. the
  cascade stage, the extension window). [B] typed keys."""
  seeds = jnp.asarray(seeds, jnp.uint32).reshape(-1)

  def one(seed):
    key = jax.random.key(seed)
    for p in path:
      key = jax.random.fold_in(key, p)
    return key
  return jax.vmap(one)(seeds)


def per_sample_normal(keys, shape, *salts, dtype=jnp.float32) -> jax.Array:
  """[B, *shape[1:]] standard normal, row b drawn from keys[b] folded with `salts`."""
  def one(key):
    for s in salts:
      key = jax.random.fold_in(key, s)
    return jax.random.normal(key, tuple(shape[1:]), dtype)
  return jax.vmap(one)(keys)


@dataclasses.dataclass(frozen=True)
class Plan:
  """What a sampler compiles for (static)."""
  shape: tuple[int, ...]
  steps: int
  sampler: Sampler = Sampler.DDIM
  objective: str = "v"
  thresholding: str = "dynamic"
  schedule: tuple = (-20.0, 20.0, 1.0)  # schedule.spec_from_config: cosine (min, max, shift) | ddpm
  guided: bool = True           # False: no unconditional half (w = 1, or unconditional models)
  guidance_input: bool = False  # a guidance-distilled student takes w as an input
  conditioning: str | None = None  # how `known` conditions: replacement | reconstruction
  learned_variance: bool = False  # the output's second half interpolates the ancestral variance

  def __post_init__(self):
    object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
    object.__setattr__(self, "sampler", Sampler.parse(self.sampler))
    object.__setattr__(self, "schedule", tuple(v if isinstance(v, str) else float(v) for v in self.schedule))
    if int(self.steps) < 1:
      raise ValueError(f"steps={self.steps}: expected at least 1")
    object.__setattr__(self, "steps", int(self.steps))
    if self.conditioning not in (None,) + CONDITIONING:
      raise ValueError(f"conditioning must be one of {CONDITIONING}, got {self.conditioning!r}")


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Controls:
  """Traced sampler settings: changing them never recompiles."""
  guidance: Any = 1.0        # scalar, [steps] or [steps, B]
  pose_guidance: Any = None  # None, or like `guidance` (pose-guided models: 3 forwards)
  percentile: Any = 99.5     # dynamic thresholding
  gamma: Any = 0.0           # ancestral variance interpolation in [0, 1]
  recon_weight: Any = 0.0    # reconstruction guidance w_r
  threshold_max: Any = float("inf")  # dynamic thresholding's largest s (DeepFloyd IF: 1.5 / 1.0)

  def per_step(self, steps: int, batch: int) -> "Controls":
    w = lambda x: jnp.broadcast_to(_rows(x), (steps, batch))
    return Controls(w(self.guidance), None if self.pose_guidance is None else w(self.pose_guidance),
                    jnp.float32(self.percentile), jnp.float32(self.gamma),
                    jnp.float32(self.recon_weight), jnp.float32(self.threshold_max))


def _rows(x):
  x = jnp.asarray(x, jnp.float32)
  return x[:, None] if x.ndim == 1 else x


def guided_forward(model_fn, state, z, log_snr, cond, weight, pose_weight=None, variance_channels=0):
  """Classifier-free guidance in one forward: text only on a 2B batch (cond, null text), or
  with `pose_weight` text and pose separately on 3B (cond, null text, null text and pose).
  The last `variance_channels` (a learned variance) are the conditional prediction's, unguided."""
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
    out = cfg_combine(pred[:b], pred[b:], weight)
  else:
    out = pose_text_combine(pred[:b], pred[b:2 * b], pred[2 * b:], weight, pose_weight)
  if variance_channels:
    out = jnp.concatenate([out[..., :-variance_channels], pred[:b, ..., -variance_channels:]], axis=-1)
  return out


# -- one step function per sampler: (z_t, x0_hat, times, previous step, noise) -> z_s ----------
class Times(NamedTuple):
  i: jax.Array
  ls_t: jax.Array  # [B] log-SNR now
  ls_s: jax.Array  # [B] at the next time
  ls_u: jax.Array  # [B] at the time after (stochastic)
  gamma: jax.Array


def _ddim(z, x0, t: Times, prev, noise):
  alpha_s, sigma_s = alpha_sigma(t.ls_s)
  return _bcast(alpha_s, z) * x0 + _bcast(sigma_s, z) * eps_from_x0(z, x0, t.ls_t)


def _dpm2m(z, x0, t: Times, prev, noise):
  x0_prev, h_prev = prev
  (_, sigma_t), (alpha_s, sigma_s) = alpha_sigma(t.ls_t), alpha_sigma(t.ls_s)
  h = (t.ls_s - t.ls_t) / 2
  half_over_r = _bcast(jnp.where(t.i > 0, h / (2 * h_prev), 0.0), z)
  d = (1 + half_over_r) * x0 - half_over_r * x0_prev
  return _bcast(sigma_s / sigma_t, z) * z - _bcast(alpha_s * jnp.expm1(-h), z) * d


def _stochastic(z, x0, t: Times, prev, noise):
  (alpha_s, sigma_s), (alpha_u, sigma_u) = alpha_sigma(t.ls_s), alpha_sigma(t.ls_u)
  z_u = _bcast(alpha_u, z) * x0 + _bcast(sigma_u, z) * eps_from_x0(z, x0, t.ls_t)
  a = alpha_s / alpha_u
  std = jnp.sqrt(jnp.maximum(sigma_s ** 2 - (a * sigma_u) ** 2, 0.0))
  return _bcast(a, z) * z_u + _bcast(std, z) * noise()


def _ancestral(z, x0, t: Times, prev, noise):
  (alpha_t, sigma_t), (alpha_s, sigma_s) = alpha_sigma(t.ls_t), alpha_sigma(t.ls_s)
  d = t.ls_t - t.ls_s
  one_minus = -jnp.expm1(d)
  mean = _bcast(jnp.exp(d) * alpha_s / alpha_t, z) * z + _bcast(one_minus * alpha_s, z) * x0
  # gamma: a scalar, or per element (a learned variance: diffusers' 'learned_range')
  log_var = (_bcast(jnp.log(one_minus), z) + (1 - t.gamma) * _bcast(2 * jnp.log(sigma_s), z)
             + t.gamma * _bcast(2 * jnp.log(sigma_t), z))
  return mean + jnp.exp(0.5 * log_var) * noise()


STEP: dict[Sampler, Callable] = {Sampler.DDIM: _ddim, Sampler.ANCESTRAL: _ancestral,
                                 Sampler.DPM2M: _dpm2m, Sampler.STOCHASTIC: _stochastic}


@functools.partial(jax.jit, static_argnames=("model_fn", "plan"))
def _sample_loop(state, cond, keys, controls: Controls, known, init, start, noise, *,
                 model_fn, plan: Plan):
  sched = from_spec(plan.schedule)
  shape, steps = plan.shape, plan.steps
  b = shape[0]
  z0 = per_sample_normal(keys, shape, 0) if noise is None else noise.astype(jnp.float32)
  if init is not None:  # SDEdit: z at t = start drawn from q(z_start | init)
    a0, s0 = alpha_sigma(sched(start))
    z0 = a0 * init + s0 * z0
  time = lambda i: start * jnp.maximum(1.0 - i / steps, 0.0)
  c = controls

  tail = shape[-1] if plan.learned_variance else 0

  def predict_x0(z, ls_t, i):
    """(x0_hat, the ancestral gamma: c.gamma, or (v + 1) / 2 of a learned variance v)."""
    if plan.guidance_input:
      pred = model_fn(state, z, ls_t, dict(cond, guidance_weight=c.guidance[i])).astype(jnp.float32)
    elif plan.guided or c.pose_guidance is not None:
      pred = guided_forward(model_fn, state, z, ls_t, cond, c.guidance[i],
                            None if c.pose_guidance is None else c.pose_guidance[i], tail)
    else:
      pred = model_fn(state, z, ls_t, cond).astype(jnp.float32)
    gamma = c.gamma
    if tail:
      pred, gamma = pred[..., :tail], (pred[..., tail:] + 1) / 2
    return pred_to_x0_eps(pred, z, ls_t, plan.objective)[0], gamma

  def body(i, carry):
    z, x0_prev, h_prev = carry
    times = Times(i, *(jnp.full((b,), sched(time(i + k))) for k in range(3)), c.gamma)
    if plan.conditioning is None:
      x0, gamma = predict_x0(z, times.ls_t, i)
    else:
      mask = known["mask"]
      alpha, sigma = alpha_sigma(times.ls_t)
      z_known = _bcast(alpha, z) * known["x"] + _bcast(sigma, z) * per_sample_normal(keys, shape, 2, i)
      z = mask * z_known + (1 - mask) * z
      if plan.conditioning == "replacement":
        x0, gamma = predict_x0(z, times.ls_t, i)
      else:
        x0, pullback, gamma = jax.vjp(lambda z: predict_x0(z, times.ls_t, i), z, has_aux=True)
        grad = pullback(2 * mask * (x0 - known["x"]))[0]
        x0 = x0 - (1 - mask) * _bcast(c.recon_weight * alpha / 2, z) * grad
    x0 = apply_threshold(x0, plan.thresholding, c.percentile, c.threshold_max)
    z_s = STEP[plan.sampler](z, x0, times._replace(gamma=gamma), (x0_prev, h_prev),
                             lambda: per_sample_normal(keys, shape, 1, i))
    h = (times.ls_s - times.ls_t) / 2
    return jnp.where(i == steps - 1, x0, z_s), x0, h

  carry = (z0, jnp.zeros(shape, jnp.float32), jnp.ones((b,), jnp.float32))
  out = jax.lax.fori_loop(0, steps, body, carry)[0]
  if plan.conditioning is not None:
    out = known["mask"] * known["x"] + (1 - known["mask"]) * out
  return out


def sdedit_steps(steps: int, start: float) -> int:
  """Steps for re-denoising from time `start`: the share of a `steps`-step run from pure
  noise that lies below `start`, so a refresh costs what that part of a full sample does."""
  return max(1, round(steps * float(start)))


def sample(model_fn: Callable, state, cond: dict, keys, plan: Plan, controls: Controls = Controls(),
           *, known: dict | None = None, init=None, start: float = 1.0, noise=None):
  """Samples of `plan.shape` ([B, T, H, W, C]) from pure noise (or `noise`), or SDEdit from
  `init` noised to time `start` < 1. `keys`: [B] keys from `seed_keys`. `known` = {"x": values
  in the diffused space, "mask": 1 = known}, broadcastable to the shape, with
  `plan.conditioning` set."""
  return _sample_loop(*_loop_args(state, cond, keys, plan, controls, known, init, start, noise),
                      model_fn=model_fn, plan=plan)


def compiled(model_fn: Callable, state, cond: dict, keys, plan: Plan, controls: Controls = Controls(),
             *, known: dict | None = None, init=None, start: float = 1.0, noise=None):
  """The executable `sample` runs for these arguments (`jax.stages.Compiled`: its cost analysis
  gives the FLOPs). JAX caches it: a later `sample` with the same shapes compiles nothing."""
  args = _loop_args(state, cond, keys, plan, controls, known, init, start, noise)
  return _sample_loop.lower(*args, model_fn=model_fn, plan=plan).compile()


def _loop_args(state, cond, keys, plan, controls, known, init, start, noise) -> tuple:
  """`_sample_loop`'s traced arguments, checked and broadcast."""
  shape = plan.shape
  keys = jnp.asarray(keys)
  if keys.shape != (shape[0],):
    raise ValueError(f"keys {keys.shape}: expected one key per sample, ({shape[0]},) (seed_keys)")
  if (known is None) != (plan.conditioning is None):
    raise ValueError("known pixels and plan.conditioning go together")
  if known is not None:
    known = {"x": jnp.broadcast_to(jnp.asarray(known["x"], jnp.float32), shape),
             "mask": jnp.broadcast_to(jnp.asarray(known["mask"], jnp.float32), shape)}
  if not 0.0 < float(start) <= 1.0 or (init is None and float(start) != 1.0):
    raise ValueError(f"start={start}: expected a time in (0, 1], below 1 only with an init to noise")
  if controls.pose_guidance is not None and "pose_maps" not in cond:
    raise ValueError("pose_guidance needs a pose-guided model's cond['pose_maps']")
  if init is not None:
    init = jnp.broadcast_to(jnp.asarray(init, jnp.float32), shape)
  return (state, dict(cond), keys, controls.per_step(plan.steps, shape[0]), known, init,
          jnp.float32(start), noise)
