"""HF CLIP -> our CLIP: embeddings, tokenizer, preprocessing and CLIP score match `transformers`
on tiny random models of several shapes (needs torch)."""
import json
import os

import jax
import numpy as np
import pytest

import clip_tiny  # tests/ is on sys.path
from imagen_video.clip import checkpoint, hf_convert, metrics
from imagen_video.clip.scorer import ClipScorer

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TRICKY = ["A red  circle\tmoving LEFT!!", "it's the dog's ball, isn't it?", "café naïve ÉCOLE", "x",
          "123abc 4.5e6", "emoji 😀 and ✓", "a-b_c/d...?!", "   leading and trailing   ",
          "<|endoftext|> inside", "athletes sprinting on a track " * 4]


@pytest.fixture(scope="module", params=range(len(clip_tiny.CONFIGS)), ids=[c[0] for c in clip_tiny.CONFIGS])
def converted(request, tmp_path_factory):
  root = tmp_path_factory.mktemp(clip_tiny.CONFIGS[request.param][0])
  model, tok, proc = clip_tiny.build(str(root / "hf"), request.param)
  hf_convert.convert(str(root / "hf"), str(root / "ours"))
  return request.param, str(root / "hf"), str(root / "ours"), model, tok, proc


def test_tokenizer_matches_transformers(converted):
  _, hf_dir, ours, model, tok, _ = converted
  length = model.config.text_config.max_position_embeddings
  ref = tok(TRICKY, padding="max_length", max_length=length, truncation=True)["input_ids"]
  got = checkpoint.load_tokenizer(ours)(TRICKY)
  assert got.shape == (len(TRICKY), length)
  np.testing.assert_array_equal(got, np.asarray(ref))


def test_preprocessing_matches_clip_image_processor(converted):
  """HF's (PIL) CLIPImageProcessor on uint8 frames of awkward sizes: bit-exact where Pillow runs
  its classic horizontal-then-vertical passes; on some tall frames Pillow 13 runs the vertical
  pass first (its rule is not documented), which moves a quarter of the pixels by a few grey
  levels: stated tolerance there, mean |diff| <= 0.02 of the normalised range (~1.4 levels)."""
  _, _, ours, _, _, proc = converted
  prep = checkpoint.load_preprocess(ours)
  rng = np.random.RandomState(1)
  for h, w, exact in ((37, 53, True), (prep.crop, prep.crop, True), (prep.crop + 1, 300, True),
                      (53, 37, True), (90, 41, False)):
    frames = rng.randint(0, 256, (2, h, w, 3)).astype(np.uint8)
    ref = proc(images=list(frames), return_tensors="np")["pixel_values"].transpose(0, 2, 3, 1)
    got = prep(frames)
    assert got.shape == ref.shape
    diff = np.abs(got - ref)
    print(f"\npreprocess {h}x{w}: max |diff| {diff.max():.2e}, mean {diff.mean():.2e}")
    if exact:
      assert diff.max() <= 1e-5, (h, w, diff.max())
    else:
      assert diff.mean() <= 0.02, (h, w, diff.mean())


def _hf_embeddings(model, pixels_nchw, ids):
  with torch.no_grad():
    img = model.get_image_features(pixel_values=torch.tensor(pixels_nchw)).pooler_output.numpy()
    txt = model.get_text_features(input_ids=torch.tensor(ids.astype(np.int64))).pooler_output.numpy()
  return img, txt


def test_embeddings_and_clip_score_match_transformers(converted):
  index, _, ours, model, tok, proc = converted
  size = model.config.vision_config.image_size
  rng = np.random.RandomState(0)
  # 1) identical preprocessed pixels and token ids: the towers alone, fp32
  pixels = rng.randn(4, size, size, 3).astype(np.float32)
  ids = checkpoint.load_tokenizer(ours)(TRICKY)
  ref_img, ref_txt = _hf_embeddings(model, pixels.transpose(0, 3, 1, 2), ids)
  m = checkpoint.restore(ours)
  d_img = float(np.abs(np.asarray(m.encode_image(pixels)) - ref_img).max())
  d_txt = float(np.abs(np.asarray(m.encode_text(ids)) - ref_txt).max())
  # 2) end to end from uint8 videos and caption strings: HF processor + tokenizer + model
  videos = rng.randint(0, 256, (3, 4, 45, 61, 3)).astype(np.uint8)
  captions = ["a red circle moving left", "a photo of a cat", "panning over a landscape"]
  frames = videos.reshape(-1, 45, 61, 3)
  hf_pix = proc(images=list(frames), return_tensors="np")["pixel_values"]
  hf_ids = np.asarray(tok(captions, padding="max_length", max_length=model.config.text_config.max_position_embeddings,
                          truncation=True)["input_ids"])
  img, txt = _hf_embeddings(model, hf_pix, hf_ids)
  img, txt = img / np.linalg.norm(img, axis=-1, keepdims=True), txt / np.linalg.norm(txt, axis=-1, keepdims=True)
  cos = np.einsum("ntp,np->nt", img.reshape(3, 4, -1), txt)
  ref_scores = np.maximum(100 * cos, 0).mean(1)
  scorer = ClipScorer(ours, batch=8)
  got = scorer.score(videos, captions)
  d_score = float(np.abs(np.asarray(got["scores"]) - ref_scores).max())
  ours_cos = metrics.frame_cosines(np.stack(scorer.embed_videos(videos)), scorer.embed_texts(captions))
  d_cos = float(np.abs(100 * ours_cos - 100 * cos).max())  # unfloored: a score of 0 hides nothing
  bf16 = checkpoint.restore(ours, dtype="bfloat16")
  bf16_cos = metrics.normalize(np.asarray(bf16.encode_image(pixels), np.float32)) @ metrics.normalize(ref_img).T
  print(f"\nPARITY {clip_tiny.CONFIGS[index][0]}: image {d_img:.2e} text {d_txt:.2e} clip_score {d_score:.2e} 100cos {d_cos:.2e} "
        f"(mean {got['clip_score']:.3f} vs {ref_scores.mean():.3f}); bf16 image cosine to fp32 "
        f">= {np.diag(bf16_cos).min():.6f}")
  assert d_img <= 1e-4 and d_txt <= 1e-4 and d_score <= 1e-4 and d_cos <= 1e-4
  assert abs(got["clip_score"] - ref_scores.mean()) <= 1e-4
  assert np.diag(bf16_cos).min() >= 0.99  # stated bf16 tolerance: embeddings within 8 degrees


