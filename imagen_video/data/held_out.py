"""Held-out clips for evaluation: the first clips of a prepared split, whole (no crops,
no shuffling), and for extension a wrap-around `moving_shapes` clip continued for longer."""
from __future__ import annotations

import dataclasses

import numpy as np

from imagen_video.data import batch as batch_keys
from imagen_video.data import moving_shapes as ms
from imagen_video.data import pipeline


def clips(config, num: int, split: str = "test") -> dict:
  """The first `num` clips of `split` (test, or validation where the dataset has one) of
  `config.data`: video and, for SR stages, the low-res video in [0, 1], captions; with the
  dataset's per-frame keypoints and visibility if it has them."""
  d = config.data.copy_and_resolve_references()
  with d.unlocked():
    d.update(dict(split=split, shuffle=False, repeat=False, drop_remainder=False, batch_size=num,
                  crop=None, text="string", prefetch=0, extra_images=0))
  data = pipeline.VideoBatches(d, process_index=0, process_count=1)
  try:
    batch = next(data)
  finally:
    data.close()
  if len(batch[batch_keys.CAPTION]) < num:
    raise ValueError(f"num={num}: the {split} split of {d.name} has only "
                     f"{len(batch[batch_keys.CAPTION])} clips")
  out = {"video": (batch[batch_keys.VIDEO] + 1) / 2,
         "caption": [str(c) for c in batch[batch_keys.CAPTION]]}
  low = batch_keys.low_res_shape(config)
  if low:
    out["low"] = (batch[batch_keys.low_res_key(*low)] + 1) / 2
  out.update({k: batch[k] for k in ("keypoints", "visibility") if k in batch})
  return out


@dataclasses.dataclass
class ExtensionClips:
  video: np.ndarray  # [N, factor * T, H, W, 3] in [-1, 1]: the truth, continued
  centers: np.ndarray  # [N, factor * T, 2] true centres
  colors: list
  captions: list


def extension_clips(builder, num: int, factor: int, first: int = 0) -> ExtensionClips:
  """`num` test clips from the `first` of a wrap moving_shapes dataset (`builder`: the
  config's data.builder), rendered `factor` times longer at the same speed."""
  if not builder.get("wrap"):
    raise ValueError("extension needs a moving_shapes dataset with data.builder.wrap=True "
                     "(otherwise the shape leaves the frame and the continuation has no truth)")
  t, h, w = builder.frames, builder.height, builder.width
  clip_list = [ms.sample_clip(builder.get("seed", 0), "test", i, w / h, wrap=True, **ms.size_args(builder))
               for i in range(first, first + num)]
  longer = [dataclasses.replace(c, velocity=tuple(v * factor for v in c.velocity)) for c in clip_list]
  video = np.stack([ms.render(c, factor * t, h, w) for c in longer]).astype(np.float32) / 127.5 - 1
  return ExtensionClips(video, np.stack([c.centers(factor * t) for c in longer]),
                        [c.color for c in clip_list], [c.caption for c in clip_list])
