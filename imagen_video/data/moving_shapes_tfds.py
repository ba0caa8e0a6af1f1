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
from imagen_video.data.clip_config import extra_key  # noqa: F401  (re-exported: builders' extras)

NUM_PREVIEW = 8


@dataclasses.dataclass
class MovingShapesConfig(clip_config.ClipsConfig):
  wrap: bool = False
  sizes: tuple = ms.SIZES
  gap: float | None = None


def moving_shapes_config(frames=16, height=32, width=32, fps=8.0, num_train=1000, num_test=100,
                         seed=0, extra_resolutions=(), wrap=False,
                         sizes=ms.SIZES, gap=None) -> MovingShapesConfig:
  """A config whose name encodes every parameter, so variants never collide on disk."""
  name, extra = clip_config.config_name("moving_shapes", frames, height, width, fps, num_train,
                                        num_test, seed, extra_resolutions)
  name += "_wrap" if wrap else ""
  sizes = tuple(float(v) for v in sizes)
  if len(sizes) != 2 or not 0 < sizes[0] <= sizes[1] < 0.4:
    raise ValueError(f"data.builder.sizes={sizes}: expected (min, max) circumradius in frame "
                     "heights, 0 < min <= max < 0.4")
  if sizes != ms.SIZES:
    name += "_r{:g}-{:g}".format(*sizes)
  if gap is not None:
    if not 0 <= gap < 0.2:
      raise ValueError(f"data.builder.gap={gap}: expected a distance in frame heights in [0, 0.2)")
    name += f"_g{gap:g}"
  return MovingShapesConfig(name=name, frames=frames, height=height, width=width, fps=float(fps),
                            num_train=num_train, num_test=num_test, seed=seed,
                            extra_resolutions=extra, wrap=bool(wrap), sizes=sizes,
                            gap=None if gap is None else float(gap),
                            description="one shape moving at constant speed on black")


class MovingShapes(clip_config.SyntheticClips):
  """Captioned synthetic videos of one moving shape (deterministic per seed)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release: grammar 'a {color} {shape} moving {direction}'."}
  BUILDER_CONFIGS = [moving_shapes_config()]

  def _labels(self, c) -> dict:
    return {
        "color": tfds.features.ClassLabel(names=list(ms.COLORS)),
        "shape": tfds.features.ClassLabel(names=list(ms.SHAPES)),
        "direction": tfds.features.ClassLabel(names=list(ms.DIRECTIONS)),
        "positions": tfds.features.Tensor(shape=(c.frames, 2), dtype=np.float32),
        "size": tfds.features.Scalar(dtype=np.float32),
    }

  def _example(self, split: str, index: int) -> dict:
    c = self.builder_config
    clip = ms.sample_clip(c.seed, split, index, c.width / c.height, c.wrap, c.sizes, c.gap)
    example = ms.labels(clip, c.frames)
    example["video"] = ms.render(clip, c.frames, c.height, c.width)
    for f, h, w in c.extra_resolutions:
      example[extra_key(f, h, w)] = ms.render(clip, c.frames, h, w)[:: c.frames // f]
    return example
