"""Dataset builders by name, prepared in the ArrayRecord format for random access.

Random access lets the input pipeline read any clip by index: every process
reads only its share, the order is a pure function of (seed, epoch), and a run
resumes at any step without replaying the stream.
"""
from __future__ import annotations

import importlib
import os

import tensorflow_datasets as tfds

# name -> (module, builder class, config factory)
_BUILDERS = {
    "moving_shapes": ("imagen_video.data.moving_shapes_tfds", "MovingShapes", "moving_shapes_config"),
    "video_folder": ("imagen_video.data.video_folder_tfds", "VideoFolder", "video_folder_config"),
}
DEFAULT_DATA_DIR = os.path.join("~", "tensorflow_datasets")


def names() -> list[str]:
  return list(_BUILDERS)


def get_builder(name: str, data_dir: str | None = None, **config_kwargs) -> tfds.core.DatasetBuilder:
  """The builder `name` configured by `config_kwargs` (not prepared)."""
  if name not in _BUILDERS:
    raise ValueError(f"unknown dataset {name!r}; expected one of {names()}")
  module_name, cls_name, factory_name = _BUILDERS[name]
  module = importlib.import_module(module_name)
  config = getattr(module, factory_name)(**config_kwargs)
  data_dir = os.path.expanduser(data_dir or DEFAULT_DATA_DIR)
  return getattr(module, cls_name)(config=config, data_dir=data_dir,
                                   file_format=tfds.core.FileFormat.ARRAY_RECORD)


def prepare(name: str, data_dir: str | None = None, **config_kwargs) -> tfds.core.DatasetBuilder:
  """Builds the dataset if it is not on disk yet (TFDS writes to a temporary
  folder and renames it only when complete, so a failed build leaves nothing)."""
  builder = get_builder(name, data_dir, **config_kwargs)
  builder.download_and_prepare()
  return builder
