"""`imagen-video encode-text --t5 CKPT (--prompt TEXT | --prompts FILE) --out FILE.npz`.

Writes `embeddings` [N, L, D] (float32 unless --out_dtype), `mask` [N, L] bool,
`token_ids` [N, L] int32 and `prompts` [N] to the .npz: for precomputing dataset
embeddings and for checking a converted checkpoint against its source.
"""
from __future__ import annotations

import os
import sys

from absl import flags

from imagen_video.cli.convert_t5 import parse_flags


def _flags() -> flags.FlagValues:
  fv = flags.FlagValues()
  flags.DEFINE_string("t5", None, "checkpoint dir from `imagen-video convert-t5`", flag_values=fv)
  flags.DEFINE_multi_string("prompt", [], "a prompt (repeatable)", flag_values=fv)
  flags.DEFINE_string("prompts", None, "text file, one prompt per line", flag_values=fv)
  flags.DEFINE_string("out", None, "output .npz", flag_values=fv)
  flags.DEFINE_string("tokenizer", None, "sentencepiece .model (default: T5/spiece.model)", flag_values=fv)
  flags.DEFINE_integer("max_length", 128, "tokens per prompt including eos", flag_values=fv)
  flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "compute dtype", flag_values=fv)
  flags.DEFINE_enum("out_dtype", "float32", ["float32", "float16"], "stored embedding dtype", flag_values=fv)
  flags.DEFINE_integer("batch_size", 32, "prompts per encoder call", flag_values=fv)
  return fv


def main(argv: list[str]) -> int:
  fv = parse_flags(argv, _flags, __doc__)
  if isinstance(fv, int):
    return fv
  prompts = list(fv.prompt)
  if fv.prompts:
    if not os.path.isfile(fv.prompts):
      print(f"{argv[0]}: --prompts file {fv.prompts!r} not found", file=sys.stderr)
      return 2
    with open(fv.prompts) as f:
      prompts += [line.strip() for line in f if line.strip()]
  if not fv.t5 or not fv.out or not prompts:
    print(f"{argv[0]}: --t5, --out and at least one --prompt or --prompts are required", file=sys.stderr)
    return 2
  import numpy as np
  from imagen_video.text import encoder

  cfg = encoder.default_config(checkpoint=fv.t5, tokenizer=fv.tokenizer or "", max_length=fv.max_length,
                               dtype=fv.dtype)
  try:
    enc = encoder.TextEncoder.from_config(cfg)
    if enc.tokenizer is None:
      raise FileNotFoundError(f"{fv.t5}: no spiece.model in the checkpoint; pass --tokenizer")
  except (FileNotFoundError, ValueError) as e:
    print(f"{argv[0]}: error: {e}", file=sys.stderr)
    return 1
  data = encoder.precompute(enc, prompts, batch_size=fv.batch_size)
  os.makedirs(os.path.dirname(os.path.abspath(fv.out)), exist_ok=True)
  np.savez(fv.out, embeddings=data[encoder.EMBEDDINGS].astype(fv.out_dtype), mask=data[encoder.MASK],
           token_ids=data[encoder.TOKENS], prompts=np.asarray(prompts))
  print(f"wrote {fv.out}: {len(prompts)} prompts, embeddings {data[encoder.EMBEDDINGS].shape} {fv.out_dtype}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
