"""A cascade stage: Video U-Net + text encoder + diffusion settings (+ low-res input).

One class serves every stage (base, TSR, SSR): the training loss and sampling
both go through it, so stages differ only in their configs.

Config fields read here: `model` (Video U-Net, see `nn/unet.py`), `text`
(see `text/encoder.py`), `diffusion` (see `diffusion/objectives.py`), and
`stage` (conditioning: see `stage/conditioning.py`), and `distill` when present (a
student distilled from a frozen teacher: see `diffusion/distillation.py`):
  teacher         teacher workdir (its EMA params reach `loss` as `teacher_params`)
  phase           'guidance' (student takes w; teacher is guided by two forwards) | 'halving'
                  (student does in 1 DDIM step what the teacher does in 2)
  steps           the student's sampling steps (halving: its time grid)
  guidance_min, guidance_max  range of the guidance weight w drawn per example
  weighting       lambda(SNR) on the x0 error ('truncated_snr': max(1, SNR))
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from imagen_video.data import batch as batch_keys
from imagen_video.diffusion import guidance as guidance_lib
from imagen_video.diffusion import distillation, objectives, samplers
from imagen_video.nn import unet
from imagen_video.stage import conditioning as conditioning_lib
from imagen_video.text.encoder import TextEncoder



class Stage:
  """Builds the network for `config` and exposes pure loss / sample functions.

  Params are arguments, never captured: `loss(unet_params, text_params, batch, rng)`
  and `sample(unet_params, text_params, ...)` run under any mesh and jit.
  """

  def __init__(self, config: ml_collections.ConfigDict, *, mesh=None, rules=(),
               text_encoder: TextEncoder | None = None):
    self.config = config
    self.text = text_encoder or TextEncoder.from_config(config.text, mesh=mesh, rules=rules)
    self.model_config = network_config(config, self.text.d_model)
    self.graphdef, self.abstract_params = unet.abstract_unet(self.model_config)
    self.model_fn = _model_fn(self.model_config.to_json(), self.graphdef)
    # A guidance-distilled student takes the guidance weight as an input (no uncond half).
    self.guidance_input = bool(self.model_config.get("use_guidance_embedding", False))
    if config.get("distill"):
      self.teacher_config = self.model_config.copy_and_resolve_references()
      with self.teacher_config.unlocked():  # the guidance phase's teacher has no w input
        self.teacher_config.use_guidance_embedding = (
            self.guidance_input and config.distill.phase != "guidance")
      self.teacher_graphdef, self.teacher_abstract_params = unet.abstract_unet(self.teacher_config)

  # -- parameters --------------------------------------------------------------
  def init_params(self, key, out_shardings=None):
    return unet.init_unet(self.model_config, key, out_shardings)[1]

  # -- training ----------------------------------------------------------------
  def loss(self, unet_params, text_params, batch: dict, rng, *, train: bool = True,
           teacher_params=None):
    """Weighted diffusion loss of one batch (a dict of device arrays); with `config.distill`
    the distillation loss against the frozen teacher (`teacher_params`)."""
    if self.config.get("distill"):
      return self.distill_loss(unet_params, teacher_params, text_params, batch, rng, train=train)
    x0 = batch[batch_keys.VIDEO]
    b = x0.shape[0]
    k_drop, k_cond, k_loss, k_dropout = jax.random.split(rng, 4)
    x0, cond = self._train_inputs(text_params, batch, k_cond)
    if train:
      cond["drop_text"] = guidance_lib.condition_dropout(
          k_drop, b, self.config.diffusion.cond_drop_prob)
      if "pose_maps" in cond:  # pose dropout: the pose-free prediction for pose guidance
        cond["drop_pose"] = guidance_lib.condition_dropout(
            jax.random.fold_in(k_drop, 1), b, self.config.diffusion.get("pose_drop_prob", 0.1))
    net = nnx.merge(self.graphdef, unet_params)
    dropout = train and self.model_config.dropout > 0

    def model_fn(z, log_snr):
      return net(z, log_snr, **cond, deterministic=not dropout,
                 dropout_rng=k_dropout if dropout else None)
    return objectives.diffusion_loss(model_fn, x0, k_loss, self.config.diffusion,
                                     frame_mask=batch.get("frame_mask"))

  def _train_inputs(self, text_params, batch, k_cond):
    """(x0 to diffuse, network conditioning) of a training batch."""
    x0 = batch[batch_keys.VIDEO]
    emb, mask = self.text.embed_batch(text_params, batch)
    cond = dict(text_emb=emb, text_mask=mask, frame_mask=batch.get("frame_mask"),
                is_image=batch.get("is_image"))
    low_shape = batch_keys.low_res_shape(self.config)
    low = batch[batch_keys.low_res_key(*low_shape)] if low_shape else None
    low = conditioning_lib.blur_augment(self.config, low, jax.random.fold_in(k_cond, 1))
    up = conditioning_lib.low_res_input(self.config, low, x0.shape)
    cond.update(conditioning_lib.training_inputs(self.config, up, k_cond))
    if self.model_config.get("pose_channels", 0):
      cond["pose_maps"] = batch[batch_keys.POSE_MAPS]
    return conditioning_lib.to_diffused(self.config, x0, up), cond

  def distill_loss(self, unet_params, teacher_params, text_params, batch, rng, *, train=True):
    """`distillation.distill_loss` of the student (unet_params) against the frozen teacher."""
    d = self.config.distill
    if teacher_params is None:
      raise ValueError("config.distill is set: Stage.loss needs teacher_params (the trainer "
                       "passes frozen['teacher'])")
    if d.phase == "guidance" and not self.guidance_input:
      raise ValueError("config.distill.phase='guidance' needs config.model.use_guidance_embedding=True")
    k_cond, k_loss, k_dropout = jax.random.split(rng, 3)
    x0, cond = self._train_inputs(text_params, batch, k_cond)
    student = nnx.merge(self.graphdef, unet_params)
    dropout = train and self.model_config.dropout > 0
    teacher = _model_fn(self.teacher_config.to_json(), self.teacher_graphdef)

    def student_fn(z, log_snr, w):
      extra = {"guidance_weight": w} if self.guidance_input else {}
      return student(z, log_snr, **cond, **extra, deterministic=not dropout,
                     dropout_rng=k_dropout if dropout else None)

    def teacher_fn(z, log_snr, w):
      if d.phase == "guidance":  # the teacher's classifier-free guidance, as the sampler runs it
        return samplers.guided_forward(teacher, teacher_params, z, log_snr, cond, w)
      extra = {"guidance_weight": w} if self.teacher_config.use_guidance_embedding else {}
      return teacher(teacher_params, z, log_snr, dict(cond, **extra))
    return distillation.distill_loss(student_fn, teacher_fn, x0, k_loss, self.config.diffusion, d,
                                     thresholding=self.default_thresholding(),
                                     frame_mask=batch.get("frame_mask"))

  # -- sampling (stage/sampler.py runs the loop) -----------------------------------
  def default_thresholding(self) -> str:
    """The config's `sample.thresholding`, else 'none' for residual stages (a clip of the
    scaled residual to [-1, 1] would cut real detail; their output is clipped as frames),
    else 'dynamic'."""
    default = "none" if conditioning_lib.is_residual(self.config) else "dynamic"
    return (self.config.get("sample") or {}).get("thresholding", default)

  def pose_inputs(self, pose_maps, shape) -> dict:
    """The network's pose inputs: the maps given, or for a pose-guided stage without them
    blank maps with the pose dropped (its pose-free model, trained by pose dropout)."""
    channels = self.model_config.get("pose_channels", 0)
    if pose_maps is None:
      if not channels:
        return {}
      return {"pose_maps": jnp.zeros(tuple(shape[:4]) + (channels,), jnp.float32),
              "drop_pose": jnp.ones((shape[0],), bool)}
    if not channels:
      raise ValueError("pose_maps given, but this stage takes no pose (config.model.pose_channels=0)")
    want = tuple(shape[:4]) + (channels,)
    if tuple(pose_maps.shape) != want:
      raise ValueError(f"pose_maps {tuple(pose_maps.shape)}: expected {want} ([B, T, H, W, C] "
                       "at this stage's output size)")
    return {"pose_maps": jnp.asarray(pose_maps, jnp.float32)}

  def output_shape(self, batch: int) -> tuple[int, ...]:
    return batch_keys.clip_shape(self.config, batch)


def network_config(config: ml_collections.ConfigDict, text_dim: int) -> ml_collections.ConfigDict:
  """`config.model` completed by what the stage decides: the text width (its T5's d_model), the
  low-res input channels and the augmentation-level embedding of SR stages."""
  m = config.model.copy_and_resolve_references()
  with m.unlocked():
    m.text_dim = text_dim
    m.cond_channels = conditioning_lib.cond_channels(config)
    m.use_aug_level_embedding = conditioning_lib.uses_aug_level(config)
  return m


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
