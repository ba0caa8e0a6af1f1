"""imagen-video distill --config CONFIG[:ARGS] --teacher DIR --workdir DIR [--from-steps 64]
       [--to-steps 8] [--guidance-range 0,6] [--train-steps 500 | 800,400,400,400] [--lr 3e-4]

Distills a trained stage (its workdir: --teacher) to --to-steps sampling steps: first
guidance distillation for guided stages (the student takes the guidance weight as input),
then halvings of the DDIM steps from --from-steps (default config.sample.steps), each a
resumable training run in WORKDIR/<phase>. Re-running the command skips finished phases and
resumes an interrupted one. --config is the stage's training config (--config.FIELD=VALUE
overrides, e.g. --config.data.batch_size=8). Prints where the final student is: point a
cascade stage at it (`workdir`, `steps`), e.g. configs/cascade_tiny.py:distilled=DIR.
"""
from __future__ import annotations

import os

from absl import flags

from imagen_video.cli import flags_util


def main(argv: list[str]) -> int:
  fv = flags.FlagValues()
  flags_util.define_config(fv, argv)
  flags.DEFINE_string("teacher", None, "workdir of the trained stage (its newest EMA checkpoint)",
                      flag_values=fv)
  flags.DEFINE_string("workdir", None, "the students go into WORKDIR/<phase>", flag_values=fv)
  flags.DEFINE_integer("from-steps", None, "the teacher's DDIM steps (default config.sample.steps)",
                       flag_values=fv)
  flags.DEFINE_integer("to-steps", 8, "the final student's steps", flag_values=fv)
  flags.DEFINE_string("guidance-range", "0,6", "MIN,MAX of the guidance weight drawn in training "
                      "(guided stages)", flag_values=fv)
  flags.DEFINE_string("train-steps", "500", "training steps per phase: one number, or one per "
                      "phase (comma-separated)", flag_values=fv)
  flags.DEFINE_enum("guidance-weighting", "truncated_snr", ["truncated_snr", "none", "snr+1"],
                    "lambda(SNR) on the guidance phase's x0 error (none: every noise level alike, "
                    "more weight on high noise than max(1, SNR))", flag_values=fv)
  flags.DEFINE_float("lr", 3e-4, "peak learning rate of every phase (cosine decay)", flag_values=fv)
  flags_util.parse(fv, argv, __doc__)
  if fv.config is None or not fv.teacher or not fv.workdir:
    raise SystemExit(f"{argv[0]}: --config, --teacher and --workdir are required")
  try:
    w_range = tuple(float(v) for v in fv["guidance-range"].value.split(","))
    train_steps = [int(v) for v in fv["train-steps"].value.split(",")]
  except ValueError as e:
    raise SystemExit(f"{argv[0]}: --guidance-range MIN,MAX and --train-steps N[,N...] are numbers ({e})")
  if len(w_range) != 2 or w_range[0] > w_range[1]:
    raise SystemExit(f"{argv[0]}: --guidance-range {fv['guidance-range'].value!r}: expected MIN,MAX")
  from imagen_video.train import distill
  from_steps = fv["from-steps"].value or fv.config.sample.steps
  try:  # the plan's errors before any training
    distill.per_phase(train_steps, len(distill.plan(fv.config, from_steps, fv["to-steps"].value)))
  except ValueError as e:
    raise SystemExit(f"{argv[0]}: {e}")
  if not os.path.isdir(os.path.join(fv.teacher, "checkpoints")):
    raise SystemExit(f"{argv[0]}: --teacher {fv.teacher}: no checkpoints/ there (train the stage first)")
  distill.distill(fv.config, fv.teacher, fv.workdir, from_steps=from_steps,
                  to_steps=fv["to-steps"].value, guidance_range=w_range, train_steps=train_steps,
                  lr=fv.lr, guidance_weighting=fv["guidance-weighting"].value)
  return 0
