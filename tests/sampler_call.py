"""`samplers.sample` called the way the tests state their cases: keyword settings, a seed."""
import numpy as np

from imagen_video.diffusion import samplers


def run_sampler(model_fn, state, cond, seed: int, *, shape, steps, sampler="ddim", guidance=1.0,
                guided=True, objective="v", thresholding="dynamic", percentile=99.5, gamma=0.0,
                noise=None, init=None, start=1.0, known=None, conditioning="reconstruction",
                recon_weight=4.0, pose_guidance=None, guidance_input=False, logsnr_min=-20.0,
                logsnr_max=20.0, resolution_shift=1.0):
  keys = samplers.seed_keys(seed + np.arange(shape[0]))
  plan = samplers.Plan(shape, steps, sampler, objective, thresholding,
                       (logsnr_min, logsnr_max, resolution_shift), guided=guided,
                       guidance_input=guidance_input,
                       conditioning=conditioning if known is not None else None)
  controls = samplers.Controls(guidance, pose_guidance, percentile, gamma, recon_weight)
  return samplers.sample(model_fn, state, cond, keys, plan, controls, known=known, init=init,
                         start=start, noise=noise)


def model_fn_of(graphdef):
  """model_fn(state, x, log_snr, cond) of an nnx network (as `Stage.model_fn` builds it)."""
  from flax import nnx

  def model_fn(state, x, log_snr, cond):
    return nnx.merge(graphdef, state)(x, log_snr, **cond)
  return model_fn
