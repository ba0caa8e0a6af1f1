"""Space-time separable building blocks of the Video U-Net.

Spatial layers (convs, GroupNorm, spatial self-attention) act on each frame on
its own; time is mixed only by `TemporalAttention` or `TemporalConv`, both of
which obey the frame masks in `imagen_video.nn.masks`. Every residual branch
ends in a zero-initialised projection, so a fresh block is the identity and a
fresh video model equals the per-frame image model.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from imagen_video.nn.attention import Attention, RelativePositionBias
from imagen_video.nn.if_layers import HybridAttention
from imagen_video.nn.layers import (ACTIVATIONS, VIDEO_AXES, Conv2D, Dense, GroupNorm, dropout,
                                     frame_conv, frame_index_features)
from imagen_video.nn.masks import mixing_frames
from imagen_video.parallel import sharding


class ResBlock(nnx.Module):
  """GN-act-conv, FiLM from the conditioning embedding, GN-act-dropout-conv.

  Options for networks imported from elsewhere (DeepFloyd IF / ADM): `act` ('silu' | 'gelu'),
  `eps` of the GroupNorms, `skip_time_act` (no activation on the embedding before FiLM),
  `out_scale` (the sum is divided by it) and `resample` ('down': 2x2 average pool, 'up': nearest
  x2, applied to both branches after the first activation: a BigGAN-style resampling block).
  """

  def __init__(self, in_ch: int, out_ch: int, emb_dim: int, *, groups: int, dropout_rate: float,
               dtype, param_dtype, rngs: nnx.Rngs, act: str = "silu", eps: float = 1e-6,
               skip_time_act: bool = False, out_scale: float = 1.0, resample: str | None = None):
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    if act not in ACTIVATIONS:
      raise ValueError(f"act must be one of {sorted(ACTIVATIONS)}, got {act!r}")
    if resample not in (None, "down", "up"):
      raise ValueError(f"resample must be None, 'down' or 'up', got {resample!r}")
    self.dropout_rate = dropout_rate
    self.act, self.skip_time_act, self.out_scale, self.resample = act, skip_time_act, out_scale, resample
    self.norm1 = GroupNorm(in_ch, groups, eps=eps, **kw)
    self.conv1 = Conv2D(in_ch, out_ch, 3, rngs=rngs, **kw)
    # FiLM / adaptive GroupNorm: scale and shift per channel from (log-SNR, text, aug) embedding.
    self.film = Dense(emb_dim, 2 * out_ch, in_axes=("mlp",), out_axes=("embed",), zero_init=True,
                      rngs=rngs, **kw)
    self.norm2 = GroupNorm(out_ch, groups, eps=eps, **kw)
    self.conv2 = Conv2D(out_ch, out_ch, 3, zero_init=True, rngs=rngs, **kw)
    self.skip = (Dense(in_ch, out_ch, in_axes=("conv_in",), out_axes=("embed",), rngs=rngs, **kw)
                 if in_ch != out_ch else None)

  def __call__(self, x, emb, *, dropout_rng=None, deterministic=True, size=None):
    act = ACTIVATIONS[self.act]
    h = act(self.norm1(x))
    if self.resample is not None:
      x, h = resample(x, self.resample, size), resample(h, self.resample, size)
    h = self.conv1(h)
    film = self.film(emb if self.skip_time_act else act(emb))  # emb [B, D] or [B, T, D] (per frame)
    film = film[:, None, None, None, :] if film.ndim == 2 else film[:, :, None, None, :]
    scale, shift = jnp.split(film, 2, axis=-1)
    h = self.norm2(h) * (1 + scale) + shift
    h = dropout(act(h), self.dropout_rate, dropout_rng, deterministic)
    h = self.conv2(h)
    skip = x if self.skip is None else self.skip(x)
    out = skip.astype(h.dtype) + h
    return out if self.out_scale == 1.0 else out / jnp.asarray(self.out_scale, out.dtype)


def resample(x, mode: str, size=None):
  """'down': 2x2 average pool per frame; 'up': nearest x2 per frame, cropped to `size` (H, W)."""
  b, t, h, w, c = x.shape
  if mode == "down":
    x = x[:, :, :h // 2 * 2, :w // 2 * 2]
    return x.reshape(b, t, h // 2, 2, w // 2, 2, c).mean((3, 5))
  x = jnp.repeat(jnp.repeat(x, 2, axis=2), 2, axis=3)
  return x if size is None else x[:, :, :size[0], :size[1]]


class SpatialAttention(nnx.Module):
  """Self-attention over the H*W positions of each frame."""

  def __init__(self, dim: int, heads: int, head_dim: int, *, groups: int, backend: str,
               dtype, param_dtype, rngs: nnx.Rngs):
    self.norm = GroupNorm(dim, groups, dtype=dtype, param_dtype=param_dtype)
    self.attn = Attention(dim, heads, head_dim, backend=backend, dtype=dtype,
                          param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x):
    b, t, h, w, c = x.shape
    y = self.attn(self.norm(x).reshape(b * t, h * w, c))
    return x + y.reshape(x.shape)


class CrossAttention(nnx.Module):
  """Every position of every frame attends to the (masked) text tokens."""

  def __init__(self, dim: int, text_dim: int, heads: int, head_dim: int, *, groups: int,
               backend: str, dtype, param_dtype, rngs: nnx.Rngs):
    self.norm = GroupNorm(dim, groups, dtype=dtype, param_dtype=param_dtype)
    self.attn = Attention(dim, heads, head_dim, context_dim=text_dim, context_axis="text_embed",
                          backend=backend, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x, text, text_mask):
    b, t, h, w, c = x.shape
    mask = text_mask[:, None, None, :]  # [B, 1, 1, L]
    y = self.attn(self.norm(x).reshape(b, t * h * w, c), text, mask=mask)
    return x + y.reshape(x.shape)


class TemporalAttention(nnx.Module):
  """Self-attention over frames at each spatial position, T5 relative position bias.

  With `frame_pos`, sinusoidal frame-index features are added to its input (frames
  that mix with others only). Without them the block starts out symmetric under
  time reversal (the bias table is zero-initialised), so "moving left" and "moving
  right" stay indistinguishable until the table slowly breaks the tie.
  """

  def __init__(self, dim: int, heads: int, head_dim: int, *, groups: int, backend: str,
               dtype, param_dtype, rngs: nnx.Rngs, frame_pos: bool = True):
    self.frame_pos = frame_pos
    self.norm = GroupNorm(dim, groups, dtype=dtype, param_dtype=param_dtype)
    self.attn = Attention(dim, heads, head_dim, backend=backend, dtype=dtype,
                          param_dtype=param_dtype, rngs=rngs)
    self.rel_pos = RelativePositionBias(heads, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x, allowed):
    b, t, h, w, c = x.shape
    y = self.norm(x)
    if self.frame_pos:
      mixes = mixing_frames(allowed).astype(y.dtype)  # [B, T]
      pos = frame_index_features(t, c).astype(y.dtype)
      y = y + mixes[:, :, None, None, None] * pos[None, :, None, None, :]
    y = jnp.transpose(y, (0, 2, 3, 1, 4)).reshape(b * h * w, t, c)
    mask = jnp.broadcast_to(allowed[:, None, None], (b, h * w, 1, t, t)).reshape(b * h * w, 1, t, t)
    y = self.attn(y, bias=self.rel_pos(t)[None], mask=mask)
    y = jnp.transpose(y.reshape(b, h, w, t, c), (0, 3, 1, 2, 4))
    return x + y


class TemporalConv(nnx.Module):
  """Convolution over frames, written as a sum of masked frame shifts.

  out[t] = sum_o allowed[t, t+o] * conv_o(h[t+o]): frames that may not mix
  (padding, images) contribute zero, exactly as temporal attention masks them.
  `spatial` = 1: conv_o is a 1x1 channel mix (the paper's factorised (2+1)-D conv);
  `spatial` = 3: a 3x3 spatial conv per frame offset, i.e. a full 3x3x3 space-time
  conv whose taps can encode motion ("one pixel right per frame") directly.
  """

  def __init__(self, dim: int, kernel: int, *, groups: int, dtype, param_dtype, rngs: nnx.Rngs,
               spatial: int = 1):
    if kernel % 2 != 1 or spatial % 2 != 1:
      raise ValueError(f"temporal_conv_kernel and temporal_conv_spatial must be odd, "
                       f"got {kernel} and {spatial}")
    self.dtype = dtype
    self.norm = GroupNorm(dim, groups, dtype=dtype, param_dtype=param_dtype)
    shape, axes = (kernel, dim, dim), ("conv_t", "conv_in", "embed")
    if spatial > 1:
      shape, axes = (kernel, spatial, spatial, dim, dim), ("conv_t", "conv_h", "conv_w", "conv_in", "embed")
    self.kernel = nnx.Param(jnp.zeros(shape, param_dtype), logical_axes=axes)
    self.bias = nnx.Param(jnp.zeros((dim,), param_dtype), logical_axes=("embed",))

  def __call__(self, x, allowed):
    b, t, _, _, _ = x.shape
    h = jax.nn.silu(self.norm(x))
    k = self.kernel.shape[0]
    w = self.kernel[...].astype(self.dtype)
    idx = jnp.arange(t)
    y = self.bias[...].astype(self.dtype)
    p = k // 2
    # Shifts as zero-pad + slice rather than a clipped gather over frames (out-of-range
    # taps are masked anyway); sharding frames still costs more memory (docs/aot_paper.md).
    hp = jnp.pad(h, ((0, 0), (p, p), (0, 0), (0, 0), (0, 0)))
    for i, off in enumerate(range(-p, p + 1)):
      src = idx + off
      inside = (src >= 0) & (src < t)
      ok = inside[None] & jnp.take_along_axis(allowed, jnp.clip(src, 0, t - 1)[None, :, None], axis=2)[..., 0]
      shifted = jax.lax.slice_in_dim(hp, p + off, p + off + t, axis=1) * ok[:, :, None, None, None].astype(h.dtype)
      y = y + self._mix(shifted, w[i])
    return x + y

  def _mix(self, h, w):
    if w.ndim == 2:
      return jnp.einsum("bthwc,cd->bthwd", h, w)
    b, t, hh, ww, c = h.shape
    return frame_conv(h.reshape(b * t, hh, ww, c), w).reshape(b, t, hh, ww, -1)


class SpaceTimeBlock(nnx.Module):
  """ResBlock, then optional spatial self-attention and text cross-attention (or, with
  `text_attention='hybrid'`, DeepFloyd IF's one attention over text and image tokens), then
  temporal mixing ('attention' | 'conv' | 'conv+attention' | 'none')."""

  def __init__(self, in_ch: int, out_ch: int, *, emb_dim: int, text_dim: int, spatial_attn: bool,
               cross_attn: bool, temporal_mixing: str, temporal_conv_kernel: int, heads: int,
               frame_pos: bool, temporal_conv_spatial: int = 1,
               head_dim: int, groups: int, dropout_rate: float, backend: str, dtype, param_dtype,
               rngs: nnx.Rngs, res_kw: dict | None = None, text_attention: str = "cross",
               hybrid_self_attention: bool = True):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    attn_kw = dict(groups=groups, backend=backend, **kw)
    res_kw = res_kw or {}
    self.res = ResBlock(in_ch, out_ch, emb_dim, groups=groups, dropout_rate=dropout_rate, **res_kw, **kw)
    if text_attention == "hybrid":
      self.spatial = (HybridAttention(out_ch, text_dim, head_dim, eps=res_kw.get("eps", 1e-6),
                                      self_attention=hybrid_self_attention, **attn_kw)
                      if spatial_attn and text_dim > 0 else None)
      self.cross = None
    elif text_attention == "cross":
      self.spatial = SpatialAttention(out_ch, heads, head_dim, **attn_kw) if spatial_attn else None
      self.cross = (CrossAttention(out_ch, text_dim, heads, head_dim, **attn_kw)
                    if cross_attn and text_dim > 0 else None)
    else:
      raise ValueError(f"text_attention must be 'cross' or 'hybrid', got {text_attention!r}")
    # 'conv+attention': a local temporal conv, then attention over all frames.
    both = temporal_mixing == "conv+attention"
    conv_kw = dict(groups=groups, spatial=temporal_conv_spatial, **kw)
    self.temporal_conv = TemporalConv(out_ch, temporal_conv_kernel, **conv_kw) if both else None
    temporal_mixing = "attention" if both else temporal_mixing
    if temporal_mixing == "attention":
      self.temporal = TemporalAttention(out_ch, heads, head_dim, frame_pos=frame_pos, **attn_kw)
    elif temporal_mixing == "conv":
      self.temporal = TemporalConv(out_ch, temporal_conv_kernel, **conv_kw)
    elif temporal_mixing == "none":
      self.temporal = None
    else:
      raise ValueError("temporal_mixing must be 'attention', 'conv', 'conv+attention' or 'none', "
                       f"got {temporal_mixing!r}")

  def __call__(self, x, ctx: dict, *, deterministic: bool = True):
    h = self.res(x, ctx["emb"], dropout_rng=ctx.get("dropout_rng"), deterministic=deterministic)
    h = sharding.constrain(h, VIDEO_AXES)
    if isinstance(self.spatial, HybridAttention):
      h = self.spatial(h, ctx["text"], ctx["text_mask"])
    elif self.spatial is not None:
      h = self.spatial(h)
    if self.cross is not None:
      h = self.cross(h, ctx["text"], ctx["text_mask"])
    if self.temporal_conv is not None:
      h = self.temporal_conv(h, ctx["allowed"])
    if self.temporal is not None:
      h = self.temporal(h, ctx["allowed"])
    return sharding.constrain(h, VIDEO_AXES)


class Downsample(nnx.Module):
  """Stride-2 3x3 conv per frame (Efficient U-Net: downsample first in a level)."""

  def __init__(self, in_ch: int, out_ch: int, *, dtype, param_dtype, rngs: nnx.Rngs):
    self.conv = Conv2D(in_ch, out_ch, 3, stride=2, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x):
    return self.conv(x)


class Upsample(nnx.Module):
  """Nearest x2 per frame then 3x3 conv (Efficient U-Net: upsample last in a level).

  Cropped to `size` (the skip's H, W) so odd sides (e.g. 24x40 -> ... -> 3x5) work.
  """

  def __init__(self, in_ch: int, out_ch: int, *, dtype, param_dtype, rngs: nnx.Rngs):
    self.conv = Conv2D(in_ch, out_ch, 3, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x, size: tuple[int, int]):
    x = jnp.repeat(jnp.repeat(x, 2, axis=2), 2, axis=3)[:, :, :size[0], :size[1]]
    return self.conv(x)