def test_restore_onto_8_device_mesh_matches_unsharded(converted):
  _, _, ours, model, _, _ = converted
  from imagen_video.parallel.sharding import activation_rules, make_mesh
  rules = (("batch", "data"), ("embed", "fsdp"), ("heads", "data"), ("mlp", "data"), ("vocab", "data"))
  mesh = make_mesh({"data": 2, "fsdp": 4})
  sharded = checkpoint.restore(ours, mesh=mesh, rules=rules)
  assert sharded.vision.layers[0].fc1[...].sharding.spec == jax.sharding.PartitionSpec("fsdp", "data")
  size = model.config.vision_config.image_size
  pixels = np.random.RandomState(2).randn(4, size, size, 3).astype(np.float32)
  ref = np.asarray(checkpoint.restore(ours).encode_image(pixels))
  with activation_rules(mesh, rules):
    out = jax.jit(lambda m, x: m.encode_image(x))(sharded, pixels)
  assert np.abs(np.asarray(out) - ref).max() <= 1e-5


def test_bad_inputs_name_the_file(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"config\.json: not found"):
    hf_convert.convert(str(tmp_path), str(tmp_path / "out"))
  hf = tmp_path / "hf"
  clip_tiny.build(str(hf), 0)
  for name in ("vocab.json", "merges.txt", "tokenizer.json"):
    os.rename(hf / name, tmp_path / name)
  with pytest.raises(FileNotFoundError, match=r"no vocab\.json \+ merges\.txt"):
    hf_convert.convert(str(hf), str(tmp_path / "out"))
  for name in ("vocab.json", "merges.txt", "tokenizer.json"):
    os.rename(tmp_path / name, hf / name)
  conf = json.loads((hf / "config.json").read_text())
  conf["vision_config"]["intermediate_size"] = 50
  (hf / "config.json").write_text(json.dumps(conf))
  with pytest.raises(ValueError, match=r"model\.safetensors: tensor 'vision_model\.encoder\.layers\.0\.mlp\.fc1\."
                                       r"\w+' has shape .* but .*config\.json implies"):
    hf_convert.convert(str(hf), str(tmp_path / "out"))
  conf["vision_config"]["intermediate_size"] = 48
  conf["text_config"]["hidden_act"] = "swish"
  (hf / "config.json").write_text(json.dumps(conf))
  with pytest.raises(ValueError, match=r"config\.json: text_config\.hidden_act='swish' unsupported"):
    hf_convert.convert(str(hf), str(tmp_path / "out"))
  with pytest.raises(FileNotFoundError, match=r"clip_config\.json: not found; .* is not a CLIP checkpoint"):
    checkpoint.restore(str(tmp_path))


def test_convert_clip_cli(tmp_path, capsys):
  from imagen_video.cli import main as cli
  clip_tiny.build(str(tmp_path / "hf"), 0)
  assert cli.main(["convert-clip", "--src", str(tmp_path / "hf"), "--out", str(tmp_path / "ck")]) == 0
  assert "CLIP ViT 32x2 patch 8 @ 32px" in capsys.readouterr().out
  assert {"clip_config.json", "preprocess.json", "vocab.json", "merges.txt", "params"} <= set(os.listdir(tmp_path / "ck"))
  assert cli.main(["convert-clip", "--src", str(tmp_path / "hf"), "--out", str(tmp_path / "bf"),
                   "--param_dtype", "bfloat16"]) == 0
  bf = checkpoint.restore(str(tmp_path / "bf"))
  assert bf.vision.layers[0].fc1[...].dtype == jax.numpy.bfloat16 == bf.text.proj[...].dtype
  fp = checkpoint.restore(str(tmp_path / "ck"))
  assert np.abs(np.asarray(bf.text.proj[...], np.float32) - np.asarray(fp.text.proj[...])).max() <= 1e-2
  assert cli.main(["convert-clip", "--src", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 1
  assert "nope/config.json: not found" in capsys.readouterr().err
