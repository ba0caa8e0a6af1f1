"""Hugging Face CLIP directory -> our CLIP's parameters (OpenAI and OpenCLIP HF exports).

Reads `config.json` (CLIPConfig: text_config / vision_config / projection_dim), the weights
(model.safetensors, a sharded index, or pytorch_model.bin; through text/hf_convert's
readers), `preprocessor_config.json` (resize, crop, mean/std) and the tokenizer files
(vocab.json + merges.txt, or tokenizer.json), checking every tensor's shape against the config.
"""
from __future__ import annotations

import os
from typing import Callable, Iterator

import jax.numpy as jnp
import numpy as np

from imagen_video.clip import checkpoint
from imagen_video.clip.model import ACTIVATIONS, ClipConfig
from imagen_video.clip.preprocess import Preprocess
from imagen_video.text.hf_convert import planned_tensors, read_json, weight_files

# HF field defaults (CLIPTextConfig / CLIPVisionConfig), used where an old config.json omits one.
TEXT_DEFAULTS = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                     num_attention_heads=8, max_position_embeddings=77, hidden_act="quick_gelu",
                     layer_norm_eps=1e-5, eos_token_id=49407)
VISION_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                       image_size=224, patch_size=32, hidden_act="quick_gelu", layer_norm_eps=1e-5, num_channels=3)


def _json(path: str, what: str) -> dict:
  return read_json(path, f"a Hugging Face CLIP directory ({what})")


def read_config(src: str) -> ClipConfig:
  path = os.path.join(src, "config.json")
  hf = _json(path, "config.json + weights + preprocessor_config.json + vocab.json/merges.txt")
  for key in ("text_config", "vision_config"):
    if not isinstance(hf.get(key), dict):
      raise ValueError(f"{path}: field {key!r} missing or not a mapping; is this a CLIPModel config "
                       f"(model_type {hf.get('model_type')!r})?")
  t, v = {**TEXT_DEFAULTS, **hf["text_config"]}, {**VISION_DEFAULTS, **hf["vision_config"]}
  for where, sub in (("text_config", t), ("vision_config", v)):
    if sub["hidden_act"] not in ACTIVATIONS:
      raise ValueError(f"{path}: {where}.hidden_act={sub['hidden_act']!r} unsupported; expected one of "
                       f"{sorted(ACTIVATIONS)}")
  if v["num_channels"] != 3:
    raise ValueError(f"{path}: vision_config.num_channels={v['num_channels']}; only RGB (3) is supported")
  eos = t["eos_token_id"]
  eos = eos[0] if isinstance(eos, list) else eos
  return ClipConfig(
      vocab_size=t["vocab_size"], text_length=t["max_position_embeddings"], text_width=t["hidden_size"],
      text_mlp=t["intermediate_size"], text_layers=t["num_hidden_layers"], text_heads=t["num_attention_heads"],
      text_act=t["hidden_act"], text_eps=t["layer_norm_eps"], eos_token_id=eos, pool_argmax=eos == 2,
      image_size=v["image_size"], patch_size=v["patch_size"], vision_width=v["hidden_size"],
      vision_mlp=v["intermediate_size"], vision_layers=v["num_hidden_layers"],
      vision_heads=v["num_attention_heads"], vision_act=v["hidden_act"], vision_eps=v["layer_norm_eps"],
      projection_dim=hf.get("projection_dim", 512))


def read_preprocess(src: str, cfg: ClipConfig) -> Preprocess:
  """CLIPImageProcessor settings; the OpenAI ones (at the model's image size) when absent."""
  path = os.path.join(src, "preprocessor_config.json")
  if not os.path.isfile(path):
    return Preprocess(resize=cfg.image_size, crop=cfg.image_size)
  hf = _json(path, "preprocessor_config.json")
  if hf.get("resample", 3) != 3:  # PIL's BICUBIC, what every CLIP processor uses
    raise ValueError(f"{path}: field 'resample' = {hf['resample']!r}; only bicubic (3) is implemented")

  def edge(value, key):
    if isinstance(value, dict):
      value = value.get(key, value.get("height"))
    if not isinstance(value, int):
      raise ValueError(f"{path}: field {key!r} = {value!r}: expected an int or {{{key!r}: int}}")
    return value
  crop = edge(hf.get("crop_size", cfg.image_size), "height") if hf.get("do_center_crop", True) else None
  resize = edge(hf.get("size", cfg.image_size), "shortest_edge") if hf.get("do_resize", True) else None
  if (crop or resize) != cfg.image_size:
    raise ValueError(f"{path}: preprocessing yields {crop or resize}px images, the model's "
                     f"vision_config.image_size is {cfg.image_size}")
  default = Preprocess()
  return Preprocess(resize=resize, crop=crop, mean=tuple(hf.get("image_mean", default.mean)),
                    std=tuple(hf.get("image_std", default.std)),
                    rescale=hf.get("rescale_factor", 1 / 255) if hf.get("do_rescale", True) else 1.0,
                    normalize=hf.get("do_normalize", True))


