"""imagen-video demo [--workdir DIR]

The main job on built-in defaults. For now (before the cascade exists): prepare
the synthetic `moving_shapes` dataset, check 200 clips' captions against their
pixels, and write a preview mp4 and a contact sheet into the workdir.
"""
from __future__ import annotations

import os
import time

from absl import flags

from imagen_video.cli import flags_util


def main(argv: list[str]) -> int:
  fv = flags.FlagValues()
  flags.DEFINE_string("workdir", "demo", "output folder (dataset under WORKDIR/tensorflow_datasets)",
                      flag_values=fv)
  flags_util.parse(fv, argv, __doc__)
  return run(fv.workdir)


def run(workdir: str) -> int:
  from imagen_video.cli import preview
  from imagen_video.data import pipeline
  from imagen_video.eval import caption_check
  from imagen_video.utils import configs_loader

  start = time.time()
  config = configs_loader.load("moving_shapes.py")
  data = config.data
  data.data_dir = os.path.join(workdir, "tensorflow_datasets")
  print(f"[1/3] preparing moving_shapes {dict(data.builder)} in {data.data_dir}", flush=True)
  result = preview.write_preview(data, os.path.join(workdir, "preview"), num=8)
  print(f"[2/3] caption check of 200 training clips (labels vs pixels)", flush=True)
  check = data.copy_and_resolve_references()
  check.update(dict(shuffle=False, repeat=False, drop_remainder=False, batch_size=200))
  batch = next(iter(pipeline.VideoBatches(check, process_index=0, process_count=1)))
  from imagen_video.media import video_io
  score = caption_check.score(video_io.to_uint8(batch["video"]), [str(c) for c in batch["caption"]])
  for key, value in score["accuracy"].items():
    print(f"      {key:<16} {value:6.1%}")
  print(f"[3/3] wrote {result['paths']['mp4']} and {result['paths']['png']} "
        f"({time.time() - start:.0f} s)", flush=True)
  return 0
