"""Hugging Face T5 directory -> our encoder's parameters, streamed shard by shard.

Reads `config.json` plus `model.safetensors`, a sharded `model.safetensors.index.json`,
or PyTorch `pytorch_model.bin` (+ index; needs torch). Only encoder tensors are read; each
is checked against the shape config.json implies, converted to our layout (Linear weights
[out, in] -> kernels [in, ...]) and written to a memory-mapped staging file, so at most one
tensor is held in RAM at a time and XXL converts within modest host memory.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from typing import Callable, Iterator

import ml_dtypes
import numpy as np

from imagen_video.text import t5_checkpoint
from imagen_video.text.t5 import ACTIVATIONS, T5Config

ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
             "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
             "BOOL": np.bool_}


def read_json(path: str, expected: str) -> dict:
  """A checkpoint's JSON file; one line naming it when it is missing (`expected`: what the
  folder should be) or not JSON (shared by the T5, CLIP and DeepFloyd IF converters)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: not found; expected {expected}")
  try:
    with open(path) as f:
      return json.load(f)
  except ValueError as e:
    raise ValueError(f"{path}: not valid JSON ({e})") from None


def read_config(src: str) -> T5Config:
  """T5Config from an HF `config.json` (v1.1 'gated-gelu' or v1.0 'relu')."""
  path = os.path.join(src, "config.json")
  hf = read_json(path, "a Hugging Face T5 directory (config.json + model.safetensors / "
                 "model.safetensors.index.json / pytorch_model.bin)")

  def field(name, default=None):
    if name not in hf and default is None:
      raise ValueError(f"{path}: field {name!r} missing (needed for a T5 encoder)")
    return hf.get(name, default)

  proj = field("feed_forward_proj", "relu")
  gated = proj.startswith("gated-")
  act = proj.split("-")[-1]
  act = "gelu_new" if proj == "gated-gelu" else act  # HF maps gated-gelu to the tanh GELU
  if act not in ACTIVATIONS:
    raise ValueError(f"{path}: feed_forward_proj={proj!r} unsupported; expected one of "
                     "'relu', 'gated-gelu', 'gated-silu', 'gelu', 'silu'")
  return T5Config(
      vocab_size=field("vocab_size"), d_model=field("d_model"), d_kv=field("d_kv"), d_ff=field("d_ff"),
      num_layers=field("num_layers"), num_heads=field("num_heads"),
      num_buckets=field("relative_attention_num_buckets", 32),
      max_distance=field("relative_attention_max_distance", 128),
      gated=gated, act=act, eps=field("layer_norm_epsilon", 1e-6))


class SafetensorsFile:
  """Minimal zero-copy safetensors reader (numpy memmap); validates header and sizes."""

  def __init__(self, path: str):
    self.path = path
    size = os.path.getsize(path)
    with open(path, "rb") as f:
      head = f.read(8)
      if len(head) < 8:
        raise ValueError(f"{path}: truncated safetensors file ({size} bytes, no header)")
      n = int.from_bytes(head, "little")
      if n > size - 8:
        raise ValueError(f"{path}: truncated or not safetensors: header claims {n} bytes, file has {size}")
      try:
        header = json.loads(f.read(n))
      except ValueError as e:
        raise ValueError(f"{path}: corrupt safetensors header ({e})") from None
    header.pop("__metadata__", None)
    self.data_start, self.data_size, self.header = 8 + n, size - 8 - n, header

  def keys(self) -> list[str]:
    return list(self.header)

  def get(self, name: str) -> np.ndarray:
    info = self.header[name]
    if info["dtype"] not in ST_DTYPES:
      raise ValueError(f"{self.path}: tensor {name!r} has unsupported dtype {info['dtype']}")
    dtype, shape = np.dtype(ST_DTYPES[info["dtype"]]), tuple(info["shape"])
    begin, end = info["data_offsets"]
    if end - begin != math.prod(shape) * dtype.itemsize:
      raise ValueError(f"{self.path}: tensor {name!r} spans {end - begin} bytes, "
                       f"but shape {shape} x {dtype} needs {math.prod(shape) * dtype.itemsize}")
    if end > self.data_size:
      raise ValueError(f"{self.path}: truncated: tensor {name!r} needs bytes [{begin}, {end}) of the data "
                       f"section, which has only {self.data_size} bytes")
    return np.memmap(self.path, dtype=dtype, mode="r", offset=self.data_start + begin, shape=shape)


