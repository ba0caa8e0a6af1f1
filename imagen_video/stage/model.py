"""A cascade stage: Video U-Net + text encoder + diffusion settings (+ low-res input).

One class serves every stage (base, TSR, SSR): the training loss and sampling
both go through it, so stages differ only in their configs.

Config fields read here: `model` (Video U-Net, see `nn/unet.py`), `text`
(see `text/encoder.py`), `diffusion` (see `diffusion/objectives.py`), and
`stage` (conditioning: see `stage/conditioning.py`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from imagen_video.diffusion import guidance as guidance_lib
from imagen_video.diffusion import objectives, samplers
from imagen_video.nn import unet
from imagen_video.stage import conditioning
from imagen_video.text.encoder import TextEncoder

VIDEO = "video"


class Stage:
  """Builds the network for `config` and exposes pure loss / sample functions.

  Params are arguments, never captured: `loss(unet_params, text_params, batch, rng)`
  and `sample(unet_params, text_params, ...)` run under any mesh and jit.
  """

  def __init__(self, config: ml_collections.ConfigDict, *, mesh=None, rules=(),
               text_encoder: TextEncoder | None = None):
    self.config = config
    self.text = text_encoder or TextEncoder.from_config(config.text, mesh=mesh, rules=rules)
    self.model_config = config.model.copy_and_resolve_references()
    with self.model_config.unlocked():
      self.model_config.text_dim = self.text.d_model
      self.model_config.cond_channels = conditioning.cond_channels(config)
      self.model_config.use_aug_level_embedding = conditioning.uses_aug_level(config)
    self.graphdef, self.abstract_params = unet.abstract_unet(self.model_config)
    self.model_fn = _model_fn(self.model_config.to_json(), self.graphdef)

  # -- parameters --------------------------------------------------------------
  def init_params(self, key, out_shardings=None):
    return unet.init_unet(self.model_config, key, out_shardings)[1]

  # -- training ----------------------------------------------------------------
  def loss(self, unet_params, text_params, batch: dict, rng, *, train: bool = True):
    """Weighted diffusion loss of one batch (a dict of device arrays)."""
    x0 = batch[VIDEO]
    b = x0.shape[0]
    k_drop, k_cond, k_loss, k_dropout = jax.random.split(rng, 4)
    emb, mask = self.text.embed_batch(text_params, batch)
    cond = dict(text_emb=emb, text_mask=mask, frame_mask=batch.get("frame_mask"),
                is_image=batch.get("is_image"))
    if train:
      cond["drop_text"] = guidance_lib.condition_dropout(
          k_drop, b, self.config.diffusion.cond_drop_prob)
    low = batch[self.config.stage.low_res_key] if conditioning.kind(self.config) != "base" else None
    up = conditioning.low_res_input(self.config, low, x0.shape)
    cond.update(conditioning.training_inputs(self.config, up, k_cond))
    if conditioning.is_residual(self.config):
      x0 = x0 - up
    net = nnx.merge(self.graphdef, unet_params)
    dropout = train and self.model_config.dropout > 0

    def model_fn(z, log_snr):
      return net(z, log_snr, **cond, deterministic=not dropout,
                 dropout_rng=k_dropout if dropout else None)
    return objectives.diffusion_loss(model_fn, x0, k_loss, self.config.diffusion,
                                     frame_mask=batch.get("frame_mask"))

  # -- sampling ----------------------------------------------------------------
  def embed_prompts(self, text_params, prompts):
    ids, mask = self.text.tokenize(list(prompts))
    return jax.jit(self.text.apply)(text_params, ids, mask)

  def sample(self, unet_params, text_params, prompts, rng, *, shape=None, steps: int = 64,
             sampler: str = "ddim", guidance=3.0, low_res=None, aug_level=None, gamma=0.0,
             thresholding: str | None = None, percentile=99.5, text=None):
    """Videos in [-1, 1], [B, T, H, W, 3], one per prompt.

    `guidance` is a scalar or per-step array (traced: no recompiles); `low_res`
    is the previous stage's output for SR stages; `text` precomputed (emb, mask);
    `thresholding` defaults to the config's `sample.thresholding`, else 'dynamic'.
    """
    thresholding = thresholding or (self.config.get("sample") or {}).get("thresholding", "dynamic")
    emb, mask = text if text is not None else self.embed_prompts(text_params, prompts)
    b = emb.shape[0]
    shape = shape or self.output_shape(b)
    cond = dict(text_emb=emb, text_mask=mask)
    up = conditioning.low_res_input(self.config, low_res, shape)
    cond.update(conditioning.sampling_inputs(self.config, up, aug_level, jax.random.fold_in(rng, 1)))
    d = self.config.diffusion
    out = samplers.sample(self.model_fn, unet_params, cond, rng, shape=shape, steps=steps,
                          sampler=sampler, guidance=guidance, objective=d.objective,
                          thresholding=thresholding, percentile=percentile, gamma=gamma,
                          logsnr_min=d.logsnr_min, logsnr_max=d.logsnr_max,
                          resolution_shift=d.resolution_shift)
    if up is None:  # the base stage
      return out
    if conditioning.is_residual(self.config):
      out = out + up
    return jnp.clip(conditioning.back_project(self.config, out, low_res), -1.0, 1.0)

  def output_shape(self, batch: int) -> tuple[int, ...]:
    return clip_shape(self.config, batch)


def clip_shape(config, batch: int) -> tuple[int, ...]:
  """[B, T, H, W, 3] of a stage's output: whole clips. A stage trained on crops or frame
  windows (`data.frames`) is convolutional in space and time and samples the full clip."""
  b = config.data.builder
  frames = b.get("frames") or config.data.get("frames")
  return (batch, frames, b.height, b.width, 3)


_MODEL_FNS: dict = {}


def _model_fn(key: str, graphdef):
  """One model_fn per network config: the compiled sampler's cache key, so every
  Stage built from the same config reuses the same compiled sampling loop."""
  if key not in _MODEL_FNS:
    def model_fn(params, x, log_snr, cond):
      return nnx.merge(graphdef, params)(x, log_snr, **cond)
    _MODEL_FNS[key] = model_fn
  return _MODEL_FNS[key]


def param_count(tree) -> int:
  return sum(int(jnp.size(x)) for x in jax.tree.leaves(tree))
