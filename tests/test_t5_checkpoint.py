"""Converted checkpoints: sharded restore and clear errors on bad inputs (no torch needed)."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from imagen_video.parallel.sharding import activation_rules, make_mesh
from imagen_video.text import hf_convert, t5, t5_checkpoint

safetensors_numpy = pytest.importorskip("safetensors.numpy")

CFG = t5.T5Config(vocab_size=96, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
                  num_buckets=8, max_distance=16)
RULES = (("batch", "data"), ("vocab", "data"), ("embed", "fsdp"), ("heads", "data"), ("mlp", "data"))


def write_hf(path, cfg=CFG, files=1):
  """An HF-layout T5 directory with random tensors, written with the `safetensors` library."""
  os.makedirs(path, exist_ok=True)
  rng = np.random.RandomState(0)
  tensors = {name: (rng.randn(*shape) * 0.2).astype(np.float32) for name, (_, shape, _) in hf_convert._plan(cfg).items()}
  tensors["decoder.final_layer_norm.weight"] = np.ones(cfg.d_model, np.float32)  # ignored
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump({"d_model": cfg.d_model, "d_kv": cfg.d_kv, "d_ff": cfg.d_ff, "num_layers": cfg.num_layers,
               "num_heads": cfg.num_heads, "vocab_size": cfg.vocab_size, "feed_forward_proj": "gated-gelu",
               "relative_attention_num_buckets": cfg.num_buckets,
               "relative_attention_max_distance": cfg.max_distance}, f)
  names = sorted(tensors)
  if files == 1:
    safetensors_numpy.save_file(tensors, os.path.join(path, "model.safetensors"))
    return
  wmap = {}
  for i in range(files):
    shard = f"model-{i + 1:05d}-of-{files:05d}.safetensors"
    part = {n: tensors[n] for n in names[i::files]}
    safetensors_numpy.save_file(part, os.path.join(path, shard))
    wmap.update({n: shard for n in part})
  with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {}, "weight_map": wmap}, f)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
  root = tmp_path_factory.mktemp("t5")
  write_hf(str(root / "hf"), files=3)
  return hf_convert.convert(str(root / "hf"), str(root / "ck"))


def test_restore_onto_8_device_mesh_matches_unsharded(ckpt):
  ids = jnp.asarray(np.random.RandomState(1).randint(3, 96, (4, 12)))
  mask = jnp.arange(12)[None] < jnp.array([[12], [7], [3], [12]])
  plain = t5_checkpoint.restore(ckpt)
  mesh = make_mesh({"data": 2, "fsdp": 4})
  sharded = t5_checkpoint.restore(ckpt, mesh=mesh, rules=RULES)
  wi = sharded.layers[0].ff.wi_0[...]
  assert wi.sharding.spec == jax.sharding.PartitionSpec("fsdp", "data")
  assert wi.addressable_shards[0].data.shape == (32 // 4, 48 // 2)
  assert sharded.token_embedder[...].sharding.spec == jax.sharding.PartitionSpec("data", "fsdp")
  ref = np.asarray(plain(ids, mask))
  batch = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  with activation_rules(mesh, RULES):  # activations constrained by the same logical rules
    out = jax.jit(lambda m, i, k: m(i, k))(sharded, jax.device_put(ids, batch), jax.device_put(mask, batch))
  assert out.sharding.spec[0] == "data"
  diff = float(np.abs(np.asarray(out) - ref).max())
  print(f"\nsharded vs unsharded max abs diff: {diff:.2e}")
  assert diff <= 1e-5


def test_restore_casts_to_requested_param_dtype(ckpt):
  m = t5_checkpoint.restore(ckpt, param_dtype="bfloat16", dtype="bfloat16")
  assert m.layers[1].attn.o[...].dtype == jnp.bfloat16


def test_missing_config_names_the_file(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"config\.json: not found"):
    hf_convert.convert(str(tmp_path), str(tmp_path / "out"))


def test_truncated_safetensors_names_file_and_tensor(tmp_path):
  write_hf(str(tmp_path / "hf"))
  path = tmp_path / "hf" / "model.safetensors"
  data = path.read_bytes()
  path.write_bytes(data[: len(data) - 100])
  with pytest.raises(ValueError, match=r"model\.safetensors: truncated: tensor '[\w.]+' needs bytes"):
    hf_convert.convert(str(tmp_path / "hf"), str(tmp_path / "out"))
  path.write_bytes(data[:5])
  with pytest.raises(ValueError, match=r"model\.safetensors: truncated safetensors file"):
    hf_convert.convert(str(tmp_path / "hf"), str(tmp_path / "out"))


def test_shape_mismatch_names_file_and_tensor(tmp_path):
  write_hf(str(tmp_path / "hf"), files=2)
  cfg_path = tmp_path / "hf" / "config.json"
  hf = json.loads(cfg_path.read_text())
  cfg_path.write_text(json.dumps({**hf, "d_ff": 64}))
  with pytest.raises(ValueError, match=r"model-0000\d-of-00002\.safetensors: tensor 'encoder\.block\.\d\.layer\.1\."
                                       r"DenseReluDense\.w\w+\.weight' has shape \(\d+, \d+\), but .*implies"):
    hf_convert.convert(str(tmp_path / "hf"), str(tmp_path / "out"))


def test_missing_tensor_and_missing_shard(tmp_path):
  write_hf(str(tmp_path / "hf"), files=2)
  index = tmp_path / "hf" / "model.safetensors.index.json"
  os.remove(tmp_path / "hf" / "model-00002-of-00002.safetensors")
  with pytest.raises(FileNotFoundError, match=r"index\.json: lists shard 'model-00002-of-00002\.safetensors'"):
    hf_convert.convert(str(tmp_path / "hf"), str(tmp_path / "out"))
  wmap = json.loads(index.read_text())["weight_map"]
  index.write_text(json.dumps({"weight_map": {k: v for k, v in wmap.items() if v.startswith("model-00001")}}))
  with pytest.raises(ValueError, match=r"encoder tensors missing"):
    hf_convert.convert(str(tmp_path / "hf"), str(tmp_path / "out"))


def test_not_a_converted_checkpoint(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"t5_config\.json: not found"):
    t5_checkpoint.restore(str(tmp_path))
