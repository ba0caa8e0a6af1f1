"""The Video U-Net: one configurable network for every cascade stage.

Built from `config.model` (an ml_collections.ConfigDict; defaults in
`default_config()`). Fields:

  in_channels        channels of the noisy video x (3 for RGB).
  out_channels       channels of the prediction (None -> in_channels).
  cond_channels      channels of the low-res conditioning video concatenated to x
                     on channels (SR stages: 3; base: 0, then `cond_video` must be None).
  channels           width of level 0; level i has channels * channel_mults[i].
  channel_mults      per-level width multipliers; len() = number of levels.
  num_res_blocks     int or per-level list; Efficient U-Net puts more blocks at low res.
  resolution         nominal frame height the stage is built for; level i has the
                     nominal resolution `resolution // 2**i` (only used by the two rules below).
  attn_resolutions   spatial self-attention at level i iff `resolution // 2**i` is IN
                     this tuple (exact membership, ADM/VDM convention). () = fully
                     convolutional (e.g. the last SSR trained on crops).
  cross_attn_resolutions  text cross-attention at level i, same rule.
  mid_spatial_attn   spatial self-attention in the middle (lowest-res) stage. The middle
                     stage always cross-attends to text when text_dim > 0.
  temporal_mixing    'attention' (base: temporal self-attention with T5 relative position
                     bias) | 'conv' (TSR/SSR: temporal convolution) | 'conv+attention' (both,
                     conv first: local motion learns fast) | 'none'; in every block.
  temporal_conv_kernel  odd kernel size over frames for 'conv'.
  temporal_conv_spatial  odd spatial size of that conv: 1 = factorised (2+1)-D (the paper's);
                     3 = full 3x3x3 space-time conv (motion-selective taps; see docs/results).
  frame_position_embedding  sinusoidal frame-index features into temporal attention: breaks
                     its time-reversal symmetry at init, so motion direction follows text.
  frame_index_embedding  an MLP of the frame index added to each video frame's conditioning
                     embedding (so every ResBlock's FiLM knows the frame): per-frame layout
                     such as "where is the shape at frame t of a leftward move" is then
                     learnable by the spatial layers directly. Images and lone frames get none.
  heads, head_dim    attention heads and per-head width (all attention layers).
  text_dim           width of the T5 token embeddings (4096 for T5-XXL); 0 = no text.
  emb_dim            width of the conditioning embedding (None -> 4 * channels).
  norm_groups        GroupNorm groups (reduced to gcd with the channel count).
  dropout            dropout rate inside residual blocks.
  dtype              compute dtype, 'float32' | 'bfloat16'; param_dtype: 'float32'.
  remat              'none' | 'block' (recompute each space-time block in the backward
                     pass) | 'dots' (save matmul outputs without batch dims).
  attention_backend  'xla' | 'cudnn' | 'splash' | 'auto' (the best kernel per platform and
                     call) or any name given to `attention.register_backend`.
  use_aug_level_embedding  embed `aug_level` (conditioning-augmentation level) like the time.
  use_guidance_embedding  embed `guidance_weight` [B] (a guidance-distilled student takes the
                     classifier-free guidance weight as an input); zero-initialised output, so a
                     student initialised from its teacher starts as the teacher's conditional model.
  pose_channels      channels of skeleton maps for the pose guider (0: no pose input);
                     pose_guider_channels its hidden convs (see `nn/pose_guider.py`)
  skip_scale         factor on U-Net skip connections (Efficient U-Net: 1/sqrt(2)).

Architecture (Efficient U-Net style): input conv; per level: [stride-2 downsample
if level > 0], num_res_blocks[i] space-time blocks, one skip; middle: block,
block; per level (reversed): concat(h, skip * skip_scale), num_res_blocks[i]
blocks, [upsample]; GN-SiLU-conv out (zero-init). The conditioning embedding
(log-SNR + pooled text + aug level) drives FiLM in every residual block.

The log-SNR enters as t' = atan(exp(-log_snr / 2)) * 2 / pi in [0, 1] (the
inverse of the unshifted cosine schedule): bounded, monotone, and for the
cosine schedule the usual "time" input.

Unconditional (classifier-free guidance) output: `drop_text[b] = True`
replaces sample b's text by the learned `null_text` token (one valid token),
so training-time condition dropout and the sampler's uncond half share it.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from imagen_video.nn.blocks import Downsample, SpaceTimeBlock, Upsample
from imagen_video.nn.layers import (VIDEO_AXES, Conv2D, Dense, GroupNorm, LayerNorm, frame_index_features,
                                     sinusoidal_embedding)
from imagen_video.nn.masks import mixing_frames, temporal_allowed
from imagen_video.nn.pose_guider import PoseGuider
from imagen_video.parallel import sharding

_REMAT_POLICIES = {
    "block": None,  # recompute everything in the block
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def default_config() -> ml_collections.ConfigDict:
  """Defaults for `config.model` (a small base-like stage)."""
  return ml_collections.ConfigDict(dict(
      in_channels=3, out_channels=None, cond_channels=0,
      channels=128, channel_mults=(1, 2, 4, 4), num_res_blocks=(2, 2, 3, 4),
      resolution=64, attn_resolutions=(16, 8), cross_attn_resolutions=(16, 8),
      mid_spatial_attn=True,
      temporal_mixing="attention", temporal_conv_kernel=3, temporal_conv_spatial=1,
      frame_position_embedding=True,
      frame_index_embedding=False,
      heads=8, head_dim=64, text_dim=4096, emb_dim=None, norm_groups=32, dropout=0.0,
      dtype="float32", param_dtype="float32", remat="none", attention_backend="xla",
      use_aug_level_embedding=False, use_guidance_embedding=False, skip_scale=2 ** -0.5,
      pose_channels=0, pose_guider_channels=(16, 32),
  ))


def _levels(cfg):
  n = len(cfg.channel_mults)
  blocks = cfg.num_res_blocks
  blocks = [blocks] * n if isinstance(blocks, int) else list(blocks)
  if len(blocks) != n:
    raise ValueError(f"num_res_blocks {blocks} must have one entry per level ({n})")
  return n, blocks


class VideoUNet(nnx.Module):
  """x [B, T, H, W, C] + conditioning -> prediction [B, T, H, W, out_channels] (fp32)."""

  def __init__(self, config: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
    cfg = config
    # Only hashable statics on the module (no ConfigDict): the GraphDef must be hashable so
    # samplers can key their jit cache on it.
    self.channels = cfg.channels
    dtype, param_dtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    emb_dim = cfg.emb_dim or 4 * cfg.channels
    n_levels, blocks = _levels(cfg)
    chans = [cfg.channels * m for m in cfg.channel_mults]
    self.dtype = dtype
    self.cond_channels = cfg.cond_channels
    self.text_dim = cfg.text_dim
    self.skip_scale = cfg.skip_scale
    self.remat = cfg.remat
    if cfg.remat not in ("none", *_REMAT_POLICIES):
      raise ValueError(f"remat must be 'none', 'block' or 'dots', got {cfg.remat!r}")

    # Conditioning embedding: time (log-SNR), pooled text, conditioning-augmentation level.
    self.time_mlp = nnx.List([Dense(cfg.channels, emb_dim, in_axes=("embed",), out_axes=("mlp",), **kw),
                              Dense(emb_dim, emb_dim, in_axes=("mlp",), out_axes=("mlp",), **kw)])
    self.aug_mlp = (nnx.List([Dense(cfg.channels, emb_dim, in_axes=("embed",), out_axes=("mlp",), **kw),
                              Dense(emb_dim, emb_dim, in_axes=("mlp",), out_axes=("mlp",), **kw)])
                    if cfg.use_aug_level_embedding else None)
    self.guidance_mlp = (nnx.List([Dense(cfg.channels, emb_dim, in_axes=("embed",), out_axes=("mlp",), **kw),
                                   Dense(emb_dim, emb_dim, in_axes=("mlp",), out_axes=("mlp",),
                                         zero_init=True, **kw)])
                         if cfg.get("use_guidance_embedding", False) else None)
    self.frame_mlp = (nnx.List([Dense(cfg.channels, emb_dim, in_axes=("embed",), out_axes=("mlp",), **kw),
                                Dense(emb_dim, emb_dim, in_axes=("mlp",), out_axes=("mlp",),
                                      zero_init=True, **kw)])
                      if cfg.get("frame_index_embedding", False) else None)
    if cfg.text_dim > 0:
      self.null_text = nnx.Param(jax.random.normal(rngs.params(), (cfg.text_dim,), param_dtype) * 0.02,
                                 logical_axes=("text_embed",))
      self.text_norm = LayerNorm(cfg.text_dim, "text_embed", dtype=dtype, param_dtype=param_dtype)
      self.text_pool = Dense(cfg.text_dim, emb_dim, in_axes=("text_embed",), out_axes=("mlp",), **kw)

    block_kw = dict(emb_dim=emb_dim, text_dim=cfg.text_dim, temporal_mixing=cfg.temporal_mixing,
                    temporal_conv_kernel=cfg.temporal_conv_kernel,
                    temporal_conv_spatial=cfg.get("temporal_conv_spatial", 1),
                    frame_pos=cfg.get("frame_position_embedding", True), heads=cfg.heads,
                    head_dim=cfg.head_dim, groups=cfg.norm_groups, dropout_rate=cfg.dropout,
                    backend=cfg.attention_backend, **kw)

    def attn_at(level, resolutions):
      return (cfg.resolution // 2 ** level) in tuple(resolutions)

    self.conv_in = Conv2D(cfg.in_channels + cfg.cond_channels, chans[0], 3, **kw)
    pose_channels = cfg.get("pose_channels", 0)
    self.pose_guider = (PoseGuider(pose_channels, tuple(cfg.get("pose_guider_channels", (16, 32))),
                                   chans[0], **kw) if pose_channels else None)
    down, up = [], []
    ch = chans[0]
    for i in range(n_levels):
      layers = [Downsample(ch, chans[i], **kw)] if i > 0 else []
      ch = chans[i]
      for _ in range(blocks[i]):
        layers.append(SpaceTimeBlock(ch, ch, spatial_attn=attn_at(i, cfg.attn_resolutions),
                                     cross_attn=attn_at(i, cfg.cross_attn_resolutions), **block_kw))
      down.append(nnx.List(layers))
    self.down = nnx.List(down)
    self.middle = nnx.List([SpaceTimeBlock(ch, ch, spatial_attn=cfg.mid_spatial_attn, cross_attn=True,
                                           **block_kw) for _ in range(2)])
    for i in reversed(range(n_levels)):
      layers = []
      for j in range(blocks[i]):
        layers.append(SpaceTimeBlock(2 * ch if j == 0 else ch, ch,
                                     spatial_attn=attn_at(i, cfg.attn_resolutions),
                                     cross_attn=attn_at(i, cfg.cross_attn_resolutions), **block_kw))
      if i > 0:
        layers.append(Upsample(ch, chans[i - 1], **kw))
        ch = chans[i - 1]
      up.append(nnx.List(layers))
    self.up = nnx.List(up)
    self.norm_out = GroupNorm(ch, cfg.norm_groups, dtype=dtype, param_dtype=param_dtype)
    self.conv_out = Conv2D(ch, cfg.out_channels or cfg.in_channels, 3, zero_init=True, **kw)

  # --- conditioning -------------------------------------------------------------------------

  def _mlp(self, layers, x):
    return layers[1](jax.nn.silu(layers[0](x)))

  def _text(self, text_emb, text_mask, drop_text):
    """Null-text replacement, LayerNorm, masked-mean pooling."""
    b, length, _ = text_emb.shape
    if drop_text is not None:
      drop = jnp.asarray(drop_text, bool)[:, None]
      null_mask = jnp.arange(length)[None] == 0  # the null text is one valid token
      text_mask = jnp.where(drop, null_mask, text_mask)
      text_emb = jnp.where(drop[..., None], self.null_text[...].astype(text_emb.dtype), text_emb)
    text = self.text_norm(text_emb)
    text = sharding.constrain(text, ("batch", "length", "text_embed"))
    m = text_mask.astype(jnp.float32)[..., None]
    pooled = (text.astype(jnp.float32) * m).sum(1) / jnp.maximum(m.sum(1), 1.0)
    return text, text_mask, self.text_pool(pooled)

  # --- forward --------------------------------------------------------------------------------

  def __call__(self, x, log_snr, text_emb=None, text_mask=None, *, frame_mask=None, is_image=None,
               cond_video=None, aug_level=None, guidance_weight=None, drop_text=None,
               pose_maps=None, drop_pose=None, deterministic: bool = True, dropout_rng=None):
    """Predicts the objective's target (v by default) for the noisy video x.

    x [B, T, H, W, C]; log_snr [B]; text_emb [B, L, text_dim]; text_mask [B, L] bool;
    frame_mask [B, T] bool (False = padding frame) and is_image [B] or [B, T] bool
    (True = independent image, no temporal mixing): see `imagen_video.nn.masks`;
    cond_video [B, T, H, W, cond_channels], already resized to x; aug_level [B] in [0, 1];
    guidance_weight [B] (use_guidance_embedding: the student's classifier-free guidance weight);
    drop_text [B] bool -> use the learned null text; pose_maps [B, T, H, W, pose_channels]
    skeleton maps at x's size, drop_pose [B] bool -> no pose (the guider's output is dropped);
    dropout_rng: key when not deterministic.
    """
    b, t, h, w, _ = x.shape
    t_equiv = jnp.arctan(jnp.exp(-0.5 * log_snr.astype(jnp.float32))) * (2 / math.pi)
    emb = self._mlp(self.time_mlp, sinusoidal_embedding(1000 * t_equiv, self.channels))
    if self.aug_mlp is not None:
      if aug_level is None:
        raise ValueError("use_aug_level_embedding=True needs aug_level [B]")
      emb = emb + self._mlp(self.aug_mlp, sinusoidal_embedding(1000 * aug_level, self.channels))
    if self.guidance_mlp is not None:
      if guidance_weight is None:
        raise ValueError("use_guidance_embedding=True needs guidance_weight [B]")
      w = jnp.broadcast_to(jnp.asarray(guidance_weight, jnp.float32), (b,))
      emb = emb + self._mlp(self.guidance_mlp, sinusoidal_embedding(100 * w, self.channels))
    elif guidance_weight is not None:
      raise ValueError("guidance_weight given but config.model.use_guidance_embedding is False")
    ctx = {"allowed": temporal_allowed(b, t, frame_mask, is_image)}
    if self.text_dim > 0:
      if text_emb is None:
        raise ValueError("text_dim > 0: pass text_emb and text_mask (drop_text for unconditional)")
      text_mask = jnp.ones(text_emb.shape[:2], bool) if text_mask is None else text_mask
      ctx["text"], ctx["text_mask"], pooled = self._text(text_emb, text_mask, drop_text)
      emb = emb + pooled
    if self.frame_mlp is not None:  # [B, D] -> [B, T, D]; zero-init: a fresh model ignores it
      mixes = mixing_frames(ctx["allowed"]).astype(emb.dtype)  # [B, T]
      frames = self._mlp(self.frame_mlp, frame_index_features(t, self.channels))
      emb = emb[:, None, :] + mixes[:, :, None] * frames[None].astype(emb.dtype)
    ctx["emb"] = emb

    if self.cond_channels:
      if cond_video is None:
        raise ValueError(f"cond_channels={self.cond_channels}: pass cond_video [B, T, H, W, C]")
      x = jnp.concatenate([x, cond_video.astype(x.dtype)], axis=-1)
    elif cond_video is not None:
      raise ValueError("cond_video given but config.model.cond_channels == 0")

    counter = iter(range(10 ** 6))

    def run(block, h):
      c = dict(ctx)
      if dropout_rng is not None:
        c["dropout_rng"] = jax.random.fold_in(dropout_rng, next(counter))
      if self.remat == "none":
        return block(h, c, deterministic=deterministic)
      fn = nnx.remat(lambda blk, hh, cc: blk(hh, cc, deterministic=deterministic),
                     policy=_REMAT_POLICIES[self.remat])
      return fn(block, h, c)

    h = self.conv_in(x.astype(self.dtype))
    if self.pose_guider is not None:
      if pose_maps is None:
        raise ValueError("config.model.pose_channels > 0: pass pose_maps [B, T, H, W, C] "
                         "(and drop_pose for the pose-free prediction)")
      pose = self.pose_guider(pose_maps.astype(self.dtype))
      if drop_pose is not None:
        pose = jnp.where(drop_pose[:, None, None, None, None], 0.0, pose).astype(pose.dtype)
      h = h + pose
    elif pose_maps is not None:
      raise ValueError("pose_maps given but config.model.pose_channels == 0")
    h = sharding.constrain(h, VIDEO_AXES)
    skips = []
    for layers in self.down:
      for layer in layers:
        h = run(layer, h) if isinstance(layer, SpaceTimeBlock) else layer(h)
      skips.append(h)
    for block in self.middle:
      h = run(block, h)
    for layers in self.up:
      skip = skips.pop()
      h = jnp.concatenate([h, skip * jnp.asarray(self.skip_scale, skip.dtype)], axis=-1)
      for layer in layers:
        if isinstance(layer, Upsample):
          h = layer(h, skips[-1].shape[2:4])
        else:
          h = run(layer, h)
    out = self.conv_out(jax.nn.silu(self.norm_out(h)))
    return sharding.constrain(out.astype(jnp.float32), VIDEO_AXES)


def abstract_unet(config: ml_collections.ConfigDict):
  """(graphdef, abstract state) without allocating: shapes, dtypes, logical axes."""
  return nnx.split(nnx.eval_shape(lambda: VideoUNet(config, rngs=nnx.Rngs(0))))


def init_unet(config: ml_collections.ConfigDict, key: jax.Array, out_shardings=None):
  """(graphdef, state) with the state created inside one jit (already sharded when
  `out_shardings` is given, e.g. `sharding.state_shardings(abstract_state, mesh, rules)`)."""
  graphdef, _ = abstract_unet(config)
  make = jax.jit(lambda k: nnx.split(VideoUNet(config, rngs=nnx.Rngs(params=k)))[1],
                 out_shardings=out_shardings)
  return graphdef, make(key)