def _torch_file(path: str):
  try:
    import torch
  except ImportError:
    raise ImportError(f"{path}: reading PyTorch .bin checkpoints needs torch "
                      "(pip install torch==2.13.0), or re-save the model as safetensors") from None
  try:
    sd = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
  except Exception as e:
    raise ValueError(f"{path}: cannot read PyTorch checkpoint ({type(e).__name__}: {e})") from None

  def get(name):
    t = sd[name]
    if t.dtype == torch.bfloat16:  # numpy has no bf16: reinterpret the bits
      return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()
  return list(sd), get


def weight_files(src: str, stem: str = "model") -> tuple[list[str], dict[str, str] | None]:
  """Files to read and (for sharded checkpoints) the tensor -> file map. `stem`: the weights'
  file name before the extension (transformers: model / pytorch_model; diffusers:
  diffusion_pytorch_model for both formats)."""
  bin_stem = "pytorch_model" if stem == "model" else stem
  for index, single in ((f"{stem}.safetensors.index.json", f"{stem}.safetensors"),
                        (f"{bin_stem}.bin.index.json", f"{bin_stem}.bin")):
    ipath = os.path.join(src, index)
    if os.path.isfile(ipath):
      with open(ipath) as f:
        wmap = json.load(f).get("weight_map")
      if not isinstance(wmap, dict):
        raise ValueError(f"{ipath}: field 'weight_map' missing or not a mapping")
      files = sorted(set(wmap.values()))
      for name in files:
        if not os.path.isfile(os.path.join(src, name)):
          raise FileNotFoundError(f"{ipath}: lists shard {name!r}, which is not in {src}")
      return [os.path.join(src, n) for n in files], {k: os.path.join(src, v) for k, v in wmap.items()}
    if os.path.isfile(os.path.join(src, single)):
      return [os.path.join(src, single)], None
  raise FileNotFoundError(f"{src}: no {stem}.safetensors, {stem}.safetensors.index.json, "
                          f"{bin_stem}.bin or {bin_stem}.bin.index.json")


def open_weights(path: str) -> tuple[list[str], Callable[[str], np.ndarray]]:
  if path.endswith(".safetensors"):
    f = SafetensorsFile(path)
    return f.keys(), f.get
  return _torch_file(path)


def _plan(cfg: T5Config) -> dict[str, tuple[tuple[str, ...], tuple[int, ...], Callable]]:
  """HF tensor name -> (our param path, HF shape, HF array -> our array)."""
  d, n, k, f = cfg.d_model, cfg.num_heads, cfg.d_kv, cfg.d_ff
  same = lambda x: x
  lin = lambda *shape: (lambda x: x.T.reshape(shape))
  plan = {
      "shared.weight": (("token_embedder",), (cfg.vocab_size, d), same),
      "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight":
          (("relpos_bias",), (cfg.num_buckets, n), same),
      "encoder.final_layer_norm.weight": (("final_norm", "scale"), (d,), same),
  }
  ffn = {"wi_0": "wi_0", "wi_1": "wi_1"} if cfg.gated else {"wi": "wi_0"}
  for i in range(cfg.num_layers):
    hf, ours = f"encoder.block.{i}.layer.", ("layers", str(i))
    plan[hf + "0.layer_norm.weight"] = (ours + ("attn_norm", "scale"), (d,), same)
    for name in "qkv":
      plan[hf + f"0.SelfAttention.{name}.weight"] = (ours + ("attn", name), (n * k, d), lin(d, n, k))
    plan[hf + "0.SelfAttention.o.weight"] = (ours + ("attn", "o"), (d, n * k), lin(n, k, d))
    plan[hf + "1.layer_norm.weight"] = (ours + ("ff_norm", "scale"), (d,), same)
    for theirs, mine in ffn.items():
      plan[hf + f"1.DenseReluDense.{theirs}.weight"] = (ours + ("ff", mine), (f, d), lin(d, f))
    plan[hf + "1.DenseReluDense.wo.weight"] = (ours + ("ff", "wo"), (d, f), lin(f, d))
  return plan


