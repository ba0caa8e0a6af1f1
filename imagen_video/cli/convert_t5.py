"""`imagen-video convert-t5 --src HF_DIR --out CKPT_DIR`: HF T5 -> Orbax encoder checkpoint.

Reads config.json + model.safetensors / model.safetensors.index.json / pytorch_model.bin,
keeps the encoder only, streams shard by shard, and copies spiece.model when present.
"""
from __future__ import annotations

import sys

from absl import flags


def _flags() -> flags.FlagValues:
  fv = flags.FlagValues()
  flags.DEFINE_string("src", None, "Hugging Face T5 directory (config.json + weights)", flag_values=fv)
  flags.DEFINE_string("out", None, "output checkpoint directory", flag_values=fv)
  flags.DEFINE_enum("param_dtype", "float32", ["float32", "bfloat16"], "stored parameter dtype", flag_values=fv)
  flags.DEFINE_string("tokenizer", None, "sentencepiece .model (default: SRC/spiece.model if present)",
                      flag_values=fv)
  flags.DEFINE_bool("verbose", False, "log every converted tensor", flag_values=fv)
  return fv


def parse_flags(argv: list[str], make_flags, doc: str, required=()) -> flags.FlagValues | int:
  """Parses into a module-local FlagValues; an int is an exit code (help or usage error,
  including a missing `required` flag)."""
  fv = make_flags()
  if any(a in ("-h", "--help", "-help", "--helpfull") for a in argv[1:]):
    print(f"usage: {argv[0]} [flags]\n\n{doc}\n{fv.get_help()}")
    return 0
  try:
    fv(argv)
  except flags.Error as e:
    print(f"{argv[0]}: {e}", file=sys.stderr)
    return 2
  missing = [f"--{name}" for name in required if not fv[name].value]
  if missing:
    print(f"{argv[0]}: {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required",
          file=sys.stderr)
    return 2
  return fv


def main(argv: list[str]) -> int:
  fv = parse_flags(argv, _flags, __doc__, required=("src", "out"))
  if isinstance(fv, int):
    return fv
  from imagen_video.text import hf_convert, t5

  try:
    out = hf_convert.convert(fv.src, fv.out, param_dtype=fv.param_dtype, tokenizer_model=fv.tokenizer,
                             log=print if fv.verbose else (lambda s: None))
  except (FileNotFoundError, ValueError, ImportError) as e:
    print(f"{argv[0]}: error: {e}", file=sys.stderr)
    return 1
  cfg = hf_convert.read_config(fv.src)
  n = t5.count_params(cfg)
  print(f"wrote {out}: T5 encoder d_model={cfg.d_model} layers={cfg.num_layers} heads={cfg.num_heads} "
        f"d_ff={cfg.d_ff} {'gated-' if cfg.gated else ''}{cfg.act}, {n['total']:,} parameters ({fv.param_dtype})")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
