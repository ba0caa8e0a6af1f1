"""`imagen-video convert-clip --src HF_DIR --out CKPT_DIR`: HF CLIP -> Orbax CLIP checkpoint.

Reads config.json + model.safetensors / model.safetensors.index.json / pytorch_model.bin
(+ index), preprocessor_config.json and the tokenizer (vocab.json + merges.txt, or
tokenizer.json); OpenAI ViT-B/32, ViT-L/14, ViT-L/14-336 and OpenCLIP's HF exports.
"""
from __future__ import annotations

import sys

from absl import flags

from imagen_video.cli.convert_t5 import parse_flags


def _flags() -> flags.FlagValues:
  fv = flags.FlagValues()
  flags.DEFINE_string("src", None, "Hugging Face CLIP directory (e.g. openai/clip-vit-large-patch14)", flag_values=fv)
  flags.DEFINE_string("out", None, "output checkpoint directory", flag_values=fv)
  flags.DEFINE_enum("param_dtype", "float32", ["float32", "bfloat16"], "stored parameter dtype", flag_values=fv)
  flags.DEFINE_bool("verbose", False, "log every converted tensor", flag_values=fv)
  return fv


def main(argv: list[str]) -> int:
  fv = parse_flags(argv, _flags, __doc__, required=("src", "out"))
  if isinstance(fv, int):
    return fv
  from imagen_video.clip import hf_convert, model
  try:
    out = hf_convert.convert(fv.src, fv.out, param_dtype=fv.param_dtype, log=print if fv.verbose else (lambda s: None))
  except (FileNotFoundError, ValueError, ImportError) as e:
    print(f"{argv[0]}: error: {e}", file=sys.stderr)
    return 1
  cfg = hf_convert.read_config(fv.src)
  print(f"wrote {out}: CLIP ViT {cfg.vision_width}x{cfg.vision_layers} patch {cfg.patch_size} @ {cfg.image_size}px, "
        f"text {cfg.text_width}x{cfg.text_layers}, projection {cfg.projection_dim}, "
        f"{model.count_params(cfg):,} parameters ({fv.param_dtype})")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