def _plan(cfg: ClipConfig) -> dict[str, tuple[tuple[str, ...], tuple[int, ...], Callable]]:
  """HF tensor name -> (our param path, HF shape, HF array -> our array)."""
  same = lambda x: x
  lin = lambda *shape: (lambda x: x.T.reshape(shape))
  p, P = cfg.patch_size, cfg.projection_dim
  plan = {
      "vision_model.embeddings.class_embedding": (("vision", "cls"), (cfg.vision_width,), same),
      # conv [out, rgb, y, x] -> rows ordered (y, x, rgb), as the tower flattens patches
      "vision_model.embeddings.patch_embedding.weight": (
          ("vision", "patch"), (cfg.vision_width, 3, p, p),
          lambda x: np.transpose(x, (2, 3, 1, 0)).reshape(p * p * 3, cfg.vision_width)),
      "vision_model.embeddings.position_embedding.weight": (
          ("vision", "pos"), ((cfg.image_size // p) ** 2 + 1, cfg.vision_width), same),
      "visual_projection.weight": (("vision", "proj"), (P, cfg.vision_width), lin(cfg.vision_width, P)),
      "text_model.embeddings.token_embedding.weight": (("text", "token_embedder"),
                                                       (cfg.vocab_size, cfg.text_width), same),
      "text_model.embeddings.position_embedding.weight": (("text", "pos"), (cfg.text_length, cfg.text_width), same),
      "text_projection.weight": (("text", "proj"), (P, cfg.text_width), lin(cfg.text_width, P)),
  }
  norms = {"vision_model.pre_layrnorm": ("vision", "pre_norm"), "vision_model.post_layernorm": ("vision", "post_norm"),
           "text_model.final_layer_norm": ("text", "final_norm")}
  for tower, prefix in (("vision", "vision_model"), ("text", "text_model")):
    d, f, n = (getattr(cfg, f"{tower}_{k}") for k in ("width", "mlp", "heads"))
    for i in range(getattr(cfg, f"{tower}_layers")):
      hf, ours = f"{prefix}.encoder.layers.{i}.", (tower, "layers", i)
      norms[hf + "layer_norm1"], norms[hf + "layer_norm2"] = ours + ("norm1",), ours + ("norm2",)
      for theirs, mine in (("q_proj", "q"), ("k_proj", "k"), ("v_proj", "v")):
        plan[hf + f"self_attn.{theirs}.weight"] = (ours + ("attn", mine), (d, d), lin(d, n, d // n))
        plan[hf + f"self_attn.{theirs}.bias"] = (ours + ("attn", mine + "_bias"), (d,), lambda x, s=(n, d // n): x.reshape(s))
      plan[hf + "self_attn.out_proj.weight"] = (ours + ("attn", "o"), (d, d), lin(n, d // n, d))
      plan[hf + "self_attn.out_proj.bias"] = (ours + ("attn", "o_bias"), (d,), same)
      plan[hf + "mlp.fc1.weight"] = (ours + ("fc1",), (f, d), lin(d, f))
      plan[hf + "mlp.fc1.bias"] = (ours + ("fc1_bias",), (f,), same)
      plan[hf + "mlp.fc2.weight"] = (ours + ("fc2",), (d, f), lin(f, d))
      plan[hf + "mlp.fc2.bias"] = (ours + ("fc2_bias",), (d,), same)
  for hf, ours in norms.items():
    width = cfg.vision_width if ours[0] == "vision" else cfg.text_width
    plan[hf + ".weight"] = (ours + ("scale",), (width,), same)
    plan[hf + ".bias"] = (ours + ("bias",), (width,), same)
  return plan


def iter_tensors(src: str, cfg: ClipConfig) -> Iterator[tuple[tuple, np.ndarray, str, str]]:
  """Yields (our path, converted float array, HF name, file), one shard at a time."""
  plan = _plan(cfg)
  files, _ = weight_files(src)
  shapes = (f"text {cfg.text_width}x{cfg.text_layers}, vision {cfg.vision_width}x{cfg.vision_layers} "
            f"patch {cfg.patch_size} image {cfg.image_size}, projection {cfg.projection_dim}")
  rename = lambda key: key.removeprefix("clip.")  # some exports nest the model one level down
  for ours, arr, key, path in planned_tensors(src, files, plan, rename, shapes, what="CLIP", model="CLIPModel"):
    yield ours, np.asarray(arr, np.float32), key, path


def convert(src: str, out: str, param_dtype: str = "float32", log: Callable[[str], None] = lambda s: None) -> str:
  """Converts an HF CLIP directory into an Orbax CLIP checkpoint at `out` (with tokenizer and
  preprocessing); returns `out`. CLIP-L/14 is 428M parameters: held in host RAM at once."""
  from imagen_video.clip.tokenizer import Tokenizer
  cfg = read_config(src).replace(param_dtype=param_dtype)
  prep = read_preprocess(src, cfg)
  tok = Tokenizer.from_hf_dir(src, max_length=cfg.text_length)  # checks the files before the weights
  if tok.vocab_size > cfg.vocab_size:
    raise ValueError(f"{src}: the tokenizer has {tok.vocab_size} tokens but config.json text_config.vocab_size "
                     f"is {cfg.vocab_size}: they do not belong together")
  params: dict = {}
  for ours, arr, key, path in iter_tensors(src, cfg):
    node = params
    for part in ours[:-1]:
      node = node.setdefault(part, {})
    node[ours[-1]] = arr.astype(jnp.dtype(param_dtype))
    log(f"{os.path.basename(path)}: {key} -> {'/'.join(map(str, ours))}")
  return checkpoint.save(out, cfg, params, prep, tok)
