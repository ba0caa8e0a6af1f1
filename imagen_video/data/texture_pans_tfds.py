"""TFDS builder for `texture_pans` (see `texture_pans.py` for the clips).

    builders.prepare("texture_pans", DIR, frames=16, height=32, width=32,
                     extra_resolutions=((8, 32, 32), (16, 16, 16)))

`extra_resolutions` store the same clips as `video_{frames}x{height}x{width}`
exactly as `moving_shapes` does (same time span at a lower frame rate: frame i
of a k-times shorter clip is frame i*k of the full one; area-downsampled size).
The train split uses the train photos, the test split only held-out photos.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from imagen_video.data import clip_config, texture_pans as tp
from imagen_video.data.moving_shapes_tfds import extra_key


@dataclasses.dataclass
class TexturePansConfig(tfds.core.BuilderConfig):
  frames: int = 16
  height: int = 32
  width: int = 32
  fps: float = 8.0
  num_train: int = 1000
  num_test: int = 100
  seed: int = 0
  extra_resolutions: tuple = ()


def texture_pans_config(frames=16, height=32, width=32, fps=8.0, num_train=1000, num_test=100,
                        seed=0, extra_resolutions=()) -> TexturePansConfig:
  """A config whose name encodes every parameter, so variants never collide on disk."""
  name, extra = clip_config.config_name("texture_pans", frames, height, width, fps, num_train,
                                        num_test, seed, extra_resolutions)
  return TexturePansConfig(name=name, frames=frames, height=height, width=width, fps=float(fps),
                           num_train=num_train, num_test=num_test, seed=seed, extra_resolutions=extra,
                           description="camera pans and zooms over scikit-image photographs")


class TexturePans(tfds.core.GeneratorBasedBuilder):
  """Captioned pans/zooms over real photographs (deterministic per seed)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = [texture_pans_config()]
  disable_shuffling = True  # a fixed order; `index` is the clip number

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    features = {
        "video": tfds.features.Video((c.frames, c.height, c.width, 3), encoding_format="png"),
        "caption": tfds.features.Text(),
        "photo": tfds.features.Text(),
        "motion": tfds.features.ClassLabel(names=list(tp.MOTIONS)),
        "center": tfds.features.Tensor(shape=(2,), dtype=np.float32),
        "velocity": tfds.features.Tensor(shape=(2,), dtype=np.float32),
        "view_height": tfds.features.Scalar(dtype=np.float32),
        "zoom": tfds.features.Scalar(dtype=np.float32),
        "index": tfds.features.Scalar(dtype=np.int64),
    }
    for f, h, w in c.extra_resolutions:
      features[extra_key(f, h, w)] = tfds.features.Video((f, h, w, 3), encoding_format="png")
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(features),
        metadata=tfds.core.MetadataDict(fps=c.fps, seed=c.seed,
                                        photos={k: list(v) for k, v in tp.SPLIT_PHOTOS.items()}),
        homepage="https://github.com/imagen-video/imagen-video",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # photos ship inside scikit-image: nothing to download
    c = self.builder_config
    return {"train": self._generate_examples("train", c.num_train),
            "test": self._generate_examples("test", c.num_test)}

  def _generate_examples(self, split: str, count: int):
    c = self.builder_config
    aspect = c.width / c.height
    for index in range(count):
      clip = tp.sample_clip(c.seed, split, index, aspect)
      example = tp.labels(clip)
      example["video"] = tp.render(clip, c.frames, c.height, c.width)
      example["index"] = index
      for f, h, w in c.extra_resolutions:
        # Rendering f frames samples t = i / f = (i * k) / frames: frame i*k of the full clip.
        example[extra_key(f, h, w)] = tp.render(clip, f, h, w)
      yield index, example
