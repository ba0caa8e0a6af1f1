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

Options that make the same network express DeepFloyd IF's (ADM-style) spatial U-Net exactly,
per frame (`configs/if_inflated.py`; `nn/if_convert.py` maps its weights):
  layout             'imagen' (below) | 'adm': a skip after conv_in and after every block,
                     resampling by residual blocks (2x2 average pool / nearest x2) at the end of
                     a level, num_res_blocks[i] + 1 blocks per up level, middle = [block with
                     attention, block without]; temporal layers follow every spatial block.
  act                'silu' | 'gelu' (exact) in residual blocks, the embedding MLPs and the output.
  norm_eps           GroupNorm / LayerNorm epsilon.
  res_skip_time_act  no activation on the embedding before FiLM; res_out_scale: residual blocks
                     divide their sum by it; mid_out_scale: the same in the middle ('adm').
  text_attention     'cross' (self- and cross-attention layers) | 'hybrid' (one attention over
                     the text tokens and the frame's positions at levels in attn_resolutions,
                     heads = width / head_dim); hybrid_self_attention=False keeps the text only.
  text_layernorm     LayerNorm on the text tokens first (ours); IF has none.
  text_pooling       'mean' (masked mean + Dense) | 'attention' (IF: text_pool_heads heads).
  text_proj_dim      >0: a Dense projection of the tokens before attention (IF's encoder_hid_proj).
  use_text_mask      False: every token is attended and pooled, as IF's pipeline runs.
  null_text_length   0: the null text is one learned token (ours); N: a learned N-token sequence
                     (IF: its unconditional input is T5's embedding of the empty prompt, all 77
                     positions, which `convert-if --t5` writes here).
  time_input         'logsnr' (ours, below) | 'ddpm_index': the index of the log-SNR in a
                     `num_timesteps`-step discrete DDPM cosine schedule, as IF's timestep input
                     ([cos, sin] features); aug_level in [0, 1] enters as index aug_level * N - 1.
  emb_act            None | 'gelu': activation on the summed embedding (IF-II).

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

from imagen_video.diffusion.schedule import ddpm_index_from_logsnr
from imagen_video.nn.blocks import Downsample, ResBlock, SpaceTimeBlock, Upsample
from imagen_video.nn.if_layers import TextPool
from imagen_video.nn.layers import (ACTIVATIONS, VIDEO_AXES, Conv2D, Dense, GroupNorm, LayerNorm,
                                     frame_index_features, sinusoidal_embedding)
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
      layout="imagen", act="silu", norm_eps=1e-6, res_skip_time_act=False, res_out_scale=1.0,
      mid_out_scale=1.0, text_attention="cross", hybrid_self_attention=True, text_layernorm=True,
      text_pooling="mean", text_pool_heads=64, text_proj_dim=0, use_text_mask=True,
      time_input="logsnr", num_timesteps=1000, emb_act=None, null_text_length=0,
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
    self.layout = cfg.get("layout", "imagen")
    if self.layout not in ("imagen", "adm"):
      raise ValueError(f"layout must be 'imagen' or 'adm', got {self.layout!r}")
    self.act = cfg.get("act", "silu")
    if self.act not in ACTIVATIONS:
      raise ValueError(f"act must be one of {sorted(ACTIVATIONS)}, got {self.act!r}")
    self.emb_act = cfg.get("emb_act", None)
    self.use_text_mask = cfg.get("use_text_mask", True)
    self.time_input = cfg.get("time_input", "logsnr")
    if self.time_input not in ("logsnr", "ddpm_index"):
      raise ValueError(f"time_input must be 'logsnr' or 'ddpm_index', got {self.time_input!r}")
    self.num_timesteps = int(cfg.get("num_timesteps", 1000))
    eps = cfg.get("norm_eps", 1e-6)

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
    attn_dim = cfg.text_dim
    self.null_text_length = cfg.get("null_text_length", 0)
    if cfg.text_dim > 0:
      shape, axes = (cfg.text_dim,), ("text_embed",)
      if self.null_text_length:
        shape, axes = (self.null_text_length, cfg.text_dim), ("length", "text_embed")
      self.null_text = nnx.Param(jax.random.normal(rngs.params(), shape, param_dtype) * 0.02,
                                 logical_axes=axes)
      self.text_norm = (LayerNorm(cfg.text_dim, "text_embed", dtype=dtype, param_dtype=param_dtype)
                        if cfg.get("text_layernorm", True) else None)
      pooling = cfg.get("text_pooling", "mean")
      if pooling == "mean":
        self.text_pool = Dense(cfg.text_dim, emb_dim, in_axes=("text_embed",), out_axes=("mlp",), **kw)
      elif pooling == "attention":
        self.text_pool = TextPool(cfg.text_dim, emb_dim, cfg.get("text_pool_heads", 64), eps=eps, **kw)
      else:
        raise ValueError(f"text_pooling must be 'mean' or 'attention', got {pooling!r}")
      proj = cfg.get("text_proj_dim", 0)
      self.text_proj = (Dense(cfg.text_dim, proj, in_axes=("text_embed",), out_axes=("embed",), **kw)
                        if proj else None)
      attn_dim = proj or cfg.text_dim

    res_kw = dict(act=self.act, eps=eps, skip_time_act=cfg.get("res_skip_time_act", False),
                  out_scale=cfg.get("res_out_scale", 1.0))
    block_kw = dict(emb_dim=emb_dim, text_dim=attn_dim, temporal_mixing=cfg.temporal_mixing,
                    temporal_conv_kernel=cfg.temporal_conv_kernel,
                    temporal_conv_spatial=cfg.get("temporal_conv_spatial", 1),
                    frame_pos=cfg.get("frame_position_embedding", True),
                    head_dim=cfg.head_dim, groups=cfg.norm_groups, dropout_rate=cfg.dropout,
                    backend=cfg.attention_backend, res_kw=res_kw,
                    text_attention=cfg.get("text_attention", "cross"),
                    hybrid_self_attention=cfg.get("hybrid_self_attention", True), **kw)

    def block(cin, cout, level, res_over=None, **extra):
      heads = cfg.heads or cout // cfg.head_dim  # heads=0: width / head_dim (IF)
      args = dict(block_kw, spatial_attn=attn_at(level, cfg.attn_resolutions),
                  cross_attn=attn_at(level, cfg.cross_attn_resolutions), heads=heads)
      args.update(extra)
      if res_over:
        args["res_kw"] = dict(res_kw, **res_over)
      return SpaceTimeBlock(cin, cout, **args)

    def attn_at(level, resolutions):
      return (cfg.resolution // 2 ** level) in tuple(resolutions)

    self.conv_in = Conv2D(cfg.in_channels + cfg.cond_channels, chans[0], 3, **kw)
    pose_channels = cfg.get("pose_channels", 0)
    self.pose_guider = (PoseGuider(pose_channels, tuple(cfg.get("pose_guider_channels", (16, 32))),
                                   chans[0], **kw) if pose_channels else None)
    build = self._build_adm if self.layout == "adm" else self._build_imagen
    ch = build(cfg, chans, blocks, block, dict(emb_dim=emb_dim, groups=cfg.norm_groups,
                                               dropout_rate=cfg.dropout, **res_kw, **kw))
    self.norm_out = GroupNorm(ch, cfg.norm_groups, eps=eps, dtype=dtype, param_dtype=param_dtype)
    self.conv_out = Conv2D(ch, cfg.out_channels or cfg.in_channels, 3, zero_init=True, **kw)

  def _build_imagen(self, cfg, chans, blocks, block, resample_kw):
    """Efficient U-Net wiring: one skip per level; downsample first, upsample last in a level."""
    kw = {k: resample_kw[k] for k in ("dtype", "param_dtype", "rngs")}
    down, up = [], []
    ch = chans[0]
    for i in range(len(chans)):
      layers = [Downsample(ch, chans[i], **kw)] if i > 0 else []
      ch = chans[i]
      layers += [block(ch, ch, i) for _ in range(blocks[i])]
      down.append(nnx.List(layers))
    self.down = nnx.List(down)
    self.middle = nnx.List([block(ch, ch, 0, spatial_attn=cfg.mid_spatial_attn, cross_attn=True)
                            for _ in range(2)])
    for i in reversed(range(len(chans))):
      layers = [block(2 * ch if j == 0 else ch, ch, i) for j in range(blocks[i])]
      if i > 0:
        layers.append(Upsample(ch, chans[i - 1], **kw))
        ch = chans[i - 1]
      up.append(nnx.List(layers))
    self.up = nnx.List(up)
    return ch

  def _build_adm(self, cfg, chans, blocks, block, resample_kw):
    """ADM / DeepFloyd IF wiring: a skip after conv_in and after every layer of the down path;
    each up block takes one skip; residual down/up-sampling blocks end a level."""
    n = len(chans)
    skips, down, up = [chans[0]], [], []
    ch = chans[0]
    for i in range(n):
      layers = []
      for _ in range(blocks[i]):
        layers.append(block(ch, chans[i], i))
        ch = chans[i]
        skips.append(ch)
      if i < n - 1:
        layers.append(ResBlock(ch, ch, resample="down", **resample_kw))
        skips.append(ch)
      down.append(nnx.List(layers))
    self.down = nnx.List(down)
    mid_scale = dict(res_over=dict(out_scale=cfg.get("mid_out_scale", 1.0)))
    self.middle = nnx.List([block(ch, ch, n - 1, spatial_attn=cfg.mid_spatial_attn, **mid_scale),
                            block(ch, ch, n - 1, spatial_attn=False, **mid_scale)])
    for i in reversed(range(n)):
      layers = []
      for _ in range(blocks[i] + 1):
        layers.append(block(ch + skips.pop(), chans[i], i))
        ch = chans[i]
      if i > 0:
        layers.append(ResBlock(ch, ch, resample="up", **resample_kw))
      up.append(nnx.List(layers))
    self.up = nnx.List(up)
    return ch

  # --- conditioning -------------------------------------------------------------------------

  def _mlp(self, layers, x):
    return layers[1](ACTIVATIONS[self.act](layers[0](x)))

  def _time_features(self, log_snr):
    """The time input's sinusoidal features: ours from the cosine-equivalent time, IF's ([cos,
    sin]) from the fractional index of the log-SNR in its discrete DDPM schedule."""
    ls = log_snr.astype(jnp.float32)
    if self.time_input == "logsnr":
      t_equiv = jnp.arctan(jnp.exp(-0.5 * ls)) * (2 / math.pi)
      return sinusoidal_embedding(1000 * t_equiv, self.channels)
    return self._index_features(ddpm_index_from_logsnr(ls, self.num_timesteps))

  def _index_features(self, index):
    emb = sinusoidal_embedding(index, self.channels)
    half = self.channels // 2
    return jnp.concatenate([emb[:, half:2 * half], emb[:, :half], emb[:, 2 * half:]], axis=-1)

  def _text(self, text_emb, text_mask, drop_text):
    """Null-text replacement, LayerNorm, pooling; the tokens for attention."""
    b, length, _ = text_emb.shape
    if drop_text is not None:
      if self.null_text_length not in (0, length):
        raise ValueError(f"model.null_text_length is {self.null_text_length} but the text has {length} "
                         "tokens; set it to config.text.max_length")
      drop = jnp.asarray(drop_text, bool)[:, None]
      null_mask = jnp.arange(length)[None] == 0  # the null text is one valid token
      text_mask = jnp.where(drop, null_mask, text_mask)
      text_emb = jnp.where(drop[..., None], self.null_text[...].astype(text_emb.dtype), text_emb)
    if not self.use_text_mask:
      text_mask = jnp.ones_like(text_mask)
    text = text_emb if self.text_norm is None else self.text_norm(text_emb)
    text = sharding.constrain(text, ("batch", "length", "text_embed"))
    if isinstance(self.text_pool, TextPool):
      pooled = self.text_pool(text, text_mask)
    else:
      m = text_mask.astype(jnp.float32)[..., None]
      pooled = self.text_pool((text.astype(jnp.float32) * m).sum(1) / jnp.maximum(m.sum(1), 1.0))
    if self.text_proj is not None:
      text = self.text_proj(text)
    return text, text_mask, pooled

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
    emb = self._mlp(self.time_mlp, self._time_features(log_snr))
    if self.aug_mlp is not None:
      if aug_level is None:
        raise ValueError("use_aug_level_embedding=True needs aug_level [B]")
      feats = (sinusoidal_embedding(1000 * aug_level, self.channels) if self.time_input == "logsnr"
               else self._index_features(aug_level.astype(jnp.float32) * self.num_timesteps - 1))
      emb = emb + self._mlp(self.aug_mlp, feats)
    if self.guidance_mlp is not None:
      if guidance_weight is None:
        raise ValueError("use_guidance_embedding=True needs guidance_weight [B]")
      gw = jnp.broadcast_to(jnp.asarray(guidance_weight, jnp.float32), (b,))
      emb = emb + self._mlp(self.guidance_mlp, sinusoidal_embedding(100 * gw, self.channels))
    elif guidance_weight is not None:
      raise ValueError("guidance_weight given but config.model.use_guidance_embedding is False")
    ctx = {"allowed": temporal_allowed(b, t, frame_mask, is_image)}
    if self.text_dim > 0:
      if text_emb is None:
        raise ValueError("text_dim > 0: pass text_emb and text_mask (drop_text for unconditional)")
      text_mask = jnp.ones(text_emb.shape[:2], bool) if text_mask is None else text_mask
      ctx["text"], ctx["text_mask"], pooled = self._text(text_emb, text_mask, drop_text)
      emb = emb + pooled
    if self.emb_act is not None:
      emb = ACTIVATIONS[self.emb_act](emb)
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
      # jax.checkpoint of a pure function, not nnx.remat: the sampler merges the network
      # inside its loop body, and nnx.remat's write-back to Params made there fails.
      graphdef, state = nnx.split(block)
      fn = jax.checkpoint(lambda st, hh, cc: nnx.merge(graphdef, st)(hh, cc, deterministic=deterministic),
                          policy=_REMAT_POLICIES[self.remat])
      return fn(state, h, c)

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
    forward = self._forward_adm if self.layout == "adm" else self._forward_imagen
    h = forward(h, run, ctx, deterministic, dropout_rng, counter)
    out = self.conv_out(ACTIVATIONS[self.act](self.norm_out(h)))
    return sharding.constrain(out.astype(jnp.float32), VIDEO_AXES)

  def _forward_imagen(self, h, run, ctx, deterministic, dropout_rng, counter):
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
    return h

  def _forward_adm(self, h, run, ctx, deterministic, dropout_rng, counter):
    def resample(layer, h, size=None):
      rng = None if dropout_rng is None else jax.random.fold_in(dropout_rng, next(counter))
      return layer(h, ctx["emb"], dropout_rng=rng, deterministic=deterministic, size=size)

    skips = [h]
    for layers in self.down:
      for layer in layers:
        h = run(layer, h) if isinstance(layer, SpaceTimeBlock) else resample(layer, h)
        skips.append(h)
    for block in self.middle:
      h = run(block, h)
    for layers in self.up:
      for layer in layers:
        if isinstance(layer, SpaceTimeBlock):
          skip = skips.pop()
          h = run(layer, jnp.concatenate([h, skip * jnp.asarray(self.skip_scale, skip.dtype)], axis=-1))
        else:
          h = resample(layer, h, skips[-1].shape[2:4])
    return h


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
