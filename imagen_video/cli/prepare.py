"""imagen-video prepare --config CONFIG[:ARGS] [--config.data.FIELD=VALUE ...]

Builds the TFDS dataset named by config.data (ArrayRecord format) if it is not
prepared yet, and prints where it is and its split sizes.
"""
from __future__ import annotations

from absl import flags

from imagen_video.cli import flags_util


def main(argv: list[str]) -> int:
  fv = flags.FlagValues()
  flags_util.define_config(fv, argv)
  flags.DEFINE_string("data_dir", None, "TFDS data dir (overrides config.data.data_dir)", flag_values=fv)
  flags_util.parse(fv, argv, __doc__)
  if fv.config is None:
    raise SystemExit(f"{argv[0]}: --config is required (e.g. configs/moving_shapes.py)")
  data = fv.config.data
  from imagen_video.data import builders
  builder = builders.prepare(data.name, fv.data_dir or data.data_dir, **dict(data.builder))
  sizes = {name: split.num_examples for name, split in builder.info.splits.items()}
  print(f"prepared {builder.info.full_name} in {builder.data_dir}: {sizes}")
  skipped = builder.info.metadata.get("skipped") if builder.info.metadata else None
  if skipped:
    print(f"skipped {len(skipped)} bad files:")
    for item in skipped:
      print(f"  {item}")
  return 0
