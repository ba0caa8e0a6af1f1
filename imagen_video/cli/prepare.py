"""imagen-video prepare --config CONFIG[:ARGS] [--config.data.FIELD=VALUE ...]
   [--data_dir DIR] [--beam_pipeline_options "runner=DirectRunner,direct_num_workers=2,..."]

Builds the TFDS dataset named by config.data (ArrayRecord format) if it is not
prepared yet, and prints where it is and its split sizes. With --beam_pipeline_options
(the string `tfds build` takes) the video_folder builder runs as an Apache Beam pipeline:
DirectRunner here, DataflowRunner / FlinkRunner / SparkRunner on a cluster (README).
A video_folder dataset whose source files changed since it was prepared is refused, naming
what changed; --rebuild deletes and prepares it again.
"""
from __future__ import annotations

from absl import flags

from imagen_video.cli import flags_util


def main(argv: list[str]) -> int:
  fv = flags.FlagValues()
  flags_util.define_config(fv, argv)
  flags.DEFINE_string("data_dir", None, "TFDS data dir (overrides config.data.data_dir)", flag_values=fv)
  flags.DEFINE_string("beam_pipeline_options", None, "build on Apache Beam with these options "
                      "(comma-separated KEY=VALUE, as `tfds build` takes them)", flag_values=fv)
  flags.DEFINE_bool("rebuild", False, "delete the prepared dataset and build it again (after its "
                    "source files changed)", flag_values=fv)
  flags_util.parse(fv, argv, __doc__)
  if fv.config is None:
    raise SystemExit(f"{argv[0]}: --config is required (e.g. configs/moving_shapes.py)")
  data = fv.config.data
  from imagen_video.data import builders
  import time
  t0 = time.time()
  try:
    builder = builders.prepare(data.name, fv.data_dir or data.data_dir,
                               beam_options=fv.beam_pipeline_options, rebuild=fv.rebuild,
                               **dict(data.builder))
  except (ValueError, FileNotFoundError) as e:
    raise SystemExit(f"{argv[0]}: {e}")
  print(f"[prepare] {time.time() - t0:.1f} s")
  sizes = {name: split.num_examples for name, split in builder.info.splits.items()}
  print(f"prepared {builder.info.full_name} in {builder.data_dir}: {sizes}")
  skipped = builder.info.metadata.get("skipped") if builder.info.metadata else None
  if skipped:
    print(f"skipped {len(skipped)} bad files:")
    for item in skipped:
      print(f"  {item}")
  return 0
