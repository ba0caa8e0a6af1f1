"""`imagen-video convert-if --src DIFFUSERS_UNET_DIR --out DIR [--stage base|ssr]`: DeepFloyd IF
-> an inflated Video U-Net stage.

--src is the `unet/` folder of a DeepFloyd IF repository (IF-I-*: --stage base; IF-II-*:
--stage ssr). DIR becomes a stage workdir (config.json + checkpoints/0 with the EMA U-Net):
`imagen-video sample --workdir DIR` samples it (IF on each frame) and `train.init_from=DIR`
fine-tunes from it. The config is `configs/if_inflated.py:variant=...` with the network fields
of the checkpoint's own config.json; `--t5` names IF's text encoder converted by `convert-t5`.
"""
from __future__ import annotations

import math
import sys

from absl import flags

from imagen_video.cli.convert_t5 import parse_flags

DEFAULT_VARIANT = {"base": "I-XL", "ssr": "II-L"}


def _flags() -> flags.FlagValues:
  fv = flags.FlagValues()
  flags.DEFINE_string("src", None, "diffusers UNet2DConditionModel folder (e.g. IF-I-XL-v1.0/unet)", flag_values=fv)
  flags.DEFINE_string("out", None, "output stage workdir", flag_values=fv)
  flags.DEFINE_enum("stage", "base", ["base", "ssr"], "base (IF-I) or ssr (IF-II)", flag_values=fv)
  flags.DEFINE_string("variant", None, "configs/if_inflated.py variant for the non-network settings "
                      "(default I-XL for base, II-L for ssr)", flag_values=fv)
  flags.DEFINE_string("t5", None, "T5-XXL checkpoint from `convert-t5` (IF's text_encoder)", flag_values=fv)
  flags.DEFINE_string("config_args", "", "further configs/if_inflated.py arguments, e.g. frames=8,fps=4",
                      flag_values=fv)
  flags.DEFINE_bool("verbose", False, "log every converted tensor", flag_values=fv)
  return fv


def stage_config(stage: str, variant: str | None, t5: str | None, extra: str = "", hf: dict | None = None):
  """configs/if_inflated.py for this stage, its `model` from the checkpoint's config.json."""
  from imagen_video.stage import if_convert
  from imagen_video.utils import configs_loader
  variant = variant or DEFAULT_VARIANT[stage]
  args = ",".join(a for a in (f"variant={variant}", f"t5={t5}" if t5 else "", extra) if a)
  config = configs_loader.load(f"if_inflated.py:{args}")
  if config.stage.kind != stage:
    raise ValueError(f"--variant {variant} is a {config.stage.kind} stage, not --stage {stage}")
  if hf is not None:
    fields = if_convert.model_fields(hf)
    with config.unlocked():
      config.model.update({k: v for k, v in fields.items() if not k.startswith("_")})
      config.model.text_dim = fields["_text_dim"]
    if_convert.check_stage(fields, config, hf["_path"])
  return config


def main(argv: list[str]) -> int:
  fv = parse_flags(argv, _flags, __doc__, required=("src", "out"))
  if isinstance(fv, int):
    return fv
  from etils import epath

  from imagen_video.stage import if_convert
  if fv.t5 and not epath.Path(fv.t5).is_dir():
    print(f"{argv[0]}: error: --t5 {fv.t5}: no such directory (expected a `convert-t5` output of "
          "IF's text_encoder)", file=sys.stderr)
    return 1
  try:
    hf = if_convert.read_unet_config(fv.src)
    config = stage_config(fv.stage, fv.variant, fv.t5, fv.config_args, hf)
    out, n, null_from_t5 = if_convert.convert(fv.src, config, fv.out,
                                              log=print if fv.verbose else (lambda s: None))
  except (FileNotFoundError, ValueError, ImportError, KeyError) as e:
    print(f"{argv[0]}: error: {e}", file=sys.stderr)
    return 1
  m = config.model
  print(f"wrote {out}: IF {fv.stage} stage, widths {[m.channels * k for k in m.channel_mults]}, "
        f"{n:,} parameters ({n - sum_if(config):,} new temporal/null-text), "
        f"schedule {config.diffusion.schedule} x{config.diffusion.num_timesteps}")
  if null_from_t5:
    print("null text (classifier-free guidance): T5's embedding of the empty prompt, as IF's pipeline")
  elif config.model.get("null_text_length", 0):
    print("null text: random (no --t5 checkpoint on disk), so guidance > 1 is not IF's: convert "
          "again with --t5 (IF's text_encoder through convert-t5) or sample with --guidance 1")
  return 0


def sum_if(config) -> int:
  """Parameters that came from the IF checkpoint."""
  from imagen_video.stage import if_convert
  return sum(math.prod(shape) for _, shape, _ in if_convert.plan(if_convert.network_config(config)).values())


if __name__ == "__main__":
  sys.exit(main(sys.argv))
