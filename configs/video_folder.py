"""Your own videos: a folder of mp4/webm/gif files with captions.jsonl or captions.csv, or a
manifest table (CSV, JSONL or Parquet; paths local or gs://) such as WebVid's metadata.

    imagen-video prepare --config configs/video_folder.py:source_dir=/path/to/videos
    imagen-video prepare --config configs/video_folder.py:source_dir=/path/to/videos,skip_bad
    imagen-video prepare --config configs/video_folder.py:manifest=gs://b/webvid.parquet,path_column=contentUrl,caption_column=name \
        --data_dir gs://b/tfds --beam_pipeline_options "runner=DataflowRunner,project=P,region=R,..."

Arguments: source_dir or manifest (one is required), path_column, caption_column,
extra_columns (colon-separated manifest columns kept as features), frames, height, width,
fps, image_format (png | jpeg), jpeg_quality, test_fraction, skip_bad.
Bad files (corrupt, no caption, too short, unknown extension, a bad manifest row) stop
preparation with a list of them, unless skip_bad is given.
"""
import ml_collections

from imagen_video.data import pipeline
from imagen_video.utils.config_args import parse_arg


def get_config(arg=None):
  a = parse_arg(arg, source_dir="", manifest="", path_column="", caption_column="",
                extra_columns="", frames=16, height=64, width=64, fps=8.0, image_format="png",
                jpeg_quality=95, test_fraction=0.0, skip_bad=False)
  if bool(a.source_dir) == bool(a.manifest):
    raise ValueError("configs/video_folder.py needs source_dir or manifest: use "
                     "--config configs/video_folder.py:source_dir=/path/to/videos (or manifest=FILE)")
  data = pipeline.default_data_config()
  data.name = "video_folder"
  data.builder = ml_collections.ConfigDict(dict(
      source_dir=a.source_dir, manifest=a.manifest, path_column=a.path_column,
      caption_column=a.caption_column,
      extra_columns=tuple(c for c in a.extra_columns.split(":") if c), frames=a.frames,
      height=a.height, width=a.width, fps=a.fps, image_format=a.image_format,
      jpeg_quality=a.jpeg_quality, test_fraction=a.test_fraction, skip_bad=a.skip_bad))
  data.frames = a.frames
  return ml_collections.ConfigDict({"data": data})
