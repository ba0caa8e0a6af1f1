"""Shared by the synthetic clip builders (moving_shapes, texture_pans, athletes): the config
fields and a name that encodes every parameter, and the builder's splits, common features
and extra resolutions (`SyntheticClips`; subclasses give their labels and one example)."""
from __future__ import annotations

import abc
import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from imagen_video.data import batch as batch_keys

HOMEPAGE = "https://github.com/imagen-video/imagen-video"


@dataclasses.dataclass
class ClipsConfig(tfds.core.BuilderConfig):
  frames: int = 16
  height: int = 32
  width: int = 32
  fps: float = 8.0
  num_train: int = 1000
  num_test: int = 100
  seed: int = 0
  extra_resolutions: tuple = ()
  num_validation: int = 0  # a validation split only where the dataset defines one


extra_key = batch_keys.low_res_key  # the feature of the clips at another rate or size


class SyntheticClips(tfds.core.GeneratorBasedBuilder):
  """Train/test (and, if `num_validation`, validation) splits of `num_train`/`num_test` clips;
  example i of a split is clip i
  (readers index clips directly and shuffle themselves). Features: video, caption, the
  subclass's labels, index, and `video_{F}x{H}x{W}` per extra resolution."""

  disable_shuffling = True

  @abc.abstractmethod
  def _labels(self, config) -> dict:
    """The dataset's own features besides video, caption, index and extra resolutions."""

  @abc.abstractmethod
  def _example(self, split: str, index: int) -> dict:
    """Clip `index` of `split`: its labels, video and extra resolutions."""

  def _metadata(self, config) -> dict:
    return {}

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    features = {"video": tfds.features.Video((c.frames, c.height, c.width, 3), encoding_format="png"),
                "caption": tfds.features.Text(), **self._labels(c),
                "index": tfds.features.Scalar(dtype=np.int64)}
    for f, h, w in c.extra_resolutions:
      features[extra_key(f, h, w)] = tfds.features.Video((f, h, w, 3), encoding_format="png")
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(features),
        metadata=tfds.core.MetadataDict(fps=c.fps, seed=c.seed, **self._metadata(c)),
        homepage=HOMEPAGE)

  def _split_generators(self, dl_manager):
    del dl_manager  # synthetic (or shipped with a package): nothing to download
    c = self.builder_config
    splits = {"train": self._generate_examples("train", c.num_train),
              "test": self._generate_examples("test", c.num_test)}
    if c.num_validation:
      splits["validation"] = self._generate_examples("validation", c.num_validation)
    return splits

  def _generate_examples(self, split: str, count: int):
    for index in range(count):
      yield index, {**self._example(split, index), "index": index}


def config_name(dataset: str, frames, height, width, fps, num_train, num_test, seed,
                extra_resolutions=(), num_validation=0) -> tuple[str, tuple]:
  """(name, extra resolutions as int triples), so variants never collide on disk.

  Extra resolutions store the same clips at lower fps/size: their frame count must
  divide `frames` and their aspect equal the main one.
  """
  extra = tuple(tuple(int(v) for v in r) for r in extra_resolutions)
  for f, h, w in extra:
    if frames % f or abs(w / h - width / height) > 1e-6:
      raise ValueError(f"{dataset} extra resolution {f}x{h}x{w}: frames must divide {frames} "
                       f"and the aspect must equal {width}x{height}'s")
  name = f"{frames}x{height}x{width}_fps{fps:g}_n{num_train}-{num_test}_s{seed}"
  name += f"_v{num_validation}" if num_validation else ""  # names without one stay as they were
  return name + "".join(f"_x{f}x{h}x{w}" for f, h, w in extra), extra
