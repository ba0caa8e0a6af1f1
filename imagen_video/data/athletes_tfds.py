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

import numpy as np
import tensorflow_datasets as tfds

from imagen_video.data import athletes as ath
from imagen_video.data import clip_config
from imagen_video.data.clip_config import extra_key
from imagen_video.pose.skeleton import KEYPOINTS, NUM_KEYPOINTS


def athletes_config(frames=16, height=32, width=32, fps=8.0, num_train=1000, num_test=100, seed=0,
                    extra_resolutions=()) -> clip_config.ClipsConfig:
  """A config whose name encodes every parameter, so variants never collide on disk."""
  name, extra = clip_config.config_name("athletes", frames, height, width, fps, num_train, num_test,
                                        seed, extra_resolutions)
  return clip_config.ClipsConfig(name=name, frames=frames, height=height, width=width, fps=float(fps),
                        num_train=num_train, num_test=num_test, seed=seed, extra_resolutions=extra,
                        description="an articulated figure doing an exercise, with COCO-17 keypoints")


class Athletes(clip_config.SyntheticClips):
  """Captioned synthetic exercise clips with per-frame 2D keypoints (deterministic per seed)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = [athletes_config()]

  def _labels(self, c) -> dict:
    return {
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
    }

  def _metadata(self, c) -> dict:
    return {"keypoints": list(KEYPOINTS), "proportions": list(ath.PROPORTIONS),
            "held_out": sorted(list(p) for p in ath.HELD_OUT)}

  def _example(self, split: str, index: int) -> dict:
    c = self.builder_config
    clip = ath.sample_clip(c.seed, split, index, c.width / c.height)
    example = ath.labels(clip, c.frames)
    example["video"] = ath.render(clip, c.frames, c.height, c.width)
    for f, h, w in c.extra_resolutions:
      example[extra_key(f, h, w)] = ath.render(clip, c.frames, h, w)[:: c.frames // f]
    return example
