"""TFDS builder for `texture_pans` (see `texture_pans.py` for the clips).

    builders.prepare("texture_pans", DIR, frames=16, height=32, width=32,
                     extra_resolutions=((8, 32, 32), (16, 16, 16)))

`extra_resolutions` store the same clips as `video_{frames}x{height}x{width}`
exactly as `moving_shapes` does (same time span at a lower frame rate: frame i
of a k-times shorter clip is frame i*k of the full one; area-downsampled size).
The train split uses the train photos, the test split only held-out photos, and the
optional validation split (`num_validation` clips) photos that neither of them uses, for
choosing sampler settings without looking at the test photos.
"""
from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from imagen_video.data import clip_config, texture_pans as tp
from imagen_video.data.clip_config import extra_key


def texture_pans_config(frames=16, height=32, width=32, fps=8.0, num_train=1000, num_test=100,
                        seed=0, extra_resolutions=(), num_validation=0) -> clip_config.ClipsConfig:
  """A config whose name encodes every parameter, so variants never collide on disk."""
  name, extra = clip_config.config_name("texture_pans", frames, height, width, fps, num_train,
                                        num_test, seed, extra_resolutions, num_validation)
  return clip_config.ClipsConfig(name=name, frames=frames, height=height, width=width, fps=float(fps),
                           num_train=num_train, num_test=num_test, seed=seed, extra_resolutions=extra,
                           num_validation=num_validation,
                           description="camera pans and zooms over scikit-image photographs")


class TexturePans(clip_config.SyntheticClips):
  """Captioned pans/zooms over real photographs (deterministic per seed); photos ship inside
  scikit-image, so there is nothing to download."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = [texture_pans_config()]

  def _labels(self, c) -> dict:
    return {
        "photo": tfds.features.Text(),
        "motion": tfds.features.ClassLabel(names=list(tp.MOTIONS)),
        "center": tfds.features.Tensor(shape=(2,), dtype=np.float32),
        "velocity": tfds.features.Tensor(shape=(2,), dtype=np.float32),
        "view_height": tfds.features.Scalar(dtype=np.float32),
        "zoom": tfds.features.Scalar(dtype=np.float32),
    }

  def _metadata(self, c) -> dict:
    return {"photos": {k: list(v) for k, v in tp.SPLIT_PHOTOS.items()}}

  def _example(self, split: str, index: int) -> dict:
    c = self.builder_config
    clip = tp.sample_clip(c.seed, split, index, c.width / c.height)
    example = tp.labels(clip)
    example["video"] = tp.render(clip, c.frames, c.height, c.width)
    for f, h, w in c.extra_resolutions:
      # Rendering f frames samples t = i / f = (i * k) / frames: frame i*k of the full clip.
      example[extra_key(f, h, w)] = tp.render(clip, f, h, w)
    return example
