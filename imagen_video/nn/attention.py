"""Multi-head attention with a pluggable kernel backend.

All attention in the network (spatial self-attention, temporal self-attention,
text cross-attention) goes through `attend`, with the kernel chosen by name from
`config.model.attention_backend`:

  'xla'    -> jax.nn.dot_product_attention(implementation='xla')
  'cudnn'  -> jax.nn.dot_product_attention(implementation='cudnn') (GPU, bf16/fp16)
  'splash' -> the Pallas splash kernel (TPU; no bias, key-padding masks: nn/splash.py)
  'auto'   -> per call, by the platform traced for (`auto_backend`): cuDNN flash on GPU,
              splash on TPU, each where it takes the call; XLA otherwise (and on CPU).

Other kernels plug in with `register_backend(name, fn)`.

Layout everywhere: q [N, Tq, heads, head_dim], k/v [N, S, heads, head_dim];
bias/mask broadcastable to [N, heads, Tq, S] (mask True = attend).
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from imagen_video.nn import splash
from imagen_video.nn.layers import Dense, project
from imagen_video.parallel import sharding

AttentionFn = Callable[..., jax.Array]


def _jax_dpa(implementation):
  def fn(q, k, v, *, bias=None, mask=None):
    return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask,
                                        implementation=implementation)
  return fn


def auto_backend(platform: str, q, k, *, bias=None, mask=None) -> str:
  """The kernel 'auto' runs for this call on `platform`."""
  d = q.shape[-1]
  if (platform == "gpu" and q.dtype in (jnp.bfloat16, jnp.float16) and d % 8 == 0 and d <= 128
      and (bias is None or (q.shape[1] % 2 == 0 and k.shape[1] % 2 == 0))):
    return "cudnn"  # cuDNN's flash conditions (head dim; even lengths with a bias)
  if platform == "tpu" and splash.supports(q, k, bias=bias, mask=mask):
    return "splash"
  return "xla"


def _auto(q, k, v, *, bias=None, mask=None):
  name = auto_backend(sharding.target_platform(), q, k, bias=bias, mask=mask)
  return _BACKENDS[name](q, k, v, bias=bias, mask=mask)


_BACKENDS: dict[str, AttentionFn] = {
    "xla": _jax_dpa("xla"),
    "cudnn": _jax_dpa("cudnn"),
    "splash": splash.splash_attention,
    "auto": _auto,
}


def register_backend(name: str, fn: AttentionFn) -> None:
  """Adds a kernel `fn(q, k, v, *, bias=None, mask=None) -> out` under `name`."""
  _BACKENDS[name] = fn


def attend(q, k, v, *, bias=None, mask=None, backend: str = "xla") -> jax.Array:
  try:
    fn = _BACKENDS[backend]
  except KeyError:
    raise ValueError(f"unknown attention_backend {backend!r}; known: {sorted(_BACKENDS)}") from None
  return fn(q, k, v, bias=bias, mask=mask)


class Attention(nnx.Module):
  """q from `x` [N, Tq, dim]; k, v from `context` [N, S, context_dim] (default x)."""

  def __init__(self, dim: int, heads: int, head_dim: int, *, context_dim: int | None = None,
               context_axis: str = "embed", backend: str = "xla", dtype=jnp.float32,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    context_dim = dim if context_dim is None else context_dim
    self.backend = backend
    self.q = Dense(dim, (heads, head_dim), in_axes=("embed",), out_axes=("heads", "kv"), **kw)
    self.k = Dense(context_dim, (heads, head_dim), in_axes=(context_axis,), out_axes=("heads", "kv"), **kw)
    self.v = Dense(context_dim, (heads, head_dim), in_axes=(context_axis,), out_axes=("heads", "kv"), **kw)
    self.out = Dense((heads, head_dim), dim, in_axes=("heads", "kv"), out_axes=("embed",),
                     zero_init=True, **kw)

  def __call__(self, x, context=None, *, bias=None, mask=None):
    if context is None:
      q, k, v = self._self_qkv(x)
    else:
      q, k, v = self.q(x), self.k(context), self.v(context)
    if bias is not None:
      bias = bias.astype(q.dtype)
    return self.out(attend(q, k, v, bias=bias, mask=mask, backend=self.backend))

  def _self_qkv(self, x):
    """q, k, v of `x` as one matmul over the three stacked kernels: the input is read once and
    the GEMM is three times as wide (on CPU 1.2% off the bench's train step: bench/RESULTS.md).
    Stacked on a new axis, so a heads-sharded kernel stays sharded as it is."""
    proj = (self.q, self.k, self.v)
    kernel = jnp.stack([p.kernel[...] for p in proj], axis=-3)  # [dim, 3, heads, kv]
    bias = None if self.q.bias is None else jnp.stack([p.bias[...] for p in proj])
    qkv = project(x, kernel, bias, 1, self.q.dtype)
    return qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]


def relative_position_bucket(rel: jax.Array, num_buckets: int = 32, max_distance: int = 128):
  """T5 bidirectional buckets: exact for small offsets, log-spaced beyond.

  Works for any number of frames, so a model trained on 16 frames can run on 32.
  """
  num_buckets //= 2
  ret = (rel > 0).astype(jnp.int32) * num_buckets
  n = jnp.abs(rel)
  max_exact = num_buckets // 2
  is_small = n < max_exact
  large = max_exact + (jnp.log(jnp.maximum(n, 1).astype(jnp.float32) / max_exact)
                       / math.log(max_distance / max_exact) * (num_buckets - max_exact)).astype(jnp.int32)
  large = jnp.minimum(large, num_buckets - 1)
  return ret + jnp.where(is_small, n, large)


class RelativePositionBias(nnx.Module):
  """Learned per-head bias over frame offsets -> [heads, T, T]."""

  def __init__(self, heads: int, num_buckets: int = 32, max_distance: int = 128, *,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.num_buckets = num_buckets
    self.max_distance = max_distance
    self.table = nnx.Param(jnp.zeros((num_buckets, heads), param_dtype), logical_axes=(None, "heads"))

  def __call__(self, length: int):
    pos = jnp.arange(length)
    buckets = relative_position_bucket(pos[None, :] - pos[:, None], self.num_buckets, self.max_distance)
    return jnp.transpose(self.table[...][buckets], (2, 0, 1))
