"""imagen-video train --config CONFIG[:ARGS] --workdir DIR [--config.FIELD=VALUE ...]

Trains one stage (`train_and_evaluate`), resuming from the newest checkpoint in
DIR. Progress, TensorBoard scalars (DIR/tensorboard), checkpoints
(DIR/checkpoints) and periodic samples (DIR/samples) go into the workdir.
"""
from __future__ import annotations

from absl import flags

from imagen_video.cli import flags_util


def main(argv: list[str]) -> int:
  fv = flags.FlagValues()
  flags_util.define_config(fv, argv)
  flags.DEFINE_string("workdir", None, "where checkpoints, logs and samples go", flag_values=fv)
  flags_util.parse(fv, argv, __doc__)
  if fv.config is None or not fv.workdir:
    raise SystemExit(f"{argv[0]}: --config and --workdir are required")
  from imagen_video.train import trainer
  result = trainer.train_and_evaluate(fv.config, fv.workdir)
  print(f"done: step {result['step']}, last loss {result['losses'][-1][1] if result['losses'] else 'n/a'}")
  return 0
