"""imagen-video preview --config CONFIG[:ARGS] --out_dir DIR [--num N --split test]

Writes the first N clips of a dataset split as `preview.mp4` (clips tiled in a
grid) and `contact_sheet.png` (one row of frames per clip, caption on top).
"""
from __future__ import annotations

import os

import numpy as np
from absl import flags

from imagen_video.cli import flags_util


def tile(videos: np.ndarray, cols: int, gap: int = 2) -> np.ndarray:
  """[N, T, H, W, 3] uint8 -> [T, rows*(H+gap)-gap, cols*(W+gap)-gap, 3] grid video."""
  n, t, h, w, c = videos.shape
  rows = -(-n // cols)
  out = np.full((t, rows * (h + gap) - gap, cols * (w + gap) - gap, c), 40, np.uint8)
  for i, v in enumerate(videos):
    r, k = divmod(i, cols)
    out[:, r * (h + gap):r * (h + gap) + h, k * (w + gap):k * (w + gap) + w] = v
  return out


def write_preview(data_config, out_dir: str, num: int = 8, split: str = "test") -> dict:
  """Writes preview.mp4 + contact_sheet.png of `num` clips; returns their paths and clips."""
  from imagen_video.data import pipeline
  from imagen_video.media import contact_sheet, video_io
  cfg = data_config.copy_and_resolve_references()
  with cfg.unlocked():
    cfg.update(dict(split=split, shuffle=False, repeat=False, drop_remainder=False, batch_size=num))
  batches = pipeline.VideoBatches(cfg, process_index=0, process_count=1)
  batch = next(batches)
  batches.close()
  clips = video_io.to_uint8(batch["video"])
  captions = [str(c) for c in batch["caption"]]
  os.makedirs(out_dir, exist_ok=True)
  fps = float(batches.builder.info.metadata.get("fps", 8.0)) if batches.builder.info.metadata else 8.0
  paths = {"mp4": os.path.join(out_dir, "preview.mp4"), "png": os.path.join(out_dir, "contact_sheet.png")}
  video_io.write_mp4(paths["mp4"], tile(clips, cols=min(4, len(clips))), fps=fps, scale=4)
  contact_sheet.contact_sheet(list(clips), captions, paths["png"],
                              title=f"{batches.builder.info.full_name} ({split})")
  return {"paths": paths, "clips": clips, "captions": captions}


def main(argv: list[str]) -> int:
  fv = flags.FlagValues()
  flags_util.define_config(fv, argv)
  flags.DEFINE_string("out_dir", "preview", "where to write preview.mp4 and contact_sheet.png", flag_values=fv)
  flags.DEFINE_integer("num", 8, "number of clips", flag_values=fv)
  flags.DEFINE_string("split", "test", "dataset split", flag_values=fv)
  flags_util.parse(fv, argv, __doc__)
  if fv.config is None:
    raise SystemExit(f"{argv[0]}: --config is required (e.g. configs/moving_shapes.py)")
  result = write_preview(fv.config.data, fv.out_dir, fv.num, fv.split)
  for kind, path in result["paths"].items():
    print(f"wrote {path}")
  return 0
