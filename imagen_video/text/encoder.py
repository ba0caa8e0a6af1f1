"""`TextEncoder`: what the diffusion stages see of text conditioning.

    enc = TextEncoder.from_config(config.text, mesh=mesh, rules=rules)
    ids, mask = enc.tokenize(["a red circle moving left"])        # host, numpy
    emb, mask = enc.apply(enc.params, ids, mask)                  # pure; call inside jax.jit
    emb, mask = enc.embed_batch(enc.params, batch)                # precomputed or on device, by config

`apply` is a pure function of (params, ids, mask) so train/sample steps pass the T5 params
as a (sharded) jit argument instead of baking them in as constants. With `frozen` the
output carries no gradient. Embeddings are float32 with padded positions zeroed (or, with
`pad_outputs='keep'`, T5's own outputs there, as DeepFloyd IF's pipeline feeds its U-Net), so
precomputed (dataset) and on-device embeddings are interchangeable up to rounding.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from imagen_video.parallel.sharding import Rules, run_once, state_shardings
from imagen_video.text import t5, t5_checkpoint
from imagen_video.text.tokenizer import Tokenizer

# Batch keys shared with the data pipeline.
TOKENS, MASK, EMBEDDINGS = "text_tokens", "text_mask", "text_embeddings"


def default_config(**overrides) -> ml_collections.ConfigDict:
  """`config.text`: every field is read by `TextEncoder.from_config`."""
  c = ml_collections.ConfigDict()
  c.variant = "v1_1"       # "v1_1" (gated-GELU) or "v1_0" (ReLU); ignored with a checkpoint
  c.preset = "tiny"        # tiny/small/base/large/xl/xxl (v1_0: tiny/small/base/large/3b/11b)
  c.checkpoint = ""        # converted checkpoint dir (`imagen-video convert-t5`); "" = random init
  c.tokenizer = ""         # sentencepiece .model; "" = <checkpoint>/spiece.model
  c.max_length = 16        # tokens per prompt incl. eos (the paper's T5-XXL setting: 128)
  c.dtype = "float32"      # compute dtype: float32 or bfloat16
  c.param_dtype = "float32"
  c.frozen = True          # stop_gradient on the output (False: train jointly)
  c.precomputed = False    # embeddings come from the dataset (`text_embeddings`) instead
  c.seed = 0               # random-init seed when no checkpoint is given
  c.pad_outputs = "zero"   # padded positions: "zero" (ours) or "keep" T5's outputs there (IF)
  c.update(overrides)
  return c


@dataclasses.dataclass
class TextEncoder:
  cfg: t5.T5Config
  graphdef: nnx.GraphDef
  params: nnx.State
  tokenizer: Tokenizer | None
  frozen: bool = True
  precomputed: bool = False
  keep_pads: bool = False

  @property
  def d_model(self) -> int:
    return self.cfg.d_model

  @classmethod
  def from_config(cls, text: ml_collections.ConfigDict, *, mesh: Mesh | None = None,
                  rules: Rules = ()) -> "TextEncoder":
    tok_path = text.tokenizer or (t5_checkpoint.tokenizer_path(text.checkpoint) if text.checkpoint else None)
    tokenizer = Tokenizer(tok_path, text.max_length) if tok_path else None
    if text.checkpoint:
      model = t5_checkpoint.restore(text.checkpoint, mesh=mesh, rules=rules,
                                    dtype=text.dtype, param_dtype=text.param_dtype)
    else:
      vocab = {"vocab_size": tokenizer.vocab_size} if tokenizer else {}
      cfg = t5.preset(text.variant, text.preset, dtype=text.dtype, param_dtype=text.param_dtype, **vocab)
      model = init_model(cfg, text.seed, mesh, rules)
    if tokenizer:
      tokenizer.check_fits(model.cfg.vocab_size, where=text.checkpoint or f"{text.variant}/{text.preset}")
    pads = text.get("pad_outputs", "zero")
    if pads not in ("zero", "keep"):
      raise ValueError(f"config.text.pad_outputs must be 'zero' or 'keep', got {pads!r}")
    graphdef, params = nnx.split(model)
    return cls(model.cfg, graphdef, params, tokenizer, frozen=text.frozen, precomputed=text.precomputed,
               keep_pads=pads == "keep")

  def tokenize(self, texts: str | Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    if self.tokenizer is None:
      raise ValueError("TextEncoder has no tokenizer: set config.text.tokenizer or use a checkpoint "
                       "with spiece.model")
    return self.tokenizer(texts)

  def apply(self, params: nnx.State, token_ids, mask) -> tuple[jax.Array, jax.Array]:
    """Pure: (params, ids [B,L], mask [B,L]) -> (embeddings f32 [B,L,D] zero where masked unless
    keep_pads, mask)."""
    mask = jnp.asarray(mask, bool)
    out = nnx.merge(self.graphdef, params)(jnp.asarray(token_ids, jnp.int32), mask).astype(jnp.float32)
    if not self.keep_pads:
      out = jnp.where(mask[..., None], out, 0.0)
    return (jax.lax.stop_gradient(out) if self.frozen else out), mask

  @functools.cached_property
  def _apply_jit(self):
    return jax.jit(self.apply)

  def encode(self, token_ids, mask) -> tuple[jax.Array, jax.Array]:
    """`apply` with this encoder's own params, jitted."""
    return self.encode_with(self.params, token_ids, mask)

  def encode_with(self, params: nnx.State, token_ids, mask) -> tuple[jax.Array, jax.Array]:
    """`apply`, jitted: every prompt's text encoding at sampling goes through here."""
    return self._apply_jit(params, token_ids, mask)

  def encode_text(self, texts: str | Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    emb, mask = self.encode(*self.tokenize(texts))
    return np.asarray(emb), np.asarray(mask)

  def embed_batch(self, params: nnx.State, batch: dict) -> tuple[jax.Array, jax.Array]:
    """Embeddings for a training batch: from the dataset if precomputed, else computed here."""
    if self.precomputed:
      if EMBEDDINGS not in batch:
        raise KeyError(f"config.text.precomputed is set but the batch has no {EMBEDDINGS!r} "
                       f"(keys: {sorted(batch)}); precompute with TextEncoder.encode_text")
      return jnp.asarray(batch[EMBEDDINGS], jnp.float32), jnp.asarray(batch[MASK], bool)
    return self.apply(params, batch[TOKENS], batch[MASK])


def init_model(cfg: t5.T5Config, seed: int = 0, mesh: Mesh | None = None, rules: Rules = ()) -> t5.T5Encoder:
  """Random-initialised encoder, created directly in its sharding when a mesh is given."""
  make = lambda: nnx.split(t5.T5Encoder(cfg, rngs=nnx.Rngs(seed)))[1]
  if mesh is None:
    return t5.T5Encoder(cfg, rngs=nnx.Rngs(seed))
  graphdef, abstract = nnx.split(t5_checkpoint.abstract_model(cfg))
  state = run_once(make, out_shardings=state_shardings(abstract, mesh, rules))
  return nnx.merge(graphdef, state)


def precompute(enc: TextEncoder, texts: Sequence[str], batch_size: int = 64) -> dict[str, np.ndarray]:
  """{text_tokens, text_mask, text_embeddings} for storing in a dataset (float32)."""
  ids, mask, embs = [], [], []
  for i in range(0, len(texts), batch_size):
    t, m = enc.tokenize(list(texts[i:i + batch_size]))
    e, _ = enc.encode(t, m)
    ids.append(t), mask.append(m), embs.append(np.asarray(e))
  return {TOKENS: np.concatenate(ids), MASK: np.concatenate(mask), EMBEDDINGS: np.concatenate(embs)}
