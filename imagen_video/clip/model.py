"""CLIP image and text towers in Flax NNX, numerically matching HF `CLIPModel`.

Both towers are pre-norm transformers (LayerNorm with bias, biased q/k/v/out projections,
fc1 -> act -> fc2). Image: non-overlapping patches (a conv without bias, done as a matmul on
NHWC pixels), a class token, learned positions, a LayerNorm before the layers, the class
token's LayerNorm as the pooled output. Text: token + position embeddings, causal attention,
final LayerNorm, pooled at the end-of-text token. Each pooled vector is projected (no bias)
to `projection_dim`. Parameters carry logical axis names for `parallel.sharding`.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from imagen_video.parallel.sharding import constrain

ACTIVATIONS = {
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),  # OpenAI CLIP's activation
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # OpenCLIP's (LAION) exports
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
}


@dataclasses.dataclass(frozen=True)
class ClipConfig:
  # text tower
  vocab_size: int = 49408
  text_length: int = 77  # max_position_embeddings: the tokenizer pads/cuts to this
  text_width: int = 512
  text_mlp: int = 2048
  text_layers: int = 12
  text_heads: int = 8
  text_act: str = "quick_gelu"
  text_eps: float = 1e-5
  eos_token_id: int = 49407
  pool_argmax: bool = False  # HF's old configs (eos_token_id == 2): pool at the largest id
  # image tower
  image_size: int = 224
  patch_size: int = 32
  vision_width: int = 768
  vision_mlp: int = 3072
  vision_layers: int = 12
  vision_heads: int = 12
  vision_act: str = "quick_gelu"
  vision_eps: float = 1e-5
  projection_dim: int = 512
  dtype: str = "float32"  # compute dtype
  param_dtype: str = "float32"

  def replace(self, **kw) -> "ClipConfig":
    return dataclasses.replace(self, **kw)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict) -> "ClipConfig":
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
      raise ValueError(f"ClipConfig: unknown fields {sorted(unknown)}; expected a subset of {sorted(known)}")
    return cls(**d)


def _param(rngs, shape, std, dtype, axes):
  return nnx.Param(jax.random.normal(rngs.params(), shape, dtype) * std, logical_axes=axes)


def _zeros(shape, dtype, axes):
  return nnx.Param(jnp.zeros(shape, dtype), logical_axes=axes)


class LayerNorm(nnx.Module):
  def __init__(self, width: int, eps: float, dtype):
    self.eps = eps
    self.scale = nnx.Param(jnp.ones((width,), dtype), logical_axes=("embed",))
    self.bias = _zeros((width,), dtype, ("embed",))

  def __call__(self, x):
    x32 = x.astype(jnp.float32)  # statistics in fp32 whatever the compute dtype
    mean = jnp.mean(x32, -1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), -1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
    return (y * self.scale[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)).astype(x.dtype)


class Attention(nnx.Module):
  def __init__(self, width: int, heads: int, dtype: str, param_dtype: str, rngs: nnx.Rngs):
    if width % heads:
      raise ValueError(f"ClipConfig: width {width} is not a multiple of heads {heads}")
    k = width // heads
    self.dtype, self.scale = dtype, k ** -0.5
    for name in ("q", "k", "v"):
      setattr(self, name, _param(rngs, (width, heads, k), width ** -0.5, param_dtype, ("embed", "heads", "kv")))
      setattr(self, name + "_bias", _zeros((heads, k), param_dtype, ("heads", "kv")))
    self.o = _param(rngs, (heads, k, width), width ** -0.5, param_dtype, ("heads", "kv", "embed"))
    self.o_bias = _zeros((width,), param_dtype, ("embed",))

  def __call__(self, x, mask):
    w = lambda p: p[...].astype(self.dtype)
    q, k, v = (jnp.einsum("bld,dnk->blnk", x, w(getattr(self, n))) + w(getattr(self, n + "_bias"))
               for n in ("q", "k", "v"))
    logits = jnp.einsum("bqnk,bsnk->bnqs", q, k).astype(jnp.float32) * self.scale
    if mask is not None:
      logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1).astype(self.dtype)  # fp32 softmax, as HF
    out = constrain(jnp.einsum("bnqs,bsnk->bqnk", probs, v), ("batch", "length", "heads", "kv"))
    return jnp.einsum("blnk,nkd->bld", out, w(self.o)) + w(self.o_bias)


class Block(nnx.Module):
  def __init__(self, width, heads, mlp, act, eps, dtype, param_dtype, rngs):
    self.dtype, self.act = dtype, ACTIVATIONS[act]
    self.norm1 = LayerNorm(width, eps, param_dtype)
    self.attn = Attention(width, heads, dtype, param_dtype, rngs)
    self.norm2 = LayerNorm(width, eps, param_dtype)
    self.fc1 = _param(rngs, (width, mlp), width ** -0.5, param_dtype, ("embed", "mlp"))
    self.fc1_bias = _zeros((mlp,), param_dtype, ("mlp",))
    self.fc2 = _param(rngs, (mlp, width), mlp ** -0.5, param_dtype, ("mlp", "embed"))
    self.fc2_bias = _zeros((width,), param_dtype, ("embed",))

  def __call__(self, x, mask=None):
    w = lambda p: p[...].astype(self.dtype)
    x = x + self.attn(self.norm1(x), mask)
    h = self.act(self.norm2(x) @ w(self.fc1) + w(self.fc1_bias))
    h = constrain(h, ("batch", "length", "mlp"))
    x = x + h @ w(self.fc2) + w(self.fc2_bias)
    return constrain(x, ("batch", "length", "embed"))


def _tower(cfg: ClipConfig, prefix: str, rngs) -> nnx.List:
  g = lambda name: getattr(cfg, f"{prefix}_{name}")
  return nnx.List([Block(g("width"), g("heads"), g("mlp"), g("act"), g("eps"), cfg.dtype, cfg.param_dtype, rngs)
                   for _ in range(g("layers"))])


class VisionTower(nnx.Module):
  def __init__(self, cfg: ClipConfig, rngs: nnx.Rngs):
    if cfg.image_size % cfg.patch_size:
      raise ValueError(f"ClipConfig: image_size {cfg.image_size} is not a multiple of patch_size {cfg.patch_size}")
    self.cfg = cfg
    d, p, pd = cfg.vision_width, cfg.patch_size, cfg.param_dtype
    grid = cfg.image_size // p
    self.patch = _param(rngs, (p * p * 3, d), (p * p * 3) ** -0.5, pd, (None, "embed"))  # rows: (y, x, rgb)
    self.cls = _param(rngs, (d,), d ** -0.5, pd, ("embed",))
    self.pos = _param(rngs, (grid * grid + 1, d), 0.02, pd, (None, "embed"))
    self.pre_norm = LayerNorm(d, cfg.vision_eps, pd)
    self.layers = _tower(cfg, "vision", rngs)
    self.post_norm = LayerNorm(d, cfg.vision_eps, pd)
    self.proj = _param(rngs, (d, cfg.projection_dim), d ** -0.5, pd, ("embed", None))

  def __call__(self, pixels):
    """Normalised pixels [B, S, S, 3] (see `preprocess`) -> image embeddings [B, projection_dim]."""
    cfg = self.cfg
    b, h, w, c = pixels.shape
    if (h, w, c) != (cfg.image_size, cfg.image_size, 3):
      raise ValueError(f"CLIP image tower: expected pixels [batch, {cfg.image_size}, {cfg.image_size}, 3], "
                       f"got {pixels.shape}")
    p, g = cfg.patch_size, cfg.image_size // cfg.patch_size
    x = pixels.astype(cfg.dtype).reshape(b, g, p, g, p, 3).transpose(0, 1, 3, 2, 4, 5).reshape(b, g * g, p * p * 3)
    x = x @ self.patch[...].astype(cfg.dtype)
    cls = jnp.broadcast_to(self.cls[...].astype(cfg.dtype), (b, 1, cfg.vision_width))
    x = jnp.concatenate([cls, x], axis=1) + self.pos[...].astype(cfg.dtype)
    x = constrain(self.pre_norm(x), ("batch", "length", "embed"))
    for layer in self.layers:
      x = layer(x)
    return self.post_norm(x[:, 0]) @ self.proj[...].astype(cfg.dtype)


class TextTower(nnx.Module):
  def __init__(self, cfg: ClipConfig, rngs: nnx.Rngs):
    self.cfg = cfg
    d, pd = cfg.text_width, cfg.param_dtype
    self.token_embedder = _param(rngs, (cfg.vocab_size, d), 0.02, pd, ("vocab", "embed"))
    self.pos = _param(rngs, (cfg.text_length, d), 0.01, pd, (None, "embed"))
    self.layers = _tower(cfg, "text", rngs)
    self.final_norm = LayerNorm(d, cfg.text_eps, pd)
    self.proj = _param(rngs, (d, cfg.projection_dim), d ** -0.5, pd, ("embed", None))

  def __call__(self, token_ids):
    """Token ids [B, L<=text_length] (see `tokenizer`) -> text embeddings [B, projection_dim]."""
    cfg = self.cfg
    length = token_ids.shape[1]
    if length > cfg.text_length:
      raise ValueError(f"CLIP text tower: {length} tokens, the model has {cfg.text_length} positions")
    x = jnp.take(self.token_embedder[...], token_ids, axis=0).astype(cfg.dtype)
    x = constrain(x + self.pos[...][:length].astype(cfg.dtype), ("batch", "length", "embed"))
    causal = jnp.tril(jnp.ones((length, length), bool))[None, None]
    for layer in self.layers:
      x = layer(x, causal)
    x = self.final_norm(x)
    # Causal attention: the end-of-text token's state never sees the padding after it.
    at = jnp.argmax(token_ids, -1) if cfg.pool_argmax else jnp.argmax(token_ids == cfg.eos_token_id, -1)
    pooled = jnp.take_along_axis(x, at[:, None, None], axis=1)[:, 0]
    return pooled @ self.proj[...].astype(cfg.dtype)


class CLIP(nnx.Module):
  """`CLIP(cfg, rngs=...)`: `.encode_image(pixels)` and `.encode_text(ids)`, unnormalised."""

  def __init__(self, cfg: ClipConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.vision = VisionTower(cfg, rngs)
    self.text = TextTower(cfg, rngs)

  def encode_image(self, pixels):
    return self.vision(pixels)

  def encode_text(self, token_ids):
    return self.text(token_ids)


def count_params(cfg: ClipConfig) -> int:
  abstract = nnx.eval_shape(lambda: CLIP(cfg, rngs=nnx.Rngs(0)))
  return sum(math.prod(v.shape) for v in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
