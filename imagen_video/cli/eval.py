"""imagen-video eval --workdir DIR [--config CONFIG] --metric NAME [options] [--out_dir DIR]
   imagen-video eval --cascade CASCADE_CONFIG --metric NAME [options] [--out_dir DIR]

Runs one registered evaluator (`eval/registry.py`) on a stage (its EMA weights; --config adds
sampling settings and where the held-out data is) or a whole cascade, through the same sampler
and seed rule as `imagen-video sample`:

  caption      the 28 colour x direction prompts of moving_shapes, read from the pixels
  fvd          FVD (Kinetics-400 I3D) against held-out clips
  clip_score   CLIP score and CLIP R-Precision of samples of held-out captions (--clip DIR)
  sr_psnr      a TSR/SSR stage against bicubic / frame blending (+ back-projection)
  text_probe   x0 error with the direction word changed (a base stage)
  conditional  i2v, interpolation, prediction, inpainting, extension against the truth
  pose         pose-guided samples against held-out poses, and without pose

Each evaluator's options are flags (below); unset ones take the evaluator's defaults.
"""
from __future__ import annotations

import dataclasses
import os

from absl import flags

from imagen_video.cli import flags_util, sampling_flags
from imagen_video.eval import registry

DEFINE = {"int": flags.DEFINE_integer, "float": flags.DEFINE_float, "str": flags.DEFINE_string,
          "bool": flags.DEFINE_bool}


def main(argv: list[str]) -> int:
  fv = flags.FlagValues()
  flags_util.define_config(fv, argv)
  flags_util.define_config(fv, argv, name="cascade", help_string="cascade config file[:args]")
  flags.DEFINE_string("workdir", None, "training workdir with checkpoints/ (one stage)", flag_values=fv)
  flags.DEFINE_enum("metric", "caption", registry.names(), "the evaluator to run", flag_values=fv)
  flags.DEFINE_string("out_dir", None, "where to write the report (default WORKDIR/eval, or "
                      "cascade_eval)", flag_values=fv)
  flags.DEFINE_integer("step", None, "checkpoint step to evaluate (one stage; default the newest)",
                       flag_values=fv)
  sampling_flags.define(fv)
  define_options(fv)
  flags_util.parse(fv, argv, __doc__)
  prog = argv[0]
  cascade = fv.cascade is not None
  if cascade == bool(fv.workdir) or (cascade and fv.config is not None):
    raise SystemExit(f"{prog}: give --workdir (with an optional --config) or --cascade")
  sampling_flags.check(fv, prog, cascade=cascade)
  cls = registry.get(fv.metric)
  if ("cascade" if cascade else "stage") not in cls.targets:
    raise SystemExit(f"{prog}: --metric {fv.metric} measures a {' or '.join(cls.targets)}")
  try:
    evaluator = registry.build(fv.metric, **{f.name: getattr(fv, f.name) for f in dataclasses.fields(cls)
                                             if getattr(fv, f.name) is not None})
  except ValueError as e:
    raise SystemExit(f"{prog}: {e}")
  sampler = load(fv)
  out_dir = fv.out_dir or (os.path.join(fv.workdir, "eval") if fv.workdir else "cascade_eval")
  try:
    evaluator.run(sampler, out_dir)
  except ValueError as e:
    raise SystemExit(f"{prog}: {e}")
  return 0


def define_options(fv) -> None:
  """A flag for every option of every evaluator (names they share are defined once)."""
  for name in registry.names():
    for f in dataclasses.fields(registry.get(name)):
      if f.name in fv:
        continue
      kind = f.type if isinstance(f.type, str) else f.type.__name__
      DEFINE[kind.split(" ")[0]](f.name, None, f"{f.metadata['help']} (default {f.default})",
                                 flag_values=fv)


def load(fv):
  """The StageSampler or Cascade the flags name, with --steps/--sampler/--guidance as its defaults."""
  from imagen_video.cascade.cascade import Cascade
  from imagen_video.stage.sampler import StageSampler
  try:
    if fv.cascade is not None:
      return Cascade.load(fv.cascade)
    return StageSampler.load(fv.workdir, config=fv.config, step=fv.step, steps=fv.steps,
                             sampler=fv.sampler, guidance=fv.guidance)
  except (FileNotFoundError, ValueError) as e:
    raise SystemExit(str(e))
