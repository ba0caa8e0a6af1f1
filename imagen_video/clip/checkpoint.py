"""Orbax checkpoints of CLIP, restored straight into mesh shardings.

Layout of a checkpoint directory:
    clip_config.json      ClipConfig fields (the architecture; compute dtype chosen at load)
    preprocess.json       image preprocessing (resize, crop, mean, std)
    vocab.json, merges.txt, special_tokens.json   the BPE tokenizer
    params/               Orbax PyTree of the parameters (nested dicts, string keys)
"""
from __future__ import annotations

import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from flax import nnx
from jax.sharding import Mesh

from imagen_video.clip.model import CLIP, ClipConfig
from imagen_video.clip.preprocess import Preprocess
from imagen_video.clip.tokenizer import Tokenizer
from imagen_video.parallel.sharding import Rules, restore_targets

CONFIG_FILE, PREPROCESS_FILE, PARAMS_DIR = "clip_config.json", "preprocess.json", "params"


def _str_keys(tree):
  return {str(k): _str_keys(v) for k, v in tree.items()} if isinstance(tree, dict) else tree


def _like(tree, template):
  """Re-keys a string-keyed dict like `template` (nnx.List layers use int keys)."""
  return {k: _like(tree[str(k)], v) for k, v in template.items()} if isinstance(template, dict) else tree


def _path(ckpt_dir: str, name: str) -> epath.Path:
  path = epath.Path(os.fspath(ckpt_dir)) / name
  if not path.exists():
    raise FileNotFoundError(f"{path}: not found; {ckpt_dir!r} is not a CLIP checkpoint written by "
                            f"`imagen-video convert-clip` (expected {CONFIG_FILE}, {PREPROCESS_FILE}, "
                            f"the tokenizer files and {PARAMS_DIR}/)")
  return path


def load_config(ckpt_dir: str, **overrides) -> ClipConfig:
  return ClipConfig.from_dict(json.loads(_path(ckpt_dir, CONFIG_FILE).read_text())).replace(**overrides)


def load_preprocess(ckpt_dir: str) -> Preprocess:
  return Preprocess.from_dict(json.loads(_path(ckpt_dir, PREPROCESS_FILE).read_text()))


def load_tokenizer(ckpt_dir: str) -> Tokenizer:
  return Tokenizer.from_dir(ckpt_dir, load_config(ckpt_dir).text_length)


def abstract_model(cfg: ClipConfig) -> CLIP:
  return nnx.eval_shape(lambda: CLIP(cfg, rngs=nnx.Rngs(0)))


def save(ckpt_dir: str, cfg: ClipConfig, params: dict, preprocess: Preprocess, tokenizer: Tokenizer) -> str:
  ckpt_dir = os.path.abspath(ckpt_dir)
  os.makedirs(ckpt_dir, exist_ok=True)
  with ocp.PyTreeCheckpointer() as ckptr:
    ckptr.save(os.path.join(ckpt_dir, PARAMS_DIR), _str_keys(params), force=True)
  with open(os.path.join(ckpt_dir, CONFIG_FILE), "w") as f:
    json.dump(cfg.to_dict(), f, indent=2)
  with open(os.path.join(ckpt_dir, PREPROCESS_FILE), "w") as f:
    json.dump(preprocess.to_dict(), f, indent=2)
  tokenizer.save(ckpt_dir)
  return ckpt_dir


def save_model(ckpt_dir: str, model: CLIP, preprocess: Preprocess, tokenizer: Tokenizer) -> str:
  """A checkpoint of an in-memory model (e.g. randomly initialised, for plumbing checks)."""
  params = jax.tree.map(np.asarray, nnx.state(model, nnx.Param).to_pure_dict())
  return save(ckpt_dir, model.cfg, params, preprocess, tokenizer)


def restore(ckpt_dir: str, *, mesh: Mesh | None = None, rules: Rules = (),
            dtype: str | None = None, param_dtype: str | None = None) -> CLIP:
  """Restores the model; with `mesh`, each parameter is read directly into its sharding."""
  overrides = {k: v for k, v in (("dtype", dtype), ("param_dtype", param_dtype)) if v}
  cfg = load_config(ckpt_dir, **overrides)
  graphdef, abstract = nnx.split(abstract_model(cfg))
  target = restore_targets(abstract, mesh, rules)
  path = str(_path(ckpt_dir, PARAMS_DIR))
  with ocp.StandardCheckpointer() as ckptr:
    flat_meta = dict(jax.tree_util.tree_flatten_with_path(dict(ckptr.metadata(path).item_metadata))[0])
    for key, want in jax.tree_util.tree_flatten_with_path(_str_keys(target))[0]:
      got = flat_meta.get(key)
      if got is None or tuple(got.shape) != tuple(want.shape):
        found = "missing" if got is None else f"has shape {tuple(got.shape)}"
        raise ValueError(f"{path}: parameter {jax.tree_util.keystr(key)} {found}; {CONFIG_FILE} expects {want.shape}")
    restored = ckptr.restore(path, _str_keys(target))
  nnx.replace_by_pure_dict(abstract, _like(restored, abstract.to_pure_dict()))
  return nnx.merge(graphdef, abstract)


def save_random(ckpt_dir: str, cfg: ClipConfig, texts: list[str], merges: int = 200, seed: int = 0) -> str:
  """A randomly initialised CLIP with a BPE learnt from `texts`: the metric's plumbing on any
  machine (its scores carry no meaning; a converted real checkpoint runs the same code)."""
  from imagen_video.clip.tokenizer import Tokenizer, train_bpe
  vocab, merge_list = train_bpe(texts, merges)
  cfg = cfg.replace(vocab_size=len(vocab), eos_token_id=vocab["<|endoftext|>"])
  tok = Tokenizer(vocab, merge_list, {"bos": "<|startoftext|>", "eos": "<|endoftext|>", "pad": "<|endoftext|>"},
                  cfg.text_length)
  model = CLIP(cfg, rngs=nnx.Rngs(seed))
  return save_model(ckpt_dir, model, Preprocess(resize=cfg.image_size, crop=cfg.image_size), tok)
