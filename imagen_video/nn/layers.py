"""Basic layers whose parameters carry logical axis names.

Every parameter is an `nnx.Param(value, logical_axes=(...))`; the names are
mapped to mesh axes by `imagen_video.parallel.sharding`. Parameters are stored
in `param_dtype` (fp32) and cast to the compute `dtype` (bf16 or fp32) at use;
normalisation statistics are always computed in fp32.

Video activations are [B, T, H, W, C] (channels-last, frames on axis 1).
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from imagen_video.parallel import sharding

VIDEO_AXES = ("batch", "frames", "height", "width", "embed")

# Exact (erf) GELU, as torch.nn.GELU(): networks imported from PyTorch use it.
ACTIVATIONS = {"silu": jax.nn.silu, "gelu": lambda x: jax.nn.gelu(x, approximate=False)}


def _init(key, shape, param_dtype, zero: bool, fan_in: int):
  if zero:  # zero-initialised output layers: a fresh residual branch is the identity
    return jnp.zeros(shape, param_dtype)
  return jax.random.normal(key, shape, param_dtype) * (1.0 / math.sqrt(fan_in))


class Dense(nnx.Module):
  """y = x @ W + b, contracting the last `len(in_shape)` dims into `out_shape`.

  `DenseGeneral`-style so attention projections keep a [embed, heads, kv]
  kernel that shards over "heads".
  """

  def __init__(self, in_shape: int | Sequence[int], out_shape: int | Sequence[int], *,
               in_axes: Sequence[str | None], out_axes: Sequence[str | None],
               use_bias: bool = True, zero_init: bool = False, dtype=jnp.float32,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.in_shape = (in_shape,) if isinstance(in_shape, int) else tuple(in_shape)
    self.out_shape = (out_shape,) if isinstance(out_shape, int) else tuple(out_shape)
    self.dtype = dtype
    fan_in = math.prod(self.in_shape)
    self.kernel = nnx.Param(_init(rngs.params(), self.in_shape + self.out_shape, param_dtype,
                                  zero_init, fan_in), logical_axes=tuple(in_axes) + tuple(out_axes))
    self.bias = (nnx.Param(jnp.zeros(self.out_shape, param_dtype), logical_axes=tuple(out_axes))
                 if use_bias else None)

  def __call__(self, x):
    bias = None if self.bias is None else self.bias[...]
    return project(x, self.kernel[...], bias, len(self.in_shape), self.dtype)


def project(x, kernel, bias, n_in: int, dtype):
  """x @ kernel (+ bias) in `dtype`, contracting x's last `n_in` dims with kernel's first."""
  y = jax.lax.dot_general(x.astype(dtype), kernel.astype(dtype),
                          ((tuple(range(x.ndim - n_in, x.ndim)), tuple(range(n_in))), ((), ())))
  return y if bias is None else y + bias.astype(dtype)


# XLA's CPU convolutions run far below their speed at channel counts that are not a multiple of
# 16: 2 x 8 frames of 32x32, 56 -> 56 channels, forward and both gradients 19.4 ms, 15.6 ms with
# the channels zero-padded to 64 (bench/RESULTS.md). Zero channels change no output; RGB-sized
# counts are faster as they are. Other platforms pad (or not) by themselves.
CPU_CHANNEL_MULTIPLE = 16


def cpu_channel_padding(channels: int) -> int:
  """Zero channels a CPU convolution adds to `channels`."""
  m = CPU_CHANNEL_MULTIPLE
  return -channels % m if channels > m else 0


def frame_conv(x, kernel, stride: int = 1):
  """SAME convolution of frames x [N, H, W, C] by kernel [kh, kw, C, C_out]; on CPU with the
  channels zero-padded as above (every per-frame convolution of the network goes through here)."""
  c, out = kernel.shape[-2:]
  if sharding.target_platform() == "cpu":
    pad_in, pad_out = cpu_channel_padding(c), cpu_channel_padding(out)
    x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, pad_in)))
    kernel = jnp.pad(kernel, ((0, 0), (0, 0), (0, pad_in), (0, pad_out)))
  return jax.lax.conv_general_dilated(x, kernel, window_strides=(stride, stride), padding="SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))[..., :out]


class Conv2D(nnx.Module):
  """Spatial convolution applied to every frame independently (SAME padding)."""

  def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, *, stride: int = 1,
               zero_init: bool = False, dtype=jnp.float32, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.stride = stride
    self.dtype = dtype
    self.kernel = nnx.Param(_init(rngs.params(), (kernel, kernel, in_ch, out_ch), param_dtype,
                                  zero_init, kernel * kernel * in_ch),
                            logical_axes=("conv_h", "conv_w", "conv_in", "embed"))
    self.bias = nnx.Param(jnp.zeros((out_ch,), param_dtype), logical_axes=("embed",))

  def __call__(self, x):
    b, t, h, w, c = x.shape
    y = frame_conv(x.reshape(b * t, h, w, c).astype(self.dtype), self.kernel[...].astype(self.dtype),
                   self.stride)
    y = y + self.bias[...].astype(self.dtype)
    return y.reshape(b, t, *y.shape[1:])


class GroupNorm(nnx.Module):
  """GroupNorm with statistics per frame (over H, W and the channels of a group).

  Per-frame statistics keep frames independent outside the temporal layers, so
  padded frames and image frames in a joint batch never leak into other frames,
  and an image is normalised exactly as one frame of a video.
  """

  def __init__(self, channels: int, groups: int = 32, *, eps: float = 1e-6,
               dtype=jnp.float32, param_dtype=jnp.float32):
    self.groups = math.gcd(groups, channels)
    self.eps = eps
    self.dtype = dtype
    self.scale = nnx.Param(jnp.ones((channels,), param_dtype), logical_axes=("embed",))
    self.bias = nnx.Param(jnp.zeros((channels,), param_dtype), logical_axes=("embed",))

  def __call__(self, x):
    *lead, h, w, c = x.shape
    per, n = c // self.groups, h * w * (c // self.groups)
    xf = x.astype(jnp.float32)
    # Both moments in one pass over x (per-channel sums, then per group), the normalisation and
    # affine as one multiply-add: fewer passes over activations, forward and backward (alone 2.2x
    # faster on CPU, the bench's train step -4%: bench/RESULTS.md). The sums are of x less a
    # per-group pivot (its first pixel's mean; gradient stopped, as mean and variance do not
    # depend on it), which keeps E[d^2] - E[d]^2 exact where the mean dwarfs the spread.
    pivot = jax.lax.stop_gradient(xf[..., 0, 0, :].reshape(*lead, self.groups, per).mean(-1))
    d = xf - jnp.repeat(pivot, per, axis=-1)[..., None, None, :]
    s1 = d.sum((-3, -2)).reshape(*lead, self.groups, per).sum(-1)
    s2 = jnp.square(d).sum((-3, -2)).reshape(*lead, self.groups, per).sum(-1)
    mean_d = s1 / n
    var = jnp.maximum(s2 / n - jnp.square(mean_d), 0.0)
    a = jnp.repeat(jax.lax.rsqrt(var + self.eps), per, axis=-1) * self.scale[...]
    b = self.bias[...] - jnp.repeat(pivot + mean_d, per, axis=-1) * a
    return (xf * a[..., None, None, :] + b[..., None, None, :]).astype(self.dtype)


class LayerNorm(nnx.Module):
  """LayerNorm over the last axis (fp32 statistics); used on text tokens."""

  def __init__(self, dim: int, axis_name: str = "embed", *, eps: float = 1e-6,
               dtype=jnp.float32, param_dtype=jnp.float32):
    self.eps = eps
    self.dtype = dtype
    self.scale = nnx.Param(jnp.ones((dim,), param_dtype), logical_axes=(axis_name,))
    self.bias = nnx.Param(jnp.zeros((dim,), param_dtype), logical_axes=(axis_name,))

  def __call__(self, x):
    xf = x.astype(jnp.float32)
    mean = xf.mean(-1, keepdims=True)
    var = jnp.square(xf - mean).mean(-1, keepdims=True)
    y = (xf - mean) * jax.lax.rsqrt(var + self.eps)
    return (y * self.scale[...] + self.bias[...]).astype(self.dtype)


def frame_index_features(frames: int, dim: int) -> jax.Array:
  """[frames, dim] sinusoidal features of the frame index (frame position embeddings)."""
  return sinusoidal_embedding(jnp.arange(frames), dim, max_period=1000.0)


def sinusoidal_embedding(x: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
  """[B] float -> [B, dim] sin/cos features (transformer/DDPM style)."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = x.astype(jnp.float32)[:, None] * freqs[None]
  emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
  return jnp.pad(emb, ((0, 0), (0, dim - 2 * half)))


def dropout(x: jax.Array, rate: float, rng: jax.Array | None, deterministic: bool) -> jax.Array:
  """Functional dropout: a key in, no RNG state in the module (easy to jit/shard)."""
  if deterministic or rate == 0.0:
    return x
  if rng is None:
    raise ValueError("dropout with deterministic=False needs dropout_rng")
  keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)
