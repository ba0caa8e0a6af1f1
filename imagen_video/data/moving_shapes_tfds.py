"""TFDS builder for `moving_shapes` (see `moving_shapes.py` for the clips).

    builder = MovingShapes(config=moving_shapes_config(frames=16, height=32, width=32),
                           data_dir=DIR, file_format="array_record")
    builder.download_and_prepare()

`extra_resolutions=((frames, height, width), ...)` stores the same clips at
other sizes as `video_{frames}x{height}x{width}`: the same time span at a lower
frame rate (frame i of a k-times shorter clip is frame i*k of the full one) and
the same picture at a lower size, so SR stages get (low-res, high-res) pairs.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from imagen_video.data import clip_config, moving_shapes as ms

NUM_PREVIEW = 8


@dataclasses.dataclass
class MovingShapesConfig(tfds.core.BuilderConfig):
  frames: int = 16
  height: int = 32
  width: int = 32
  fps: float = 8.0
  num_train: int = 1000
  num_test: int = 100
  seed: int = 0
  extra_resolutions: tuple = ()
  wrap: bool = False


def extra_key(frames: int, height: int, width: int) -> str:
  return f"video_{frames}x{height}x{width}"


def moving_shapes_config(frames=16, height=32, width=32, fps=8.0, num_train=1000, num_test=100,
                         seed=0, extra_resolutions=(), wrap=False) -> MovingShapesConfig:
  """A config whose name encodes every parameter, so variants never collide on disk."""
  name, extra = clip_config.config_name("moving_shapes", frames, height, width, fps, num_train,
                                        num_test, seed, extra_resolutions)
  name += "_wrap" if wrap else ""
  return MovingShapesConfig(name=name, frames=frames, height=height, width=width, fps=float(fps),
                            num_train=num_train, num_test=num_test, seed=seed, extra_resolutions=extra, wrap=bool(wrap),
                            description="one shape moving at constant speed on black")


class MovingShapes(tfds.core.GeneratorBasedBuilder):
  """Captioned synthetic videos of one moving shape (deterministic per seed)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release: grammar 'a {color} {shape} moving {direction}'."}
  BUILDER_CONFIGS = [moving_shapes_config()]
  # Example i of a split is clip i: readers index clips directly and shuffle themselves.
  disable_shuffling = True

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    features = {
        "video": tfds.features.Video((c.frames, c.height, c.width, 3), encoding_format="png"),
        "caption": tfds.features.Text(),
        "color": tfds.features.ClassLabel(names=list(ms.COLORS)),
        "shape": tfds.features.ClassLabel(names=list(ms.SHAPES)),
        "direction": tfds.features.ClassLabel(names=list(ms.DIRECTIONS)),
        "positions": tfds.features.Tensor(shape=(c.frames, 2), dtype=np.float32),
        "size": tfds.features.Scalar(dtype=np.float32),
        "index": tfds.features.Scalar(dtype=np.int64),
    }
    for f, h, w in c.extra_resolutions:
      features[extra_key(f, h, w)] = tfds.features.Video((f, h, w, 3), encoding_format="png")
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(features),
        metadata=tfds.core.MetadataDict(fps=c.fps, seed=c.seed),
        homepage="https://github.com/imagen-video/imagen-video",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # synthetic: nothing to download
    c = self.builder_config
    return {"train": self._generate_examples("train", c.num_train),
            "test": self._generate_examples("test", c.num_test)}

  def _generate_examples(self, split: str, count: int):
    c = self.builder_config
    aspect = c.width / c.height
    for index in range(count):
      clip = ms.sample_clip(c.seed, split, index, aspect, c.wrap)
      example = ms.labels(clip, c.frames)
      example["video"] = ms.render(clip, c.frames, c.height, c.width)
      example["index"] = index
      for f, h, w in c.extra_resolutions:
        example[extra_key(f, h, w)] = ms.render(clip, c.frames, h, w)[:: c.frames // f]
      yield index, example
