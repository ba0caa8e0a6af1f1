"""T5 encoder in Flax NNX (v1.1 gated-GELU and v1.0 ReLU), numerically matching HF `T5EncoderModel`.

Layout follows the reference: pre-norm blocks (RMS norm without bias or mean), attention
without 1/sqrt(d) scaling, one relative-position bias table (HF's block 0) shared by all
layers, no dropout (the encoder is frozen at inference). Parameters carry logical axis names
("vocab", "embed", "heads", "kv", "mlp", "relpos_buckets") for `parallel.sharding`.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from imagen_video.parallel.sharding import constrain

ACTIVATIONS = {
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),  # HF "gelu_new" = tanh approximation
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
}


@dataclasses.dataclass(frozen=True)
class T5Config:
  vocab_size: int = 32128
  d_model: int = 512
  d_kv: int = 64
  d_ff: int = 1024
  num_layers: int = 8
  num_heads: int = 6
  num_buckets: int = 32
  max_distance: int = 128
  gated: bool = True  # v1.1: act(x W0) * (x W1); v1.0: act(x W)
  act: str = "gelu_new"
  eps: float = 1e-6
  dtype: str = "float32"  # compute dtype
  param_dtype: str = "float32"

  def replace(self, **kw) -> "T5Config":
    return dataclasses.replace(self, **kw)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict) -> "T5Config":
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
      raise ValueError(f"T5Config: unknown fields {sorted(unknown)}; expected a subset of {sorted(known)}")
    return cls(**d)


def _v11(d_model, d_ff, layers, heads, d_kv=64):
  return T5Config(d_model=d_model, d_ff=d_ff, num_layers=layers, num_heads=heads, d_kv=d_kv)


def _v10(d_model, d_ff, layers, heads, d_kv=64):
  return T5Config(d_model=d_model, d_ff=d_ff, num_layers=layers, num_heads=heads, d_kv=d_kv,
                  gated=False, act="relu")


# Public checkpoint sizes (HF google/t5-v1_1-* and t5-*); "tiny" is for CPU tests/demos.
PRESETS = {
    "v1_1": {
        "tiny": _v11(64, 128, 2, 4, 16).replace(vocab_size=256),
        "small": _v11(512, 1024, 8, 6),
        "base": _v11(768, 2048, 12, 12),
        "large": _v11(1024, 2816, 24, 16),
        "xl": _v11(2048, 5120, 24, 32),
        "xxl": _v11(4096, 10240, 24, 64),
    },
    "v1_0": {
        "tiny": _v10(64, 128, 2, 4, 16).replace(vocab_size=256),
        "small": _v10(512, 2048, 6, 8),
        "base": _v10(768, 3072, 12, 12),
        "large": _v10(1024, 4096, 24, 16),
        "3b": _v10(1024, 16384, 24, 32, 128),
        "11b": _v10(1024, 65536, 24, 128, 128),
    },
}


def preset(variant: str, name: str, **overrides) -> T5Config:
  try:
    cfg = PRESETS[variant][name]
  except KeyError:
    raise ValueError(f"unknown T5 preset {variant!r}/{name!r}; known: "
                     + ", ".join(f"{v}/{n}" for v in PRESETS for n in PRESETS[v])) from None
  return cfg.replace(**overrides)


def relative_position_buckets(q_len: int, k_len: int, num_buckets: int, max_distance: int) -> np.ndarray:
  """Bidirectional T5 buckets [q_len, k_len], computed like HF (float32 log) on the host."""
  rel = np.arange(k_len)[None, :] - np.arange(q_len)[:, None]  # key - query
  half = num_buckets // 2
  buckets = (rel > 0).astype(np.int64) * half
  rel = np.abs(rel)
  max_exact = half // 2
  safe = np.maximum(rel, 1).astype(np.float32)
  large = max_exact + (np.log(safe / max_exact) / math.log(max_distance / max_exact)
                       * (half - max_exact)).astype(np.int64)
  large = np.minimum(large, half - 1)
  return (buckets + np.where(rel < max_exact, rel, large)).astype(np.int32)


def _param(rngs, shape, std, dtype, axes):
  return nnx.Param(jax.random.normal(rngs.params(), shape, dtype) * std, logical_axes=axes)


class RMSNorm(nnx.Module):
  def __init__(self, cfg: T5Config):
    self.eps = cfg.eps
    self.scale = nnx.Param(jnp.ones((cfg.d_model,), cfg.param_dtype), logical_axes=("embed",))

  def __call__(self, x):
    var = jnp.mean(jnp.square(x.astype(jnp.float32)), axis=-1, keepdims=True)
    y = (x.astype(jnp.float32) * jax.lax.rsqrt(var + self.eps)).astype(x.dtype)
    return self.scale[...].astype(x.dtype) * y


class Attention(nnx.Module):
  def __init__(self, cfg: T5Config, rngs: nnx.Rngs):
    d, n, k, pd = cfg.d_model, cfg.num_heads, cfg.d_kv, cfg.param_dtype
    self.dtype = cfg.dtype
    self.q = _param(rngs, (d, n, k), (d * k) ** -0.5, pd, ("embed", "heads", "kv"))
    self.k = _param(rngs, (d, n, k), d ** -0.5, pd, ("embed", "heads", "kv"))
    self.v = _param(rngs, (d, n, k), d ** -0.5, pd, ("embed", "heads", "kv"))
    self.o = _param(rngs, (n, k, d), (n * k) ** -0.5, pd, ("heads", "kv", "embed"))

  def __call__(self, x, bias):
    w = lambda p: p[...].astype(self.dtype)
    q = jnp.einsum("bld,dnk->blnk", x, w(self.q))
    k = jnp.einsum("bld,dnk->blnk", x, w(self.k))
    v = jnp.einsum("bld,dnk->blnk", x, w(self.v))
    # T5 has no 1/sqrt(d_kv) scaling (folded into the q init); softmax in fp32 as HF does.
    logits = jnp.einsum("bqnk,bsnk->bnqs", q, k).astype(jnp.float32) + bias
    probs = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    out = jnp.einsum("bnqs,bsnk->bqnk", probs, v)
    out = constrain(out, ("batch", "length", "heads", "kv"))
    return jnp.einsum("blnk,nkd->bld", out, w(self.o))


class FeedForward(nnx.Module):
  def __init__(self, cfg: T5Config, rngs: nnx.Rngs):
    d, f, pd = cfg.d_model, cfg.d_ff, cfg.param_dtype
    self.dtype, self.act, self.gated = cfg.dtype, ACTIVATIONS[cfg.act], cfg.gated
    self.wi_0 = _param(rngs, (d, f), d ** -0.5, pd, ("embed", "mlp"))
    if cfg.gated:
      self.wi_1 = _param(rngs, (d, f), d ** -0.5, pd, ("embed", "mlp"))
    self.wo = _param(rngs, (f, d), f ** -0.5, pd, ("mlp", "embed"))

  def __call__(self, x):
    w = lambda p: p[...].astype(self.dtype)
    h = self.act(x @ w(self.wi_0))
    if self.gated:
      h = h * (x @ w(self.wi_1))
    h = constrain(h, ("batch", "length", "mlp"))
    return h @ w(self.wo)


class Block(nnx.Module):
  def __init__(self, cfg: T5Config, rngs: nnx.Rngs):
    self.attn_norm = RMSNorm(cfg)
    self.attn = Attention(cfg, rngs)
    self.ff_norm = RMSNorm(cfg)
    self.ff = FeedForward(cfg, rngs)

  def __call__(self, x, bias):
    x = x + self.attn(self.attn_norm(x), bias)
    x = x + self.ff(self.ff_norm(x))
    return constrain(x, ("batch", "length", "embed"))


class T5Encoder(nnx.Module):
  """`T5Encoder(cfg, rngs=...)(token_ids [B,L] int, mask [B,L] bool) -> [B,L,d_model]`."""

  def __init__(self, cfg: T5Config, *, rngs: nnx.Rngs):
    self.cfg = cfg
    pd = cfg.param_dtype
    self.token_embedder = _param(rngs, (cfg.vocab_size, cfg.d_model), 1.0, pd, ("vocab", "embed"))
    self.relpos_bias = _param(rngs, (cfg.num_buckets, cfg.num_heads), cfg.d_model ** -0.5, pd,
                              ("relpos_buckets", "heads"))
    self.layers = nnx.List([Block(cfg, rngs) for _ in range(cfg.num_layers)])
    self.final_norm = RMSNorm(cfg)

  def __call__(self, token_ids, mask):
    cfg = self.cfg
    _, length = token_ids.shape
    x = jnp.take(self.token_embedder[...], token_ids, axis=0).astype(cfg.dtype)
    x = constrain(x, ("batch", "length", "embed"))
    buckets = relative_position_buckets(length, length, cfg.num_buckets, cfg.max_distance)
    pos = jnp.transpose(self.relpos_bias[...][buckets].astype(cfg.dtype), (2, 0, 1))  # [n, q, k]
    # HF adds the position bias in the compute dtype, then masks keys with the dtype's minimum.
    key_bias = jnp.where(mask[:, None, None, :], 0.0, jnp.finfo(jnp.float32).min)
    bias = pos[None].astype(jnp.float32) + key_bias
    for layer in self.layers:
      x = layer(x, bias)
    return self.final_norm(x)


def count_params(cfg: T5Config) -> dict[str, int]:
  """Parameter counts from `nnx.eval_shape` (nothing is allocated)."""
  abstract = nnx.eval_shape(lambda: T5Encoder(cfg, rngs=nnx.Rngs(0)))
  state = nnx.state(abstract, nnx.Param)
  sizes = {jax.tree_util.keystr(p): math.prod(v.shape)
           for p, v in jax.tree_util.tree_flatten_with_path(state)[0]}
  embed = sum(s for k, s in sizes.items() if "token_embedder" in k)
  total = sum(sizes.values())
  return {"total": total, "embedding": embed, "non_embedding": total - embed}
