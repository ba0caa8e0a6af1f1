"""HF T5 -> our encoder: outputs match `transformers` on tiny random models (needs torch)."""
import os

import jax.numpy as jnp
import numpy as np
import pytest

from imagen_video.text import hf_convert, t5_checkpoint

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# Stated bf16 tolerance (bf16 compute vs the fp32 reference; outputs are O(1)):
BF16_MAX_ABS, BF16_REL_RMS = 0.1, 0.02


def build_hf(path, proj, shard=None, bin_=False, d_model=32):
  """A tiny random T5 encoder saved in HF's format (test_if_inflate's IF text encoder too)."""
  cfg = transformers.T5Config(vocab_size=96, d_model=d_model, d_kv=8, d_ff=d_model * 3 // 2, num_layers=2, num_heads=4,
                              feed_forward_proj=proj, relative_attention_num_buckets=8,
                              relative_attention_max_distance=16)
  torch.manual_seed(0)
  model = transformers.T5EncoderModel(cfg).eval()
  with torch.no_grad():  # non-trivial norms and position bias, so every tensor's mapping matters
    for name, p in model.named_parameters():
      if "layer_norm" in name:
        p.copy_(1 + 0.3 * torch.randn_like(p))
      elif "relative_attention_bias" in name:
        p.copy_(torch.randn_like(p))
  if bin_:
    os.makedirs(path)
    cfg.save_pretrained(path)
    torch.save(model.state_dict(), os.path.join(path, "pytorch_model.bin"))
  else:
    model.save_pretrained(path, **({"max_shard_size": shard} if shard else {}))
  return model


def padded_batch():
  rng = np.random.RandomState(0)
  ids = rng.randint(3, 96, (3, 20))
  mask = np.arange(20)[None] < np.array([[20], [11], [4]])
  ids[~mask] = 0
  return ids, mask


def reference(model, ids, mask):
  with torch.no_grad():
    return model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask.astype(np.int64))).last_hidden_state.numpy()


def compare(ckpt, model):
  ids, mask = padded_batch()
  ref = reference(model, ids, mask)
  out = {}
  for dtype in ("float32", "bfloat16"):
    ours = np.asarray(t5_checkpoint.restore(ckpt, dtype=dtype)(jnp.asarray(ids), jnp.asarray(mask)), np.float32)
    err = np.abs(ours - ref)
    out[dtype] = (err.max(), np.sqrt((err ** 2).mean() / (ref ** 2).mean()))
  print(f"\n{ckpt}: max abs diff fp32 {out['float32'][0]:.2e}, bf16 {out['bfloat16'][0]:.2e} "
        f"(rel rms {out['bfloat16'][1]:.2e})")
  return out


@pytest.mark.parametrize("proj,shard,bin_", [("gated-gelu", None, False), ("gated-gelu", "20KB", False),
                                              ("relu", None, False), ("relu", None, True)],
                         ids=["v1.1", "v1.1-sharded", "v1.0", "v1.0-bin"])
def test_matches_transformers(tmp_path, proj, shard, bin_):
  model = build_hf(str(tmp_path / "hf"), proj, shard, bin_)
  if shard:
    assert os.path.isfile(tmp_path / "hf" / "model.safetensors.index.json")
  hf_convert.convert(str(tmp_path / "hf"), str(tmp_path / "ours"))
  err = compare(str(tmp_path / "ours"), model)
  assert err["float32"][0] <= 1e-4
  assert err["bfloat16"][0] <= BF16_MAX_ABS and err["bfloat16"][1] <= BF16_REL_RMS


def test_cli_convert_and_encode_text(tmp_path):
  from imagen_video.cli import main as cli
  from imagen_video.data.moving_shapes import COLORS, SHAPES, caption
  from imagen_video.text.tokenizer import train_sentencepiece
  model = build_hf(str(tmp_path / "hf"), "gated-gelu", "20KB")
  train_sentencepiece([caption(c, s, "left") for c in COLORS for s in SHAPES], str(tmp_path / "hf" / "spiece.model"), 64)
  assert cli.main(["convert-t5", "--src", str(tmp_path / "hf"), "--out", str(tmp_path / "ck")]) == 0
  assert os.path.isfile(tmp_path / "ck" / "spiece.model")
  prompts = tmp_path / "prompts.txt"
  prompts.write_text("a red circle moving left\na blue square moving up\n")
  out = str(tmp_path / "emb.npz")
  assert cli.main(["encode-text", "--t5", str(tmp_path / "ck"), "--prompts", str(prompts),
                   "--prompt", "a cyan triangle", "--max_length", "12", "--out", out]) == 0
  data = np.load(out)
  assert data["embeddings"].shape == (3, 12, 32) and data["embeddings"].dtype == np.float32
  ref = reference(model, data["token_ids"], data["mask"])
  np.testing.assert_allclose(data["embeddings"][data["mask"]], ref[data["mask"]], atol=1e-4)
  assert list(data["prompts"]) == ["a cyan triangle", "a red circle moving left", "a blue square moving up"]
  assert cli.main(["encode-text", "--t5", str(tmp_path / "ck"), "--out", out]) == 2  # no prompts
