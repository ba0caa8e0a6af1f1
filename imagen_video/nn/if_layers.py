"""The text-conditioning layers of DeepFloyd IF's U-Net (diffusers' `AttnAddedKVProcessor`
attention and `TextTimeEmbedding`), so an IF network is a configuration of the Video U-Net.

HybridAttention: one attention per frame whose queries are the frame's H*W positions and whose
keys/values are the text tokens (GroupNorm over channel groups and tokens, then their own
projections) followed by the frame's own positions (omitted with `self_attention=False`).

TextPool: the text pooled into the conditioning embedding: LayerNorm, multi-head attention
pooling with the mean token (plus a learned position) as the only query, Dense, LayerNorm.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from imagen_video.nn.attention import attend
from imagen_video.nn.layers import Dense, GroupNorm, LayerNorm

TEXT_NORM_GROUPS = 32  # diffusers' cross_attention_norm_num_groups default, which IF uses


def _proj(in_dim, heads, head_dim, in_axis, kw, zero=False):
  return Dense(in_dim, (heads, head_dim), in_axes=(in_axis,), out_axes=("heads", "kv"), zero_init=zero, **kw)


class HybridAttention(nnx.Module):
  """x [B, T, H, W, C] attends per frame to [text tokens; the frame's positions]; residual."""

  def __init__(self, dim: int, text_dim: int, head_dim: int, *, groups: int, eps: float,
               self_attention: bool, backend: str, dtype, param_dtype, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    heads = dim // head_dim
    self.backend = backend
    self.norm = GroupNorm(dim, groups, eps=eps, dtype=dtype, param_dtype=param_dtype)
    self.text_norm = GroupNorm(text_dim, TEXT_NORM_GROUPS, eps=eps, dtype=dtype, param_dtype=param_dtype)
    self.q = _proj(dim, heads, head_dim, "embed", kw)
    self.k = _proj(dim, heads, head_dim, "embed", kw) if self_attention else None
    self.v = _proj(dim, heads, head_dim, "embed", kw) if self_attention else None
    self.text_k = _proj(text_dim, heads, head_dim, "embed", kw)
    self.text_v = _proj(text_dim, heads, head_dim, "embed", kw)
    self.out = Dense((heads, head_dim), dim, in_axes=("heads", "kv"), out_axes=("embed",),
                     zero_init=True, **kw)

  def __call__(self, x, text, text_mask):
    b, t, h, w, c = x.shape
    y = self.norm(x).reshape(b * t, h * w, c)
    # GroupNorm of the text pools each channel group over all tokens (torch GroupNorm on [B, D, L]).
    tn = self.text_norm(text[:, None, :, None, :])[:, 0, :, 0, :]
    rep = lambda a: jnp.repeat(a, t, axis=0)  # per sample -> per frame
    k, v, mask = rep(self.text_k(tn)), rep(self.text_v(tn)), rep(text_mask)
    if self.k is not None:
      k = jnp.concatenate([k, self.k(y)], axis=1)
      v = jnp.concatenate([v, self.v(y)], axis=1)
      mask = jnp.concatenate([mask, jnp.ones((b * t, h * w), bool)], axis=1)
    out = attend(self.q(y), k, v, mask=mask[:, None, None, :], backend=self.backend)
    return x + self.out(out).reshape(x.shape).astype(x.dtype)


class TextPool(nnx.Module):
  """text [B, L, D] (+ mask) -> [B, emb_dim]: IF's attention pooling of the T5 tokens."""

  def __init__(self, text_dim: int, emb_dim: int, heads: int, *, eps: float, dtype, param_dtype,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    if text_dim % heads:
      raise ValueError(f"text_pool_heads={heads} must divide the text width {text_dim}")
    self.heads = heads
    self.norm1 = LayerNorm(text_dim, "text_embed", eps=eps, dtype=dtype, param_dtype=param_dtype)
    self.position = nnx.Param(jax.random.normal(rngs.params(), (text_dim,), param_dtype) / math.sqrt(text_dim),
                              logical_axes=("text_embed",))
    self.q = _proj(text_dim, heads, text_dim // heads, "text_embed", kw)
    self.k = _proj(text_dim, heads, text_dim // heads, "text_embed", kw)
    self.v = _proj(text_dim, heads, text_dim // heads, "text_embed", kw)
    self.proj = Dense(text_dim, emb_dim, in_axes=("text_embed",), out_axes=("mlp",), **kw)
    self.norm2 = LayerNorm(emb_dim, "mlp", eps=eps, dtype=dtype, param_dtype=param_dtype)

  def __call__(self, text, mask):
    x = self.norm1(text)
    m = mask.astype(jnp.float32)[..., None]
    query = (x.astype(jnp.float32) * m).sum(1) / jnp.maximum(m.sum(1), 1.0)
    query = (query + self.position[...]).astype(x.dtype)[:, None]  # [B, 1, D]
    seq = jnp.concatenate([query, x], axis=1)
    kmask = jnp.concatenate([jnp.ones_like(mask[:, :1]), mask], axis=1)
    out = attend(self.q(query), self.k(seq), self.v(seq), mask=kmask[:, None, None, :])
    return self.norm2(self.proj(out.reshape(out.shape[0], -1)))
