"""The sampler's flags, defined once for `sample`, `eval` and the benchmarks that take flags.

    --seed S --steps N --sampler ddim|ancestral|dpm++2m|stochastic --guidance W
    --conditioning reconstruction|replacement --recon_weight W --context K --refresh T
    --refresh_floor F

Unset ones (None) leave the stage's config (or the cascade entry) in charge.
"""
from __future__ import annotations

import math

from absl import flags

from imagen_video.diffusion.samplers import SAMPLERS, MAX_SEED


def define(fv) -> None:
  flags.DEFINE_integer("seed", 0, "random seed: sample i of a request uses seed + i", flag_values=fv)
  flags.DEFINE_integer("steps", None, "sampling steps (one stage; default config.sample.steps)",
                       flag_values=fv)
  flags.DEFINE_enum("sampler", None, list(SAMPLERS), "sampler (one stage; default "
                    "config.sample.sampler)", flag_values=fv)
  flags.DEFINE_float("guidance", None, "classifier-free guidance weight (one stage; default "
                     "config.sample.guidance)", flag_values=fv)
  flags.DEFINE_enum("conditioning", "reconstruction", ["reconstruction", "replacement"],
                    "how known frames/pixels condition the sample", flag_values=fv)
  flags.DEFINE_float("recon_weight", None, "reconstruction guidance weight (default "
                     "config.sample.recon_weight, else 4)", flag_values=fv)
  flags.DEFINE_integer("context", None, "extension: frames of context per window (default three "
                       "quarters of a window)", flag_values=fv)
  flags.DEFINE_float("refresh", 0.0, "extension: re-denoise each window from this time in [0, 1) "
                     "before keeping it (SDEdit, text only); 0 = off", flag_values=fv)
  from imagen_video.stage.known import REFRESH_FLOOR
  flags.DEFINE_float("refresh_floor", REFRESH_FLOOR, "extension: a window whose refresh leaves less "
                     "than this share of its contrast is kept un-refreshed (0: every refresh kept)",
                     flag_values=fv)


def check(fv, prog: str, *, cascade: bool = False) -> None:
  """Every sampler number checked before any loading: one line naming the flag."""
  def bad(flag, want):
    raise SystemExit(f"{prog}: --{flag} {getattr(fv, flag)}: expected {want}")
  if not 0 <= fv.seed <= MAX_SEED // 2:
    bad("seed", f"an integer in [0, {MAX_SEED // 2}]")
  if fv.steps is not None and fv.steps < 1:
    bad("steps", "at least 1")
  for name in ("guidance", "recon_weight"):
    value = getattr(fv, name)
    if value is not None and not math.isfinite(value):
      bad(name, "a finite number")
  if fv.recon_weight is not None and fv.recon_weight < 0:
    bad("recon_weight", "a weight >= 0")
  if not 0.0 <= fv.refresh < 1.0:
    bad("refresh", "a time in [0, 1) (0 = off)")
  if not 0.0 <= fv.refresh_floor <= 1.0:
    bad("refresh_floor", "a share in [0, 1]")
  if fv.context is not None and fv.context < 1:
    bad("context", "at least 1 frame")
  if cascade:
    given = [f"--{f}" for f in ("steps", "sampler", "guidance") if getattr(fv, f) is not None]
    if given:
      raise SystemExit(f"{prog}: {', '.join(given)} set one stage's sampling; a cascade takes "
                       "each stage's from the cascade config")


def request_fields(fv) -> dict:
  """The Request fields these flags set."""
  return dict(steps=fv.steps, sampler=fv.sampler, guidance=fv.guidance,
              conditioning=fv.conditioning, recon_weight=fv.recon_weight)
