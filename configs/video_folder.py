"""Your own videos: a folder of mp4/webm/gif files with captions.jsonl or captions.csv.

    imagen-video prepare --config configs/video_folder.py:source_dir=/path/to/videos
    imagen-video prepare --config configs/video_folder.py:source_dir=/path/to/videos,skip_bad

Arguments: source_dir (required), frames, height, width, fps, skip_bad.
Bad files (corrupt, no caption, too short, unknown extension) stop preparation
with a list of them, unless skip_bad is given.
"""
import ml_collections

from imagen_video.data import pipeline
from imagen_video.utils.config_args import parse_arg


def get_config(arg=None):
  a = parse_arg(arg, source_dir="", frames=16, height=64, width=64, fps=8.0, skip_bad=False)
  if not a.source_dir:
    raise ValueError("configs/video_folder.py needs source_dir: use "
                     "--config configs/video_folder.py:source_dir=/path/to/videos")
  data = pipeline.default_data_config()
  data.name = "video_folder"
  data.builder = ml_collections.ConfigDict(dict(
      source_dir=a.source_dir, frames=a.frames, height=a.height, width=a.width, fps=a.fps,
      skip_bad=a.skip_bad))
  data.frames = a.frames
  return ml_collections.ConfigDict({"data": data})
