"""T5 encoder model, tokenizer and TextEncoder facade (no torch needed)."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from imagen_video.data.moving_shapes import COLORS, DIRECTIONS, SHAPES, caption
from imagen_video.text import encoder, t5
from imagen_video.text.tokenizer import EOS_ID, PAD_ID, Tokenizer, train_sentencepiece

CAPTIONS = [caption(c, s, d) for c in COLORS for s in SHAPES for d in DIRECTIONS]


@pytest.fixture(scope="module")
def spm_path(tmp_path_factory):
  return train_sentencepiece(CAPTIONS, str(tmp_path_factory.mktemp("spm") / "tiny.model"), vocab_size=64)


def test_xxl_parameter_count_without_allocation():
  n = t5.count_params(t5.preset("v1_1", "xxl"))
  # Same total as HF T5EncoderModel(google/t5-v1_1-xxl): 4,762,310,656. The paper's 4.6B matches
  # the transformer stack; the 32128 x 4096 embedding table adds 0.13B on top.
  assert n["total"] == 4_762_310_656
  assert abs(n["non_embedding"] / 4.6e9 - 1) < 0.02, n


def test_relative_position_buckets_match_t5_reference_values():
  b = t5.relative_position_buckets(1, 200, num_buckets=32, max_distance=128)[0]
  # key - query = 0..199: exact up to 7, log-spaced to 15, then clipped (bidirectional offset 16).
  assert b[0] == 0 and b[7] == 16 + 7 and b[8] == 16 + 8 and b[199] == 31
  assert list(t5.relative_position_buckets(3, 1, 32, 128)[:, 0]) == [0, 1, 2]  # negative side


def test_param_logical_axes():
  m = t5.T5Encoder(t5.preset("v1_0", "tiny"), rngs=nnx.Rngs(0))
  assert m.token_embedder.get_metadata()["logical_axes"] == ("vocab", "embed")
  assert m.layers[0].attn.q.get_metadata()["logical_axes"] == ("embed", "heads", "kv")
  assert m.layers[0].ff.wo.get_metadata()["logical_axes"] == ("mlp", "embed")
  assert not hasattr(m.layers[0].ff, "wi_1")  # v1.0: single ReLU projection


def test_padding_does_not_change_valid_positions():
  m = t5.T5Encoder(t5.preset("v1_1", "tiny"), rngs=nnx.Rngs(0))
  ids = jnp.array([[5, 9, 7, 1]])
  short = m(ids, jnp.ones((1, 4), bool))
  long = m(jnp.pad(ids, ((0, 0), (0, 4))), jnp.arange(8)[None] < 4)
  np.testing.assert_allclose(long[:, :4], short, atol=1e-5)


def test_tokenizer_is_deterministic_and_t5_shaped(spm_path, tmp_path):
  again = train_sentencepiece(CAPTIONS, str(tmp_path / "again.model"), vocab_size=64)
  assert open(again, "rb").read() == open(spm_path, "rb").read()
  tok = Tokenizer(spm_path, max_length=8)
  ids, mask = tok(["a red circle moving left", "a white triangle moving down and far far away"])
  assert ids.shape == mask.shape == (2, 8) and ids.dtype == np.int32
  n = mask[0].sum()
  assert ids[0, n - 1] == EOS_ID and (ids[0, n:] == PAD_ID).all() and not mask[0, n:].any()
  assert mask[1].all() and ids[1, -1] == EOS_ID  # truncated, eos kept (as HF T5Tokenizer)
  assert tok.sp.id_to_piece(2) == "<unk>"


def test_tokenizer_must_fit_embedding_table(spm_path):
  tok = Tokenizer(spm_path, max_length=8)
  tok.check_fits(tok.vocab_size + 28)  # like 32100 pieces in 32128 rows: fine
  with pytest.raises(ValueError, match=r"tiny.model has \d+ pieces.*only 10 rows"):
    tok.check_fits(10)


def test_text_encoder_precomputed_equals_on_device(spm_path):
  enc = encoder.TextEncoder.from_config(encoder.default_config(tokenizer=spm_path))
  assert enc.cfg.vocab_size == enc.tokenizer.vocab_size and enc.frozen
  texts = CAPTIONS[:3]
  stored = encoder.precompute(enc, texts, batch_size=2)
  ids, mask = enc.tokenize(texts)
  step = jax.jit(lambda p, b: enc.embed_batch(p, b))
  live, _ = step(enc.params, {"text_tokens": ids, "text_mask": mask})
  pre = dataclasses.replace(enc, precomputed=True)
  got, got_mask = jax.jit(lambda p, b: pre.embed_batch(p, b))(enc.params, stored)
  np.testing.assert_allclose(got, live, atol=1e-6)
  assert (np.asarray(got)[~mask] == 0).all() and (np.asarray(got_mask) == mask).all()


def test_frozen_means_no_gradient_and_trainable_otherwise(spm_path):
  for frozen in (True, False):
    enc = encoder.TextEncoder.from_config(encoder.default_config(tokenizer=spm_path, frozen=frozen))
    ids, mask = enc.tokenize(["a red circle moving left"])
    grads = jax.grad(lambda p: enc.apply(p, ids, mask)[0].sum())(enc.params)
    norm = sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads))
    assert (norm == 0) == frozen


def test_bf16_compute(spm_path):
  f32 = encoder.TextEncoder.from_config(encoder.default_config(tokenizer=spm_path))
  bf16 = encoder.TextEncoder.from_config(encoder.default_config(tokenizer=spm_path, dtype="bfloat16"))
  a, _ = f32.encode_text(CAPTIONS[:2])
  b, _ = bf16.encode_text(CAPTIONS[:2])
  assert b.dtype == np.float32 and np.abs(a - b).max() < 0.1
