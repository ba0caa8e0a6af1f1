"""Loads lucidrains/imagen-pytorch's `Unet3D` without the package's `__init__`.

`imagen_pytorch/__init__.py` imports the whole library (trainer, data loaders,
torchvision, kornia, accelerate, ...), which cannot be installed here. The
video U-Net lives in one module, `imagen_pytorch/imagen_video.py`, whose
imports are torch, einops, tqdm and one sibling:

    from imagen_pytorch.t5 import t5_encode_text, get_encoded_dim, DEFAULT_T5_NAME

The real `t5.py` cannot be used offline: `Unet3D.__init__`'s default argument
`text_embed_dim = get_encoded_dim(DEFAULT_T5_NAME)` is evaluated when the class
is defined and would fetch the T5 config from the Hugging Face hub. So
`imagen_pytorch.t5` is replaced by a minimal module exposing exactly those three
names: `get_encoded_dim` returns 768 (t5-v1_1-base's width; only that unused
default depends on it, the benchmark passes `text_embed_dim` explicitly),
`DEFAULT_T5_NAME` is the real value, and `t5_encode_text` raises (the benchmark
feeds precomputed embeddings, as `Unet3D.forward(text_embeds=...)` expects).
Nothing on the forward/backward path is stubbed.

Where the module file comes from, first match wins:
  1. `source`: a .whl file, a directory holding one, or an unpacked source tree;
  2. $IMAGEN_PYTORCH_SRC, same forms;
  3. an installed distribution (`pip install imagen-pytorch==2.1.0 --no-deps`),
     located with `importlib.util.find_spec`, which does not run `__init__`.
Get the wheel with `pip download imagen-pytorch==2.1.0 --no-deps -d DIR`.
"""
from __future__ import annotations

import glob
import importlib.util
import os
import sys
import tempfile
import types
import zipfile

MODULE = "imagen_pytorch/imagen_video.py"
VERSION = "2.1.0"


def _from_wheel(wheel: str) -> str:
  out = tempfile.mkdtemp(prefix="imagen_pytorch_")
  with zipfile.ZipFile(wheel) as z:
    z.extract(MODULE, out)
  return os.path.join(out, MODULE)


def _resolve(source: str | None) -> str:
  for path in (source, os.environ.get("IMAGEN_PYTORCH_SRC")):
    if not path:
      continue
    if os.path.isfile(path) and path.endswith(".whl"):
      return _from_wheel(path)
    wheels = sorted(glob.glob(os.path.join(path, "imagen_pytorch-*.whl")))
    if wheels:
      return _from_wheel(wheels[-1])
    if os.path.isfile(os.path.join(path, MODULE)):
      return os.path.join(path, MODULE)
    raise FileNotFoundError(f"{path}: no imagen_pytorch wheel or source tree there")
  spec = importlib.util.find_spec("imagen_pytorch")
  if spec and spec.submodule_search_locations:
    return os.path.join(next(iter(spec.submodule_search_locations)), "imagen_video.py")
  raise ModuleNotFoundError(
      f"imagen-pytorch not found: `pip download imagen-pytorch=={VERSION} --no-deps -d DIR` and "
      f"pass DIR (or set IMAGEN_PYTORCH_SRC=DIR), or `pip install imagen-pytorch=={VERSION} --no-deps`")


def _t5_stub() -> types.ModuleType:
  t5 = types.ModuleType("imagen_pytorch.t5", "Stand-in for imagen_pytorch.t5 (see bench/_imagen_pytorch.py).")
  t5.DEFAULT_T5_NAME = "google/t5-v1_1-base"
  t5.get_encoded_dim = lambda name: 768

  def t5_encode_text(*args, **kwargs):
    raise NotImplementedError("benchmark stub: pass precomputed text_embeds to Unet3D")
  t5.t5_encode_text = t5_encode_text
  return t5


def load(source: str | None = None) -> types.ModuleType:
  """The `imagen_pytorch.imagen_video` module (Unet3D, ...), loaded from its file alone."""
  path = _resolve(source)
  if "imagen_pytorch" not in sys.modules:  # an empty parent, so `__init__` never runs
    pkg = types.ModuleType("imagen_pytorch")
    pkg.__path__ = []
    sys.modules["imagen_pytorch"] = pkg
  sys.modules.setdefault("imagen_pytorch.t5", _t5_stub())
  spec = importlib.util.spec_from_file_location("imagen_pytorch.imagen_video", path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module
