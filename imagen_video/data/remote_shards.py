"""ArrayRecord shards written to object stores (gs://...).

array_record's writer opens local files only (its reader does read gs://), so a TFDS build
into a gs:// data_dir fails when it finalises a split. `install()` makes TFDS write each
shard to a local temporary file and copy it to its URI through `etils.epath`: on one
machine, and in every Beam worker (the video_folder builder module installs it on import,
so workers that unpickle its transforms have it too). Local paths are written as before.
"""
from __future__ import annotations

import os
import tempfile

_INSTALLED = []


def install() -> None:
  if _INSTALLED:
    return
  from etils import epath
  from tensorflow_datasets.core import file_adapters
  adapter = file_adapters.ArrayRecordFileAdapter
  original = adapter.write_examples.__func__

  def write_examples(cls, path, iterator):
    if "://" not in os.fspath(path):
      return original(cls, path, iterator)
    with tempfile.TemporaryDirectory(prefix="imagen_video_shard_") as folder:
      local = os.path.join(folder, os.path.basename(os.fspath(path)))
      out = original(cls, local, iterator)
      epath.Path(local).copy(epath.Path(os.fspath(path)), overwrite=True)
    return out
  adapter.write_examples = classmethod(write_examples)
  _INSTALLED.append(True)
