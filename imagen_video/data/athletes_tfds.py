"""TFDS builder for `athletes` (see `athletes.py` for the clips).

    builders.prepare("athletes", DIR, frames=16, height=32, width=32,
                     extra_resolutions=((8, 32, 32), (16, 16, 16)))

`extra_resolutions` store the same clips as `video_{frames}x{height}x{width}`
exactly as `moving_shapes` does (same time span at a lower frame rate: frame i of
a k-times shorter clip is frame i*k of the full one; same picture at a lower size).
Keypoints are normalised to the frame, so they serve every size; a k-times
shorter clip's keypoints are `keypoints[::k]`. The test split holds only the
held-out (exercise, body type) pairs (`athletes.HELD_OUT`, also in the metadata).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from imagen_video.data import athletes as ath
from imagen_video.data import clip_config
from imagen_video.data.moving_shapes_tfds import extra_key
from imagen_video.pose.skeleton import KEYPOINTS, NUM_KEYPOINTS


@dataclasses.dataclass
class AthletesConfig(tfds.core.BuilderConfig):
  frames: int = 16
  height: int = 32
  width: int = 32
  fps: float = 8.0
  num_train: int = 1000
  num_test: int = 100
  seed: int = 0
  extra_resolutions: tuple = ()


def athletes_config(frames=16, height=32, width=32, fps=8.0, num_train=1000, num_test=100, seed=0,
                    extra_resolutions=()) -> AthletesConfig:
  """A config whose name encodes every parameter, so variants never collide on disk."""
  name, extra = clip_config.config_name("athletes", frames, height, width, fps, num_train, num_test,
                                        seed, extra_resolutions)
  return AthletesConfig(name=name, frames=frames, height=height, width=width, fps=float(fps),
                        num_train=num_train, num_test=num_test, seed=seed, extra_resolutions=extra,
                        description="an articulated figure doing an exercise, with COCO-17 keypoints")


class Athletes(tfds.core.GeneratorBasedBuilder):
  """Captioned synthetic exercise clips with per-frame 2D keypoints (deterministic per seed)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = [athletes_config()]
  disable_shuffling = True  # a fixed order; `index` is the clip number

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    features = {
        "video": tfds.features.Video((c.frames, c.height, c.width, 3), encoding_format="png"),
        "caption": tfds.features.Text(),
        "exercise": tfds.features.ClassLabel(names=list(ath.EXERCISES)),
        "body_type": tfds.features.ClassLabel(names=list(ath.BODY_TYPES)),
        "skin": tfds.features.ClassLabel(names=list(ath.SKIN)),
        "shirt": tfds.features.ClassLabel(names=list(ath.CLOTHES)),
        "shorts": tfds.features.ClassLabel(names=list(ath.CLOTHES)),
        "background": tfds.features.ClassLabel(names=list(ath.BACKGROUNDS)),
        "keypoints": tfds.features.Tensor(shape=(c.frames, NUM_KEYPOINTS, 2), dtype=np.float32),
        "visibility": tfds.features.Tensor(shape=(c.frames, NUM_KEYPOINTS), dtype=np.float32),
        "proportions": tfds.features.Tensor(shape=(len(ath.PROPORTIONS),), dtype=np.float32),
        "reps": tfds.features.Scalar(dtype=np.float32),
        "phase": tfds.features.Scalar(dtype=np.float32),
        "yaw": tfds.features.Scalar(dtype=np.float32),
        "index": tfds.features.Scalar(dtype=np.int64),
    }
    for f, h, w in c.extra_resolutions:
      features[extra_key(f, h, w)] = tfds.features.Video((f, h, w, 3), encoding_format="png")
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(features),
        metadata=tfds.core.MetadataDict(fps=c.fps, seed=c.seed, keypoints=list(KEYPOINTS),
                                        proportions=list(ath.PROPORTIONS),
                                        held_out=sorted(list(p) for p in ath.HELD_OUT)),
        homepage="https://github.com/imagen-video/imagen-video",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # synthetic: nothing to download
    c = self.builder_config
    return {"train": self._generate_examples("train", c.num_train),
            "test": self._generate_examples("test", c.num_test)}

  def _generate_examples(self, split: str, count: int):
    c = self.builder_config
    for index in range(count):
      clip = ath.sample_clip(c.seed, split, index, c.width / c.height)
      example = ath.labels(clip, c.frames)
      example["video"] = ath.render(clip, c.frames, c.height, c.width)
      example["index"] = index
      for f, h, w in c.extra_resolutions:
        example[extra_key(f, h, w)] = ath.render(clip, c.frames, h, w)[:: c.frames // f]
      yield index, example