# The embedding is tied: save_pretrained keeps one of these names.
EMBED_ALIASES = ("shared.weight", "encoder.embed_tokens.weight")


def iter_tensors(src: str, cfg: T5Config) -> Iterator[tuple[tuple[str, ...], np.ndarray, str, str]]:
  """Yields (our path, converted array, HF name, file), one shard at a time."""
  plan = _plan(cfg)
  files, wmap = weight_files(src)
  if wmap is not None:  # skip shards holding only decoder / lm_head tensors
    files = sorted({f for k, f in wmap.items() if k in plan or k in EMBED_ALIASES}) or files
  shapes = (f"d_model={cfg.d_model}, num_heads={cfg.num_heads}, d_kv={cfg.d_kv}, d_ff={cfg.d_ff}, "
            f"vocab_size={cfg.vocab_size}")
  yield from planned_tensors(src, files, plan, lambda key: "shared.weight" if key in EMBED_ALIASES else key,
                             shapes, what="encoder", model="T5",
                             hint=lambda missing: " (or encoder.embed_tokens.weight)" if "shared.weight" in missing else "")


def planned_tensors(src: str, files: list[str], plan: dict, rename: Callable[[str], str], shapes: str, *,
                    what: str, model: str, hint: Callable[[list[str]], str] = lambda missing: ""):
  """Yields (our path, converted array, HF name, file) for each tensor of `plan` ({HF name: (our
  path, HF shape, convert)}) found in `files` under `rename(key)`, one shard at a time; a tensor
  of the wrong shape or one missing from every file is one line naming the file."""
  found: set[str] = set()
  for path in files:
    keys, get = open_weights(path)
    for key in keys:
      name = rename(key)
      if name not in plan or name in found:
        continue
      ours, hf_shape, convert = plan[name]
      arr = get(key)
      if tuple(arr.shape) != hf_shape:
        raise ValueError(f"{path}: tensor {key!r} has shape {tuple(arr.shape)}, but {src}/config.json implies "
                         f"{hf_shape} ({shapes})")
      found.add(name)
      yield ours, convert(arr), key, path
    del keys, get  # release this shard's mapping before opening the next
  missing = sorted(set(plan) - found, key=lambda s: (len(s), s))
  if missing:
    raise ValueError(f"{src}: {what} tensors missing from {[os.path.basename(p) for p in files]}: "
                     f"{missing[:5]}{hint(missing)}{' ...' if len(missing) > 5 else ''} "
                     f"({len(missing)} of {len(plan)}); is this a {model} checkpoint matching its config.json?")


def convert(src: str, out: str, param_dtype: str = "float32", tokenizer_model: str | None = None,
            log: Callable[[str], None] = lambda s: None) -> str:
  """Converts an HF T5 directory into an Orbax T5 checkpoint at `out`; returns `out`."""
  cfg = read_config(src).replace(param_dtype=param_dtype)
  tok = tokenizer_model or os.path.join(src, "spiece.model")
  tok = tok if os.path.isfile(tok) else None
  if tok:
    from imagen_video.text.tokenizer import Tokenizer
    Tokenizer(tok, max_length=8).check_fits(cfg.vocab_size, where=f"{src}/config.json vocab_size")
  os.makedirs(out, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=".staging-", dir=out)
  try:
    params: dict = {}
    for i, (ours, arr, key, path) in enumerate(iter_tensors(src, cfg)):
      # Transpose/cast straight into a file-backed array: page cache, not heap.
      mm = np.lib.format.open_memmap(os.path.join(staging, f"{i}.npy"), mode="w+",
                                     dtype=np.dtype(param_dtype), shape=arr.shape)
      mm[...] = arr
      mm.flush()
      del mm, arr
      node = params
      for part in ours[:-1]:
        node = node.setdefault(part, {})
      node[ours[-1]] = np.load(os.path.join(staging, f"{i}.npy"), mmap_mode="r")
      log(f"{os.path.basename(path)}: {key} -> {'/'.join(ours)}")
    t5_checkpoint.save(out, cfg, params, tokenizer_model=tok)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return out
